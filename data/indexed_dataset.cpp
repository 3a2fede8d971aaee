// Megatron / GPT-NeoX MMIDIDX reader; see data/indexed_dataset.h for the
// layout (spec.md 2.4) and the invariants checked at open().
#include "data/indexed_dataset.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"

namespace gl {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kHeaderBytes = 34;

template <class T>
T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the host is little-endian (x86-64, aarch64)
  return v;
}

const char* dtype_name(int code) {
  switch (code) {
    case 1: return "uint8";
    case 2: return "int8";
    case 3: return "int16";
    case 4: return "int32";
    case 5: return "int64";
    case 6: return "float32";
    case 7: return "float64";
    case 8: return "uint16";
    default: return "unknown";
  }
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* r) { return !__builtin_mul_overflow(a, b, r); }
bool add_ok(uint64_t a, uint64_t b, uint64_t* r) { return !__builtin_add_overflow(a, b, r); }

std::string shard_name(const std::string& prefix, unsigned k, unsigned last) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05u-of-%05u.bin", k, last);
  return prefix + buf;
}

// "<prefix>.bin", or the byte shards "<prefix>-NNNNN-of-MMMMM.bin" (see the
// header for the numbering conventions accepted).
std::vector<MappedFile> open_bin(const std::string& prefix, const std::string& idx_path) {
  std::vector<MappedFile> files;
  const std::string single = prefix + ".bin";
  if (fs::exists(single)) {
    files.emplace_back(single);
    return files;
  }
  // Find shard 0 to learn MMMMM.
  const fs::path pre(prefix);
  const fs::path dir = pre.has_parent_path() ? pre.parent_path() : fs::path(".");
  const std::string stem = pre.filename().string() + "-00000-of-";
  long last = -1;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() != stem.size() + 9 || name.compare(0, stem.size(), stem) != 0) continue;
    if (name.compare(name.size() - 4, 4, ".bin") != 0) continue;
    const std::string digits = name.substr(stem.size(), 5);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    last = std::stol(digits);
  }
  GL_CHECK(last >= 0, idx_path, ": no data file: neither ", single, " nor shards ",
           prefix, "-00000-of-NNNNN.bin exist");
  GL_CHECK(last >= 1, idx_path, ": shard count 0 in ", shard_name(prefix, 0, 0));
  for (unsigned k = 0; k <= unsigned(last); ++k) {
    const std::string name = shard_name(prefix, k, unsigned(last));
    if (k == unsigned(last) && !fs::exists(name)) break;  // "of-MM" = count convention
    GL_CHECK(fs::exists(name), idx_path, ": missing shard ", name);
    files.emplace_back(name);
  }
  const uint64_t shard_size = files[0].size();
  for (size_t k = 0; k < files.size(); ++k) {
    const bool is_last = k + 1 == files.size();
    GL_CHECK(is_last ? files[k].size() <= shard_size : files[k].size() == shard_size,
             files[k].path(), ": shard has ", files[k].size(), " bytes, expected ",
             is_last ? "at most " : "", shard_size, " (the size of shard 0; shards are a "
             "plain byte split of one .bin)");
  }
  return files;
}

}  // namespace

// --- Pythia's batch -> sequence mapping ----------------------------------

uint64_t pythia_sequence_for(uint64_t iteration, uint64_t k) {
  GL_CHECK(k < kPythiaBatchSequences, "pythia_sequence_for: position ", k,
           " in batch, expected < ", kPythiaBatchSequences);
  uint64_t s;
  GL_CHECK(mul_ok(iteration, kPythiaBatchSequences, &s) && add_ok(s, k, &s),
           "pythia_sequence_for: iteration ", iteration, " overflows");
  return s;
}

uint64_t fork_sequence(uint64_t start_step, uint64_t fork_step, uint64_t sequences_per_step,
                       uint64_t j, uint64_t seed_offset) {
  GL_CHECK(sequences_per_step > 0, "fork_sequence: sequences_per_step must be > 0");
  GL_CHECK(j < sequences_per_step, "fork_sequence: slot ", j, ", expected < sequences_per_step ",
           sequences_per_step);
  uint64_t base, step, s;
  GL_CHECK(mul_ok(start_step, kPythiaBatchSequences, &base) &&
               mul_ok(fork_step, sequences_per_step, &step) && add_ok(base, step, &s) &&
               add_ok(s, j, &s) && add_ok(s, seed_offset, &s),
           "fork_sequence: start_step ", start_step, ", fork_step ", fork_step,
           ", seed_offset ", seed_offset, " overflow");
  return s;
}

