// Megatron MMIDIDX datasets (data/indexed_dataset.h) and gridlock token
// shards (data/token_shard.h). The .bin/.idx files are written here by a
// tiny writer that follows spec.md 2.4's layout byte by byte, independent of
// the reader: single .bin and the same data split into 3 byte shards
// (Pythia's "-000NN-of-000MM" naming); then corrupted variants, each with its
// one-line error. Also the Pythia/fork batch -> sequence mapping and token
// shard round trips and errors.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/indexed_dataset.h"
#include "data/token_shard.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test case, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("gl_data_io_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

template <class T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The spec.md 2.4 layout, written field by field.
struct Megatron {
  std::string idx, bin;
};

Megatron make_megatron(const std::vector<std::vector<int32_t>>& seqs,
                       const std::vector<int64_t>& doc_idx, uint8_t dtype_code) {
  const size_t el = dtype_code == 8 ? 2 : 4;
  Megatron m;
  std::vector<int64_t> pointers;
  for (const auto& s : seqs) {
    pointers.push_back(int64_t(m.bin.size()));
    for (int32_t t : s) {
      if (el == 2)
        put<uint16_t>(m.bin, uint16_t(t));
      else
        put<int32_t>(m.bin, t);
    }
  }
  m.idx.append("MMIDIDX\0\0", 9);
  put<uint64_t>(m.idx, 1);
  put<uint8_t>(m.idx, dtype_code);
  put<uint64_t>(m.idx, seqs.size());
  put<uint64_t>(m.idx, doc_idx.size());
  for (const auto& s : seqs) put<int32_t>(m.idx, int32_t(s.size()));
  for (int64_t p : pointers) put<int64_t>(m.idx, p);
  for (int64_t d : doc_idx) put<int64_t>(m.idx, d);
  return m;
}

// Offsets into the .idx, from the spec.
constexpr size_t kVersionAt = 9, kDtypeAt = 17, kSizesAt = 34;

std::vector<std::vector<int32_t>> sample_sequences() {
  // Odd lengths, an empty sequence, ids above 32767 (uint16 sign trap).
  return {{0, 1, 2, 3, 4}, {65535, 40000, 7}, {}, {9, 8, 7, 6, 5, 4, 3}, {12345}};
}

void save(const TempDir& d, const std::string& prefix, const Megatron& m) {
  write_file(d / (prefix + ".idx"), m.idx);
  write_file(d / (prefix + ".bin"), m.bin);
}

// The .bin as a plain byte split into `k` pieces of size ceil(n/k), named
// as Pythia's: prefix-0000i-of-0000(k-1).bin.
void save_sharded(const TempDir& d, const std::string& prefix, const Megatron& m, int k) {
  write_file(d / (prefix + ".idx"), m.idx);
  const size_t shard = (m.bin.size() + size_t(k) - 1) / size_t(k);
  for (int i = 0; i < k; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "-%05d-of-%05d.bin", i, k - 1);
    const size_t b = std::min(m.bin.size(), size_t(i) * shard);
    write_file(d / (prefix + name), m.bin.substr(b, std::min(shard, m.bin.size() - b)));
  }
}

#define CHECK_ERROR(expr, text) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains(std::string(text).c_str()), Error)

