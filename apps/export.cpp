// gridlock_export: the program behind ./export. Writes a Hugging Face
// GPT-NeoX model directory as a GGUF file for llama.cpp (quant/export_gguf.h
// has the tensor names, QKV order, metadata and type policy), or, with
// --dequantize, reads such a GGUF back into a Hugging Face state dict
// (safetensors) to inspect exactly what llama.cpp will compute with.
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/safetensors.h"
#include "models/model.h"
#include "quant/export_gguf.h"
#include "trainer/recipe.h"

using namespace gl;
using namespace gl::apps;

namespace {

const char* kUsage =
    "usage: ./export MODEL_DIR OUT.gguf [options]\n"
    "       ./export --dequantize IN.gguf OUT.safetensors\n"
    "\n"
    "Writes the Hugging Face GPT-NeoX model in MODEL_DIR (config.json +\n"
    "model.safetensors, tokenizer.json) as GGUF for llama.cpp's gptneox architecture.\n"
    "Norms and biases stay f32; 2-D weights get --type; output.weight is q8_0 for the\n"
    "4-bit types unless --pure (llama-quantize would use Q6_K, not implemented here).\n"
    "\n"
    "options:\n"
    "  --type f32|f16|q4_0|q4_1|q8_0  type of the 2-D weights (default f32)\n"
    "  --pure                   output.weight gets --type too\n"
    "  --qat-scheme NAME        the quant preset the model was trained with (QAT; default:\n"
    "                           quant.scheme of MODEL_DIR/recipe.resolved.yaml, a ./train checkpoint);\n"
    "                           refused unless it is the same format as --type\n"
    "  --force                  export even when --qat-scheme differs from --type\n"
    "  --tokenizer PATH         tokenizer.json (default MODEL_DIR/tokenizer.json)\n"
    "  --name NAME              general.name (default: MODEL_DIR's last component)\n"
    "  --alignment N            tensor data alignment, a power of two (default 32)\n"
    "  --dequantize             read IN.gguf back to OUT.safetensors: Hugging Face names\n"
    "                           and shapes, f32, QKV order undone\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

struct Options {
  std::string model_dir, out, tokenizer;
  GgufExportOptions ex;
  bool dequantize = false;
};

std::string last_component(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--type") {
      const std::string v = args.value(a);
      try {
        o.ex.type = parse_export_type(v);
      } catch (const Error&) {
        throw UsageError("--type: unknown type '" + v + "' (expected f32, f16, q4_0, q4_1, q8_0)");
      }
    } else if (a == "--pure") args.no_value(a), o.ex.pure = true;
    else if (a == "--qat-scheme") o.ex.qat_scheme = args.value(a);
    else if (a == "--force") args.no_value(a), o.ex.force = true;
    else if (a == "--tokenizer") o.tokenizer = args.value(a);
    else if (a == "--name") o.ex.name = args.value(a);
    else if (a == "--alignment") {
      const int64_t n = parse_int(a, args.value(a), 1);
      if (n > (int64_t(1) << 30) || (n & (n - 1)) != 0)
        throw UsageError("--alignment: " + std::to_string(n) + " is not a power of two");
      o.ex.alignment = uint32_t(n);
    } else if (a == "--dequantize") args.no_value(a), o.dequantize = true;
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else positional.push_back(a);
  }
  if (positional.size() != 2)
    throw UsageError(std::string("expected ") +
                     (o.dequantize ? "IN.gguf and OUT.safetensors" : "MODEL_DIR and OUT.gguf") +
                     ", got " + std::to_string(positional.size()) + " positional argument(s)");
  o.model_dir = positional[0];
  o.out = positional[1];
  if (o.tokenizer.empty()) o.tokenizer = o.model_dir + "/tokenizer.json";
  if (o.ex.name.empty()) o.ex.name = last_component(o.model_dir);
  return o;
}

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (o.dequantize) {
    require_file(o.model_dir, "GGUF file");
    save_safetensors(o.out, read_gguf_state_dict(o.model_dir));
    std::printf("wrote %s\n", o.out.c_str());
    return 0;
  }
  require_directory(o.model_dir, "model directory");
  require_file(o.tokenizer, "tokenizer");
  // A ./train checkpoint says how it was trained: its recipe's quant.scheme
  // is the QAT scheme unless --qat-scheme names one.
  Options opt = o;
  const std::string recipe = o.model_dir + "/recipe.resolved.yaml";
  if (opt.ex.qat_scheme.empty() && file_exists(recipe)) {
    opt.ex.qat_scheme = Recipe::load(recipe).get_string("quant.scheme");
    if (!opt.ex.qat_scheme.empty())
      std::fprintf(stderr, "gridlock_export: QAT scheme '%s' (from %s)\n", opt.ex.qat_scheme.c_str(), recipe.c_str());
  }
  // The QAT refusal costs nothing: say it before the model is loaded.
  check_qat_scheme(opt.ex.qat_scheme, opt.ex.type, opt.ex.force);
  const auto model = load_hf_model(o.model_dir);
  export_gguf(*model, o.tokenizer, o.out, opt.ex);
  std::printf("wrote %s (%s%s)\n", o.out.c_str(), export_type_name(o.ex.type),
              o.ex.pure ? ", pure" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("export", [&] { return run(argc, argv); });
}
