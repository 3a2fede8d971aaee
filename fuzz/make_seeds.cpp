// Writes the generated part of the committed seed corpus (fuzz/corpus/):
// small valid files made with the project's own writers (token shards,
// GGUF) or, for the Megatron index, byte by byte from spec.md 2.4's layout.
// The other seeds are copies of test fixtures and recipes (fuzz/README.md).
// Run once when a format changes: fuzz_make_seeds fuzz/corpus
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/token_shard.h"
#include "quant/gguf.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// The fuzz_megatron_idx input: u32 length of the .idx, the .idx, the .bin.
std::string megatron_input(const std::vector<std::vector<int32_t>>& seqs, bool u16) {
  std::string idx, bin;
  std::vector<int64_t> pointers;
  for (const auto& s : seqs) {
    pointers.push_back(int64_t(bin.size()));
    for (int32_t t : s) u16 ? put<uint16_t>(bin, uint16_t(t)) : put<int32_t>(bin, t);
  }
  idx.append("MMIDIDX\0\0", 9);
  put<uint64_t>(idx, 1);
  put<uint8_t>(idx, u16 ? 8 : 4);  // dtype codes: 8 = uint16, 4 = int32
  put<uint64_t>(idx, seqs.size());
  put<uint64_t>(idx, seqs.size() + 1);
  for (const auto& s : seqs) put<int32_t>(idx, int32_t(s.size()));
  for (int64_t p : pointers) put<int64_t>(idx, p);
  for (size_t d = 0; d <= seqs.size(); ++d) put<int64_t>(idx, int64_t(d));
  std::string out;
  put<uint32_t>(out, uint32_t(idx.size()));
  return out + idx + bin;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* d : {"megatron_idx", "token_shard", "gguf"}) fs::create_directories(root / d);

  write(root / "megatron_idx" / "u16.bin", megatron_input({{0, 1, 2, 3}, {65535, 7}, {}, {9}}, true));
  write(root / "megatron_idx" / "i32.bin", megatron_input({{5, 4, 3}, {100000}}, false));

  write_token_shard((root / "token_shard" / "u16.gltok").string(), {1, 2, 3, 500, 0, 511},
                    TokenDType::u16, 512);
  write_token_shard((root / "token_shard" / "u32.gltok").string(), {70000, 1, 2}, TokenDType::u32,
                    100000);

  std::vector<GgufKV> kv{{"general.architecture", GgufValue::str("gptneox")},
                         {"general.alignment", GgufValue::u32(32)},
                         {"gptneox.block_count", GgufValue::u32(2)},
                         {"x.f32", GgufValue::f32(1.5f)},
                         {"x.ints", GgufValue::int_array(GgufType::INT32, {1, -2, 3})},
                         {"x.strs", GgufValue::str_array({"a", "bc"})}};
  GgufTensor t32{"w.f32", GgmlType::F32, {4, 2}, std::vector<uint8_t>(32, 0)};
  for (size_t i = 0; i < 8; ++i) {
    const float v = float(i) - 3.5f;
    std::memcpy(t32.data.data() + 4 * i, &v, 4);
  }
  GgufTensor q40{"w.q4_0", GgmlType::Q4_0, {32, 1}, std::vector<uint8_t>(18, 0x37)};
  write_gguf((root / "gguf" / "small.gguf").string(), kv, {t32, q40});
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