void check_no_newline(const std::function<void()>& f) {
  try {
    f();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("indexed dataset: uint16 single .bin, sequences and doc_idx") {
  TempDir d;
  const auto seqs = sample_sequences();
  const std::vector<int64_t> docs = {0, 2, 3, 5};
  save(d, "document", make_megatron(seqs, docs, 8));
  for (const std::string& arg : {d / "document", d / "document.idx"}) {
    IndexedDataset ds = IndexedDataset::open(arg);
    CHECK(ds.dtype_code() == 8);
    CHECK(ds.element_size() == 2);
    REQUIRE(ds.size() == seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      CHECK(ds.sequence_length(i) == seqs[i].size());
      CHECK(ds.read_sequence(i) == seqs[i]);
    }
    CHECK(ds.pointer(3) == 2 * (5 + 3));
    CHECK(ds.doc_idx() == docs);
    CHECK(ds.doc_count() == 4);
    CHECK(ds.doc_idx(2) == 3);
    CHECK(ds.bin_paths() == std::vector<std::string>{d / "document.bin"});
  }
  IndexedDataset ds = IndexedDataset::open(d / "document");
  std::vector<int32_t> buf(10, -1);
  CHECK(ds.read_sequence(3, buf.data(), buf.size()) == 7);
  CHECK(std::vector<int32_t>(buf.begin(), buf.begin() + 7) == seqs[3]);
  CHECK_ERROR(ds.read_sequence(3, buf.data(), 6), "has 7 tokens, the buffer holds 6");
  CHECK_ERROR(ds.read_sequence(5), "sequence 5 out of range (5 sequences)");
  CHECK_ERROR(ds.doc_idx(4), "doc_idx entry 4 out of range");
}

TEST_CASE("indexed dataset: int32 tokens") {
  TempDir d;
  const std::vector<std::vector<int32_t>> seqs = {{100000, 1}, {70000, 2, 3}};
  save(d, "ds", make_megatron(seqs, {0, 2}, 4));
  IndexedDataset ds = IndexedDataset::open(d / "ds");
  CHECK(ds.element_size() == 4);
  CHECK(ds.read_sequence(0) == seqs[0]);
  CHECK(ds.read_sequence(1) == seqs[1]);
}

TEST_CASE("indexed dataset: .bin split into 3 byte shards reads as one") {
  TempDir d;
  const auto seqs = sample_sequences();
  const Megatron m = make_megatron(seqs, {0, 5}, 8);
  // 16 tokens = 32 bytes: shards of 11, 11, 10 bytes, so sequences and even
  // single uint16 tokens straddle shard boundaries.
  save_sharded(d, "document", m, 3);
  IndexedDataset ds = IndexedDataset::open(d / "document.idx");
  REQUIRE(ds.bin_paths().size() == 3);
  CHECK(ds.bin_paths()[2] == d / "document-00002-of-00002.bin");
  for (size_t i = 0; i < seqs.size(); ++i) CHECK(ds.read_sequence(i) == seqs[i]);

  SUBCASE("'of-MM' as the shard count (no shard MM) also works") {
    TempDir e;
    write_file(e / "x.idx", m.idx);
    write_file(e / "x-00000-of-00002.bin", m.bin.substr(0, 16));
    write_file(e / "x-00001-of-00002.bin", m.bin.substr(16));
    IndexedDataset ds2 = IndexedDataset::open(e / "x");
    CHECK(ds2.bin_paths().size() == 2);
    for (size_t i = 0; i < seqs.size(); ++i) CHECK(ds2.read_sequence(i) == seqs[i]);
  }
  SUBCASE("missing shard") {
    fs::remove(d / "document-00001-of-00002.bin");
    CHECK_ERROR(IndexedDataset::open(d / "document"),
                "missing shard " + (d / "document-00001-of-00002.bin"));
  }
  SUBCASE("a middle shard of the wrong size") {
    write_file(d / "document-00001-of-00002.bin", std::string(10, '\0'));
    CHECK_ERROR(IndexedDataset::open(d / "document"), "shard has 10 bytes, expected 11");
  }
  SUBCASE("missing last shard: offsets beyond the shards") {
    fs::remove(d / "document-00002-of-00002.bin");
    CHECK_ERROR(IndexedDataset::open(d / "document"), "beyond the 22 bytes of");
  }
}

TEST_CASE("indexed dataset: corrupted files give one-line errors") {
  TempDir d;
  const Megatron good = make_megatron(sample_sequences(), {0, 5}, 8);
  const std::string idx = d / "c.idx";
  auto open = [&] { return IndexedDataset::open(d / "c"); };
  save(d, "c", good);
  REQUIRE_NOTHROW(open());

  SUBCASE("bad magic") {
    Megatron m = good;
    m.idx[3] = 'X';
    save(d, "c", m);
    CHECK_ERROR(open(), idx + ": bad magic");
    check_no_newline([&] { open(); });
  }
  SUBCASE("wrong version") {
    Megatron m = good;
    m.idx[kVersionAt] = 2;
    save(d, "c", m);
    CHECK_ERROR(open(), idx + ": unsupported MMIDIDX version 2");
  }
  SUBCASE("unsupported dtype names the code") {
    Megatron m = good;
    m.idx[kDtypeAt] = 6;
    save(d, "c", m);
    CHECK_ERROR(open(), "unsupported token dtype code 6 (float32)");
    m.idx[kDtypeAt] = 42;
    save(d, "c", m);
    CHECK_ERROR(open(), "unsupported token dtype code 42");
  }
  SUBCASE("truncated idx") {
    Megatron m = good;
    m.idx.resize(m.idx.size() - 3);
    save(d, "c", m);
    CHECK_ERROR(open(), idx + ": truncated: ");
    check_no_newline([&] { open(); });
    m.idx.resize(20);
    save(d, "c", m);
    CHECK_ERROR(open(), "the MMIDIDX header alone needs 34");
  }
  SUBCASE("trailing bytes in idx") {
    Megatron m = good;
    m.idx += "xx";
    save(d, "c", m);
    CHECK_ERROR(open(), "trailing bytes");
  }
  SUBCASE("pointer beyond the .bin") {
    Megatron m = good;
    m.bin.resize(m.bin.size() - 1);  // last sequence now ends past the file
    save(d, "c", m);
    CHECK_ERROR(open(), idx + ": sequence 4 spans bytes [30, 32) beyond the 31 bytes of " +
                            (d / "c.bin"));
    check_no_newline([&] { open(); });
  }
  SUBCASE("decreasing pointers") {
    Megatron m = good;
    const size_t ptr1 = kSizesAt + 5 * 4 + 1 * 8;
    int64_t zero = 0;
    std::memcpy(&m.idx[ptr1 + 8], &zero, 8);  // pointer[2] = 0 < pointer[1]
    save(d, "c", m);
    CHECK_ERROR(open(), "pointer of sequence 2 (0) is below the previous one (10)");
  }
  SUBCASE("missing .bin") {
    fs::remove(d / "c.bin");
    CHECK_ERROR(open(), "no data file");
  }
  SUBCASE("missing .idx") {
    fs::remove(idx);
    CHECK_ERROR(open(), idx + ": cannot open for reading");
  }
}

TEST_CASE("indexed dataset: require_fixed_length names the first differing sequence") {
  TempDir d;
  std::vector<std::vector<int32_t>> seqs(4, std::vector<int32_t>(6, 1));
  save(d, "f", make_megatron(seqs, {0, 4}, 8));
  IndexedDataset ds = IndexedDataset::open(d / "f");
  CHECK_NOTHROW(ds.require_fixed_length(6));
  CHECK_ERROR(ds.require_fixed_length(), "sequence 0 has 6 tokens, expected every sequence to "
                                         "have 2049");
  seqs[2].push_back(3);
  seqs[3].pop_back();
  save(d, "f", make_megatron(seqs, {0, 4}, 8));
  CHECK_ERROR(IndexedDataset::open(d / "f").require_fixed_length(6), "sequence 2 has 7 tokens");
}

TEST_CASE("Pythia batch -> sequence mapping (spec.md 2.4 and section 0)") {
  CHECK(pythia_sequence_for(0, 0) == 0);
  CHECK(pythia_sequence_for(0, 1023) == 1023);
  CHECK(pythia_sequence_for(1, 0) == 1024);
  // Continuing from step143000 starts right after everything it consumed.
  CHECK(pythia_sequence_for(143000, 0) == 143000ull * 1024);
  CHECK(pythia_sequence_for(143000, 5) * kPythiaSequenceLength * 2 ==
        (143000ull * 1024 + 5) * 4098);  // byte offset of sequence s = s * 4098
  CHECK_ERROR(pythia_sequence_for(3, 1024), "position 1024 in batch, expected < 1024");

  // Fork from step N, S = 4 per step: steps k read N*1024 + 4k .. + 3.
  const uint64_t N = 1000, S = kForkSequencesPerStepDefault;
  CHECK(S == 4);
  CHECK(fork_sequence(N, 0, S, 0, 0) == pythia_sequence_for(N, 0));
  CHECK(fork_sequence(N, 0, S, 3, 0) == N * 1024 + 3);
  CHECK(fork_sequence(N, 1, S, 0, 0) == N * 1024 + 4);
  CHECK(fork_sequence(N, 7, S, 2, 0) == N * 1024 + 30);
  // A seed with its own offset reads a disjoint stretch.
  CHECK(fork_sequence(N, 7, S, 2, 1000000) == N * 1024 + 30 + 1000000);
  // Consecutive steps cover consecutive sequences without gaps or repeats.
  uint64_t expect = N * 1024;
  for (uint64_t k = 0; k < 5; ++k)
    for (uint64_t j = 0; j < S; ++j) CHECK(fork_sequence(N, k, S, j, 0) == expect++);
  CHECK_ERROR(fork_sequence(N, 0, S, 4, 0), "slot 4, expected < sequences_per_step 4");
  CHECK_ERROR(fork_sequence(N, 0, 0, 0, 0), "sequences_per_step must be > 0");
  CHECK_ERROR(fork_sequence(UINT64_MAX / 2, 0, S, 0, 0), "overflow");
}

TEST_CASE("token shard: u16 and u32 round trips") {
  TempDir d;
  SUBCASE("u16") {
    const std::vector<int32_t> ids = {0, 1, 65535, 32768, 50000, 7};
    write_token_shard(d / "a.tok", ids, TokenDType::u16, 65536);
    TokenShard s = TokenShard::open(d / "a.tok");
    CHECK(s.dtype() == TokenDType::u16);
    CHECK(s.vocab_size() == 65536);
    CHECK(s.count() == ids.size());
    CHECK(s.read(0, ids.size()) == ids);
    CHECK(s.read(2, 3) == std::vector<int32_t>{65535, 32768, 50000});
    CHECK(s.token(4) == 50000);
    CHECK_NOTHROW(s.check_ids());
    // Header bytes exactly as documented.
    const std::string raw = read_file(d / "a.tok");
    REQUIRE(raw.size() == 32 + 2 * ids.size());
    CHECK(raw.substr(0, 8) == "GLTOKENS");
    uint32_t version, code;
    uint64_t count, vocab;
    std::memcpy(&version, &raw[8], 4);
    std::memcpy(&code, &raw[12], 4);
    std::memcpy(&count, &raw[16], 8);
    std::memcpy(&vocab, &raw[24], 8);
    CHECK(version == 1);
    CHECK(code == 2);
    CHECK(count == ids.size());
    CHECK(vocab == 65536);
    uint16_t t2;
    std::memcpy(&t2, &raw[32 + 4], 2);
    CHECK(t2 == 65535);
  }
  SUBCASE("u32, streamed in pieces") {
    const std::vector<int32_t> ids = {70000, 0, 1, 99999, 123};
    {
      TokenShardWriter w(d / "b.tok", TokenDType::u32, 100000);
      w.append(ids.data(), 2);
      w.append(ids.data() + 2, 3);
      CHECK(w.count() == 5);
      CHECK_FALSE(fs::exists(d / "b.tok"));  // nothing visible before commit
      w.commit();
    }
    TokenShard s = TokenShard::open(d / "b.tok");
    CHECK(s.dtype() == TokenDType::u32);
    CHECK(s.count() == 5);
    CHECK(s.read(0, 5) == ids);
    CHECK(fs::file_size(d / "b.tok") == 32 + 4 * 5);
    CHECK_ERROR(s.read(4, 2), "tokens [4, 6) outside the 5 tokens");
    CHECK_ERROR(s.token(5), "outside the 5 tokens");
  }
  SUBCASE("empty shard") {
    write_token_shard(d / "e.tok", {}, TokenDType::u16, 10);
    CHECK(TokenShard::open(d / "e.tok").count() == 0);
  }
}

TEST_CASE("token shard: writer is atomic and checks ids") {
  TempDir d;
  const std::string p = d / "w.tok";
  write_token_shard(p, {1, 2, 3}, TokenDType::u16, 10);
  // A failed write (id out of range) leaves the previous file and no temp.
  CHECK_ERROR(write_token_shard(p, {1, 10}, TokenDType::u16, 10),
              "token 1 is 10, outside [0, 10)");
  CHECK_ERROR(write_token_shard(p, {-1}, TokenDType::u32, 10), "token 0 is -1");
  CHECK(TokenShard::open(p).read(0, 3) == std::vector<int32_t>{1, 2, 3});
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(d.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
  {
    TokenShardWriter w(d / "never.tok", TokenDType::u16, 10);
    w.append({1, 2});
  }  // destroyed without commit
  CHECK_FALSE(fs::exists(d / "never.tok"));
  CHECK_ERROR(TokenShardWriter(d / "x.tok", TokenDType::u16, 70000), "does not fit u16");
  CHECK_ERROR(TokenShardWriter(d / "x.tok", TokenDType::u16, 0), "vocab size must be >= 1");
}

TEST_CASE("token shard: corrupted files give one-line errors") {
  TempDir d;
  const std::string p = d / "c.tok";
  write_token_shard(p, {5, 6, 7, 8}, TokenDType::u16, 100);
  const std::string good = read_file(p);

  SUBCASE("truncated: expected vs actual size") {
    write_file(p, good.substr(0, good.size() - 1));
    CHECK_ERROR(TokenShard::open(p), p + ": truncated: 39 bytes, expected 40 = 32 + 4 tokens x 2");
    check_no_newline([&] { TokenShard::open(p); });
    write_file(p, good.substr(0, 10));
    CHECK_ERROR(TokenShard::open(p), "header alone needs 32");
  }
  SUBCASE("trailing bytes") {
    write_file(p, good + "z");
    CHECK_ERROR(TokenShard::open(p), "trailing bytes: 41 bytes, expected 40");
  }
  SUBCASE("bad magic") {
    std::string b = good;
    b[0] = 'X';
    write_file(p, b);
    CHECK_ERROR(TokenShard::open(p), p + ": bad magic, not a gridlock token shard");
  }
  SUBCASE("bad version and dtype") {
    std::string b = good;
    b[8] = 9;
    write_file(p, b);
    CHECK_ERROR(TokenShard::open(p), "unsupported token shard version 9");
    b = good;
    b[12] = 3;
    write_file(p, b);
    CHECK_ERROR(TokenShard::open(p), "unsupported token dtype code 3");
  }
  SUBCASE("id >= vocab names file and token offset") {
    std::string b = good;
    const uint16_t big = 100;
    std::memcpy(&b[32 + 2 * 2], &big, 2);  // token 2 := 100 = vocab size
    write_file(p, b);
    TokenShard s = TokenShard::open(p);  // opening does not scan the ids
    CHECK_ERROR(s.check_ids(), p + ": token 2 (byte offset 36) is 100, not below the vocab "
                               "size 100");
    CHECK_NOTHROW(s.check_ids(101));
    CHECK_ERROR(s.check_ids(6), "token 1 (byte offset 34) is 6, not below the vocab size 6");
  }
}