// --- ByteRange ------------------------------------------------------------

ByteRange::ByteRange(std::vector<MappedFile> files) : files_(std::move(files)) {
  for (const MappedFile& f : files_) {
    const int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
    GL_CHECK(fd >= 0, f.path(), ": cannot open: ", std::strerror(errno));
    fds_.emplace_back(new int(fd), [](const int* p) {
      ::close(*p);
      delete p;
    });
    starts_.push_back(total_);
    total_ += f.size();
  }
}

void ByteRange::read(uint64_t offset, uint64_t n, void* dst) const {
  GL_CHECK(offset <= total_ && n <= total_ - offset, "ByteRange::read: bytes [", offset, ", ",
           offset + n, ") outside the ", total_, " bytes of ",
           files_.empty() ? std::string("(no file)") : files_[0].path());
  char* out = static_cast<char*>(dst);
  // First file whose range contains `offset` (last start <= offset).
  size_t f = size_t(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin());
  f = f == 0 ? 0 : f - 1;
  while (n > 0) {
    // Skip empty files (an empty last shard has data() == nullptr).
    const uint64_t in_file = offset - starts_[f];
    const uint64_t avail = files_[f].size() - std::min<uint64_t>(in_file, files_[f].size());
    const uint64_t take = std::min(n, avail);
    if (take > 0) {
      // A file cut under its mapping would SIGBUS in the memcpy.
      struct stat sb {};
      GL_CHECK(::fstat(*fds_[f], &sb) == 0, files_[f].path(), ": fstat failed: ", std::strerror(errno));
      GL_CHECK(uint64_t(sb.st_size) >= in_file + take, files_[f].path(), ": truncated while in use: reading bytes [",
               in_file, ", ", in_file + take, ") but the file is now ", uint64_t(sb.st_size), " bytes (",
               files_[f].size(), " when opened)");
      std::memcpy(out, files_[f].data() + in_file, take);
    }
    out += take;
    offset += take;
    n -= take;
    ++f;
  }
}

// --- IndexedDataset -------------------------------------------------------

IndexedDataset IndexedDataset::open(const std::string& path) {
  IndexedDataset ds;
  std::string prefix = path;
  if (prefix.size() >= 4 && prefix.compare(prefix.size() - 4, 4, ".idx") == 0)
    prefix.resize(prefix.size() - 4);
  ds.idx_path_ = prefix + ".idx";
  const std::string& ip = ds.idx_path_;
  ds.idx_.emplace(ip);
  const MappedFile& idx = *ds.idx_;
  const char* p = idx.data();

  GL_CHECK(idx.size() >= kHeaderBytes, ip, ": truncated: ", idx.size(),
           " bytes, the MMIDIDX header alone needs ", kHeaderBytes);
  GL_CHECK(std::memcmp(p, kMagic, 9) == 0, ip,
           ": bad magic, not a Megatron MMIDIDX index (expected \"MMIDIDX\\0\\0\")");
  const uint64_t version = load_le<uint64_t>(p + 9);
  GL_CHECK(version == 1, ip, ": unsupported MMIDIDX version ", version, " (expected 1)");
  ds.dtype_code_ = int(uint8_t(p[17]));
  switch (ds.dtype_code_) {
    case 4: ds.elsize_ = 4; break;
    case 8: ds.elsize_ = 2; break;
    default:
      GL_CHECK(false, ip, ": unsupported token dtype code ", ds.dtype_code_, " (",
               dtype_name(ds.dtype_code_), "); supported: 4 (int32), 8 (uint16)");
  }
  ds.len_ = load_le<uint64_t>(p + 18);
  ds.doc_count_ = load_le<uint64_t>(p + 26);
  uint64_t expect = 0, t = 0;
  const bool ok = mul_ok(ds.len_, 12, &t) && add_ok(kHeaderBytes, t, &expect) &&
                  mul_ok(ds.doc_count_, 8, &t) && add_ok(expect, t, &expect);
  GL_CHECK(ok, ip, ": len ", ds.len_, " / doc_count ", ds.doc_count_, " overflow");
  GL_CHECK(idx.size() == expect, ip, ": ", idx.size() < expect ? "truncated" : "trailing bytes",
           ": ", idx.size(), " bytes, expected ", expect, " = 34 + len ", ds.len_,
           " x 12 + doc_count ", ds.doc_count_, " x 8");
  ds.sizes_off_ = kHeaderBytes;
  ds.pointers_off_ = kHeaderBytes + ds.len_ * 4;
  ds.doc_idx_off_ = ds.pointers_off_ + ds.len_ * 8;

  ds.bin_ = ByteRange(open_bin(prefix, ip));
  const uint64_t bin_size = ds.bin_.size();
  const std::string bin_name = ds.bin_.file_count() == 1
                                   ? ds.bin_.file(0).path()
                                   : str(prefix, "-*.bin (", ds.bin_.file_count(), " shards)");
  int64_t prev = 0;
  for (uint64_t i = 0; i < ds.len_; ++i) {
    const int32_t sz = ds.size_at(i);
    const int64_t ptr = ds.pointer_at(i);
    GL_CHECK(sz >= 0, ip, ": sequence ", i, " has negative size ", sz);
    GL_CHECK(ptr >= prev, ip, ": pointer of sequence ", i, " (", ptr,
             ") is below the previous one (", prev, "); pointers must be nondecreasing");
    prev = ptr;
    const uint64_t end = uint64_t(ptr) + uint64_t(sz) * ds.elsize_;
    GL_CHECK(end <= bin_size, ip, ": sequence ", i, " spans bytes [", ptr, ", ", end,
             ") beyond the ", bin_size, " bytes of ", bin_name);
  }
  return ds;
}

std::vector<std::string> IndexedDataset::bin_paths() const {
  std::vector<std::string> r;
  for (size_t i = 0; i < bin_.file_count(); ++i) r.push_back(bin_.file(i).path());
  return r;
}

int32_t IndexedDataset::size_at(size_t i) const {
  return load_le<int32_t>(idx_->data() + sizes_off_ + uint64_t(i) * 4);
}

int64_t IndexedDataset::pointer_at(size_t i) const {
  return load_le<int64_t>(idx_->data() + pointers_off_ + uint64_t(i) * 8);
}

size_t IndexedDataset::sequence_length(size_t i) const {
  GL_CHECK(i < len_, idx_path_, ": sequence ", i, " out of range (", len_, " sequences)");
  return size_t(size_at(i));
}

uint64_t IndexedDataset::pointer(size_t i) const {
  GL_CHECK(i < len_, idx_path_, ": sequence ", i, " out of range (", len_, " sequences)");
  return uint64_t(pointer_at(i));
}

size_t IndexedDataset::read_sequence(size_t i, int32_t* out, size_t capacity) const {
  const size_t n = sequence_length(i);
  GL_CHECK(capacity >= n, idx_path_, ": sequence ", i, " has ", n,
           " tokens, the buffer holds ", capacity);
  const uint64_t ptr = uint64_t(pointer_at(i));
  if (elsize_ == 4) {
    bin_.read(ptr, uint64_t(n) * 4, out);
    for (size_t k = 0; k < n; ++k)
      GL_CHECK(out[k] >= 0, idx_path_, ": sequence ", i, " token ", k, " is negative (",
               out[k], ")");
  } else {
    // Widen in place from the back: token k's 2 bytes sit at byte 2k, below
    // its int32 slot at byte 4k, so walking k downwards never overwrites an
    // unread token.
    bin_.read(ptr, uint64_t(n) * 2, out);
    const char* raw = reinterpret_cast<const char*>(out);
    for (size_t k = n; k-- > 0;) out[k] = int32_t(load_le<uint16_t>(raw + 2 * k));
  }
  return n;
}

std::vector<int32_t> IndexedDataset::read_sequence(size_t i) const {
  std::vector<int32_t> out(sequence_length(i));
  read_sequence(i, out.data(), out.size());
  return out;
}

int64_t IndexedDataset::doc_idx(size_t i) const {
  GL_CHECK(i < doc_count_, idx_path_, ": doc_idx entry ", i, " out of range (", doc_count_,
           " entries)");
  return load_le<int64_t>(idx_->data() + doc_idx_off_ + uint64_t(i) * 8);
}

std::vector<int64_t> IndexedDataset::doc_idx() const {
  std::vector<int64_t> r(doc_count_);
  if (doc_count_ > 0) std::memcpy(r.data(), idx_->data() + doc_idx_off_, doc_count_ * 8);
  return r;
}

void IndexedDataset::require_fixed_length(size_t length) const {
  for (uint64_t i = 0; i < len_; ++i) {
    const int32_t sz = size_at(i);
    GL_CHECK(uint64_t(sz) == length, idx_path_, ": sequence ", i, " has ", sz,
             " tokens, expected every sequence to have ", length,
             " (Pythia's preshuffled Pile: 2049)");
  }
}

}  // namespace gl
