// GGUF v3 writer and validating reader (format in gguf.h).
#include "quant/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "core/mmap.h"
#include "quant/ggml_blocks.h"

namespace gl {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr size_t kMaxName = 64;  // GGML_MAX_NAME, NUL included: names are < 64 bytes
constexpr uint32_t kMaxDims = 4; // GGML_MAX_DIMS

bool valid_value_type(uint32_t t) { return t <= 12; }

// Byte width of a numeric/bool GGUF type; 0 for string and array.
size_t type_width(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

bool is_signed_int(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 ||
         t == GgufType::INT64;
}
bool is_float(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

// ggml types this project can encode and decode (quant/ggml_blocks.h).
bool known_ggml_type(uint32_t t) {
  return t == 0 || t == 1 || t == 2 || t == 3 || t == 8 || t == 30;
}

// Bits of an integer value in a `t`-wide field, refusing values that do not fit.
uint64_t int_bits(GgufType t, int64_t v, const char* what) {
  const size_t w = type_width(t);
  if (t == GgufType::BOOL) {
    GL_CHECK(v == 0 || v == 1, "gguf: ", what, ": bool element must be 0 or 1, got ", v);
    return uint64_t(v);
  }
  if (is_signed_int(t)) {
    if (w < 8) {
      const int64_t lo = -(int64_t(1) << (8 * w - 1)), hi = (int64_t(1) << (8 * w - 1)) - 1;
      GL_CHECK(v >= lo && v <= hi, "gguf: ", what, ": ", v, " does not fit in ", gguf_type_name(t));
      return uint64_t(v) & ((uint64_t(1) << (8 * w)) - 1);
    }
    return uint64_t(v);
  }
  GL_CHECK(v >= 0, "gguf: ", what, ": ", v, " does not fit in ", gguf_type_name(t));
  if (w < 8)
    GL_CHECK(uint64_t(v) < (uint64_t(1) << (8 * w)), "gguf: ", what, ": ", v, " does not fit in ",
             gguf_type_name(t));
  return uint64_t(v);
}

uint64_t float_bits(GgufType t, double v) {
  if (t == GgufType::FLOAT32) {
    const float f = float(v);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return b;
}

// Sign-extends a `t`-wide pattern.
int64_t bits_to_int(GgufType t, uint64_t b) {
  const size_t w = type_width(t);
  if (is_signed_int(t) && w < 8) {
    const uint64_t sign = uint64_t(1) << (8 * w - 1);
    return int64_t((b ^ sign) - sign);
  }
  return int64_t(b);
}

double bits_to_double(GgufType t, uint64_t b) {
  if (t == GgufType::FLOAT32) {
    float f;
    const uint32_t b32 = uint32_t(b);
    std::memcpy(&f, &b32, 4);
    return f;
  }
  if (t == GgufType::FLOAT64) {
    double d;
    std::memcpy(&d, &b, 8);
    return d;
  }
  if (t == GgufType::UINT64) return double(b);
  return double(bits_to_int(t, b));
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint64_t alignment_of(const GgufValue& v, const std::string& where) {
  GL_CHECK(v.type() == GgufType::UINT32, where, ": general.alignment must be a uint32, got ",
           gguf_type_name(v.type()));
  const uint64_t a = v.as_u64("general.alignment");
  GL_CHECK(a != 0 && (a & (a - 1)) == 0, where, ": general.alignment must be a power of two, got ",
           a);
  return a;
}

// --- writing ---------------------------------------------------------------

// Little-endian serializer into memory (header), or straight to the file.
class Out {
 public:
  explicit Out(std::string& buf) : buf_(buf) {}
  void bytes(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  void le(uint64_t v, size_t width) {
    for (size_t i = 0; i < width; ++i) buf_.push_back(char((v >> (8 * i)) & 0xff));
  }
  void str(const std::string& s) {
    le(s.size(), 8);
    bytes(s.data(), s.size());
  }
  size_t size() const { return buf_.size(); }

 private:
  std::string& buf_;
};

void write_value(Out& o, const GgufValue& v) {
  const GgufType t = v.type();
  if (t == GgufType::STRING) return o.str(v.as_string("value"));
  if (t == GgufType::ARRAY) {
    o.le(uint32_t(v.elem_type()), 4);
    o.le(v.size(), 8);
    if (v.elem_type() == GgufType::STRING) {
      for (const auto& s : v.str_elems("value")) o.str(s);
    } else {
      for (uint64_t b : v.bits()) o.le(b, type_width(v.elem_type()));
    }
    return;
  }
  o.le(v.bits().at(0), type_width(t));
}

// The temporary file of one write: removed unless commit() renamed it.
class TempFile {
 public:
  explicit TempFile(const std::string& path)
      : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
    do {
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd_ < 0 && errno == EINTR);
    GL_CHECK(fd_ >= 0, "write_gguf: ", path_, ": cannot create ", tmp_, ": ", std::strerror(errno));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(fd_, p + done, std::min<size_t>(n - done, size_t(1) << 30));
      if (w < 0 && errno == EINTR) continue;
      GL_CHECK(w > 0, "write_gguf: ", path_, ": write failed after ", written_ + done,
               " bytes: ", w < 0 ? std::strerror(errno) : "short write");
      done += size_t(w);
    }
    written_ += n;
  }
  void zeros(size_t n) {
    static const char z[256] = {};
    while (n > 0) {
      const size_t k = std::min(n, sizeof z);
      write(z, k);
      n -= k;
    }
  }
  uint64_t written() const { return written_; }

  // fsync before rename: otherwise a crash soon after could leave the new
  // name pointing at a file whose data never reached the disk.
  void commit() {
    GL_CHECK(::fsync(fd_) == 0, "write_gguf: ", path_, ": fsync failed: ", std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    GL_CHECK(::close(fd) == 0, "write_gguf: ", path_, ": close failed: ", std::strerror(errno));
    GL_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "write_gguf: ", path_, ": cannot rename ",
             tmp_, " into place: ", std::strerror(errno));
    committed_ = true;
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {  // make the rename durable; failure here loses nothing written
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// --- reading ---------------------------------------------------------------

// Bounds-checked little-endian cursor over the mapped file; every failure
// names the file, the field and its byte offset.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, uint64_t n) : path_(path), p_(p), n_(n) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return n_ - pos_; }
  void need(uint64_t k, const std::string& field) const {
    GL_CHECK(k <= left(), path_, ": truncated file: ", field, " at byte ", pos_, " needs ", k,
             " bytes, only ", left(), " left");
  }
  uint64_t le(size_t width, const std::string& field) {
    need(width, field);
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i) v |= uint64_t(p_[pos_ + i]) << (8 * i);
    pos_ += width;
    return v;
  }
  std::string str(const std::string& field) {
    const uint64_t at = pos_;
    const uint64_t len = le(8, field + " length");
    GL_CHECK(len <= left(), path_, ": ", field, " at byte ", at, " claims ", len,
             " bytes but only ", left(), " remain in the file");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
};

GgufValue read_value(Cursor& c, GgufType t, const std::string& path, const std::string& key) {
  const std::string field = "value of '" + key + "'";
  if (t == GgufType::STRING) return GgufValue::str(c.str(field));
  if (t != GgufType::ARRAY) {
    const uint64_t b = c.le(type_width(t), field);
    GL_CHECK(t != GgufType::BOOL || b <= 1, path, ": ", field, ": bool byte is ", b,
             " (must be 0 or 1)");
    return GgufValue::from_bits(t, t, {b}, {});
  }
  const uint64_t at = c.pos();
  const uint32_t et = uint32_t(c.le(4, field + " element type"));
  GL_CHECK(valid_value_type(et), path, ": ", field, " at byte ", at,
           ": unknown array element type ", et);
  const GgufType elem = GgufType(et);
  GL_CHECK(elem != GgufType::ARRAY, path, ": ", field,
           ": arrays of arrays are not supported by this reader");
  const uint64_t n = c.le(8, field + " element count");
  // Every element takes at least 1 byte (8 for a string's length): a count
  // the file cannot hold is refused before anything is allocated.
  const uint64_t min_each = elem == GgufType::STRING ? 8 : type_width(elem);
  GL_CHECK(n <= c.left() / min_each, path, ": ", field, " at byte ", at, " claims ", n,
           " elements of ", gguf_type_name(elem), " but only ", c.left(), " bytes remain");
  if (elem == GgufType::STRING) {
    std::vector<std::string> s;
    s.reserve(size_t(n));
    for (uint64_t i = 0; i < n; ++i) s.push_back(c.str(field + " element " + std::to_string(i)));
    return GgufValue::from_bits(GgufType::ARRAY, elem, {}, std::move(s));
  }
  std::vector<uint64_t> bits(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) {
    bits[size_t(i)] = c.le(type_width(elem), field);
    GL_CHECK(elem != GgufType::BOOL || bits[size_t(i)] <= 1, path, ": ", field, " element ", i,
             ": bool byte is ", bits[size_t(i)], " (must be 0 or 1)");
  }
  return GgufValue::from_bits(GgufType::ARRAY, elem, std::move(bits), {});
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

// --- GgufValue ---------------------------------------------------------------

GgufValue GgufValue::from_bits(GgufType type, GgufType elem, std::vector<uint64_t> bits,
                               std::vector<std::string> strings) {
  GgufValue v;
  v.type_ = type;
  v.elem_ = elem;
  v.bits_ = std::move(bits);
  v.strings_ = std::move(strings);
  return v;
}

namespace {
GgufValue scalar(GgufType t, uint64_t bits) { return GgufValue::from_bits(t, t, {bits}, {}); }
}  // namespace

GgufValue GgufValue::u8(uint8_t x) { return scalar(GgufType::UINT8, x); }
GgufValue GgufValue::i8(int8_t x) { return scalar(GgufType::INT8, uint8_t(x)); }
GgufValue GgufValue::u16(uint16_t x) { return scalar(GgufType::UINT16, x); }
GgufValue GgufValue::i16(int16_t x) { return scalar(GgufType::INT16, uint16_t(x)); }
GgufValue GgufValue::u32(uint32_t x) { return scalar(GgufType::UINT32, x); }
GgufValue GgufValue::i32(int32_t x) { return scalar(GgufType::INT32, uint32_t(x)); }
GgufValue GgufValue::f32(float x) {
  return scalar(GgufType::FLOAT32, float_bits(GgufType::FLOAT32, x));
}
GgufValue GgufValue::boolean(bool x) { return scalar(GgufType::BOOL, uint64_t(x)); }
GgufValue GgufValue::u64(uint64_t x) { return scalar(GgufType::UINT64, x); }
GgufValue GgufValue::i64(int64_t x) { return scalar(GgufType::INT64, uint64_t(x)); }
GgufValue GgufValue::f64(double x) {
  return scalar(GgufType::FLOAT64, float_bits(GgufType::FLOAT64, x));
}
GgufValue GgufValue::str(std::string x) {
  return from_bits(GgufType::STRING, GgufType::STRING, {}, {std::move(x)});
}

GgufValue GgufValue::int_array(GgufType elem, const std::vector<int64_t>& v) {
  GL_CHECK(type_width(elem) != 0 && !is_float(elem), "gguf: int_array: element type ",
           gguf_type_name(elem), " is not an integer or bool type");
  std::vector<uint64_t> bits;
  bits.reserve(v.size());
  for (int64_t x : v) bits.push_back(int_bits(elem, x, "int_array"));
  return from_bits(GgufType::ARRAY, elem, std::move(bits), {});
}

GgufValue GgufValue::float_array(GgufType elem, const std::vector<double>& v) {
  GL_CHECK(is_float(elem), "gguf: float_array: element type ", gguf_type_name(elem),
           " is not float32 or float64");
  std::vector<uint64_t> bits;
  bits.reserve(v.size());
  for (double x : v) bits.push_back(float_bits(elem, x));
  return from_bits(GgufType::ARRAY, elem, std::move(bits), {});
}

GgufValue GgufValue::str_array(std::vector<std::string> v) {
  return from_bits(GgufType::ARRAY, GgufType::STRING, {}, std::move(v));
}

size_t GgufValue::size() const {
  if (type_ != GgufType::ARRAY) return 1;
  return elem_ == GgufType::STRING ? strings_.size() : bits_.size();
}

int64_t GgufValue::as_int(const std::string& key) const {
  GL_CHECK(type_ != GgufType::ARRAY && type_ != GgufType::STRING && !is_float(type_), "gguf: '",
           key, "' is a ", gguf_type_name(type_), ", expected an integer");
  GL_CHECK(type_ != GgufType::UINT64 || bits_[0] <= uint64_t(std::numeric_limits<int64_t>::max()),
           "gguf: '", key, "' = ", bits_[0], " does not fit in int64");
  return bits_to_int(type_, bits_[0]);
}

uint64_t GgufValue::as_u64(const std::string& key) const {
  if (type_ == GgufType::UINT64) return bits_[0];
  const int64_t v = as_int(key);
  GL_CHECK(v >= 0, "gguf: '", key, "' = ", v, " is negative, expected an unsigned value");
  return uint64_t(v);
}

double GgufValue::as_double(const std::string& key) const {
  GL_CHECK(type_ != GgufType::ARRAY && type_ != GgufType::STRING && type_ != GgufType::BOOL,
           "gguf: '", key, "' is a ", gguf_type_name(type_), ", expected a number");
  return bits_to_double(type_, bits_[0]);
}

bool GgufValue::as_bool(const std::string& key) const {
  GL_CHECK(type_ == GgufType::BOOL, "gguf: '", key, "' is a ", gguf_type_name(type_),
           ", expected a bool");
  return bits_[0] != 0;
}

const std::string& GgufValue::as_string(const std::string& key) const {
  GL_CHECK(type_ == GgufType::STRING, "gguf: '", key, "' is a ", gguf_type_name(type_),
           ", expected a string");
  return strings_[0];
}

std::vector<int64_t> GgufValue::int_elems(const std::string& key) const {
  GL_CHECK(type_ == GgufType::ARRAY && type_width(elem_) != 0 && !is_float(elem_), "gguf: '", key,
           "' is not an array of integers (", gguf_type_name(type_), " of ",
           gguf_type_name(elem_), ")");
  std::vector<int64_t> out;
  out.reserve(bits_.size());
  for (uint64_t b : bits_) out.push_back(bits_to_int(elem_, b));
  return out;
}

std::vector<double> GgufValue::float_elems(const std::string& key) const {
  GL_CHECK(type_ == GgufType::ARRAY && type_width(elem_) != 0 && elem_ != GgufType::BOOL, "gguf: '",
           key, "' is not an array of numbers");
  std::vector<double> out;
  out.reserve(bits_.size());
  for (uint64_t b : bits_) out.push_back(bits_to_double(elem_, b));
  return out;
}

const std::vector<std::string>& GgufValue::str_elems(const std::string& key) const {
  GL_CHECK(type_ == GgufType::ARRAY && elem_ == GgufType::STRING, "gguf: '", key,
           "' is not an array of strings");
  return strings_;
}

bool GgufValue::operator==(const GgufValue& o) const {
  return type_ == o.type_ && elem_ == o.elem_ && bits_ == o.bits_ && strings_ == o.strings_;
}

// --- tensors -----------------------------------------------------------------

uint64_t gguf_tensor_bytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& what) {
  GL_CHECK(known_ggml_type(uint32_t(type)), "gguf: tensor '", what, "': unsupported ggml type ",
           uint32_t(type));
  GL_CHECK(!ne.empty() && ne.size() <= kMaxDims, "gguf: tensor '", what, "' has ", ne.size(),
           " dims (GGUF allows 1..", kMaxDims, ")");
  for (size_t i = 0; i < ne.size(); ++i)
    GL_CHECK(ne[i] >= 0, "gguf: tensor '", what, "': ne[", i, "] = ", ne[i], " is negative");
  const int64_t block = ggml_block_size(type);
  GL_CHECK(ne[0] % block == 0, "gguf: tensor '", what, "': ne0 = ", ne[0],
           " is not a multiple of ", block, " (the ", ggml_type_name(type), " block size)");
  // Rows of ne0 values; overflow is checked because the dims come from files.
  const uint64_t row = uint64_t(ne[0] / block) * ggml_type_size(type);
  uint64_t total = row;
  for (size_t i = 1; i < ne.size(); ++i) {
    GL_CHECK(ne[i] == 0 || total <= std::numeric_limits<uint64_t>::max() / uint64_t(ne[i]),
             "gguf: tensor '", what, "': size overflows 64 bits");
    total *= uint64_t(ne[i]);
  }
  return total;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

void write_gguf(const std::string& path, const std::vector<GgufKV>& metadata,
                const std::vector<GgufTensor>& tensors) {
  const std::string where = "write_gguf: " + path;
  // Validate everything before the temporary file exists.
  uint64_t alignment = kDefaultAlignment;
  std::set<std::string> keys;
  for (const auto& kv : metadata) {
    GL_CHECK(keys.insert(kv.key).second, where, ": metadata key '", kv.key, "' given twice");
    if (kv.key == "general.alignment") alignment = alignment_of(kv.value, where);
  }
  std::set<std::string> names;
  std::vector<uint64_t> sizes;
  for (const auto& t : tensors) {
    GL_CHECK(!t.name.empty() && t.name.size() < kMaxName, where, ": tensor name '", t.name,
             "' must be 1..", kMaxName - 1, " bytes (ggml's GGML_MAX_NAME)");
    GL_CHECK(names.insert(t.name).second, where, ": tensor '", t.name, "' given twice");
    const uint64_t n = gguf_tensor_bytes(t.type, t.ne, t.name);
    GL_CHECK(t.data.size() == n, where, ": tensor '", t.name, "' has ", t.data.size(),
             " bytes of data, its type ", ggml_type_name(t.type), " and dims need ", n);
    sizes.push_back(n);
  }

  std::string header;
  Out o(header);
  o.le(kMagic, 4);
  o.le(kVersion, 4);
  o.le(tensors.size(), 8);
  o.le(metadata.size(), 8);
  for (const auto& kv : metadata) {
    o.str(kv.key);
    o.le(uint32_t(kv.value.type()), 4);
    write_value(o, kv.value);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    o.str(t.name);
    o.le(t.ne.size(), 4);
    for (int64_t d : t.ne) o.le(uint64_t(d), 8);
    o.le(uint32_t(t.type), 4);
    o.le(offset, 8);
    offset += align_up(sizes[i], alignment);
  }

  TempFile f(path);
  f.write(header.data(), header.size());
  f.zeros(size_t(align_up(header.size(), alignment) - header.size()));
  for (size_t i = 0; i < tensors.size(); ++i) {
    f.write(tensors[i].data.data(), tensors[i].data.size());
    f.zeros(size_t(align_up(sizes[i], alignment) - sizes[i]));
  }
  f.commit();
}

// --- GgufReader --------------------------------------------------------------

GgufReader GgufReader::open(const std::string& path) {
  GgufReader r;
  r.path_ = path;
  auto file = std::make_shared<MappedFile>(path);
  r.base_ = reinterpret_cast<const uint8_t*>(file->data());
  r.size_ = file->size();
  r.mapping_ = file;
  Cursor c(path, r.base_, r.size_);

  const uint32_t magic = uint32_t(c.le(4, "magic"));
  GL_CHECK(magic == kMagic, path, ": not a GGUF file (magic bytes are not \"GGUF\")");
  r.version_ = uint32_t(c.le(4, "version"));
  GL_CHECK(r.version_ == kVersion, path, ": GGUF version ", r.version_,
           " is not supported (this reader reads version 3)");
  const uint64_t n_tensors = c.le(8, "tensor_count");
  const uint64_t n_kv = c.le(8, "metadata_kv_count");
  // Smallest possible records: a KV is 8 (key length) + 4 (type) + 1 bytes;
  // a tensor info 8 + 4 + 8 + 4 + 8. Larger counts cannot fit the file.
  GL_CHECK(n_kv <= c.left() / 13, path, ": metadata_kv_count = ", n_kv, " cannot fit in the ",
           c.left(), " bytes after the header");
  GL_CHECK(n_tensors <= c.left() / 32, path, ": tensor_count = ", n_tensors,
           " cannot fit in the ", c.left(), " bytes after the header");

  std::map<std::string, size_t> key_index;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.str("metadata key " + std::to_string(i));
    GL_CHECK(key_index.emplace(key, r.kv_.size()).second, path, ": metadata key '", key,
             "' at byte ", at, " appears twice");
    const uint64_t tat = c.pos();
    const uint32_t t = uint32_t(c.le(4, "value type of '" + key + "'"));
    GL_CHECK(valid_value_type(t), path, ": metadata '", key, "' at byte ", tat,
             ": unknown value type ", t);
    GgufValue v = read_value(c, GgufType(t), path, key);
    if (key == "general.alignment") r.alignment_ = alignment_of(v, path);
    r.kv_.push_back({std::move(key), std::move(v)});
  }

  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string field = "tensor info " + std::to_string(i);
    const uint64_t at = c.pos();
    GgufTensorInfo t;
    t.name = c.str(field + " name");
    GL_CHECK(!t.name.empty() && t.name.size() < kMaxName, path, ": ", field, " at byte ", at,
             ": name of ", t.name.size(), " bytes (ggml allows 1..", kMaxName - 1, ")");
    GL_CHECK(names.insert(t.name).second, path, ": tensor '", t.name, "' appears twice");
    const uint32_t n_dims = uint32_t(c.le(4, "n_dims of tensor '" + t.name + "'"));
    GL_CHECK(n_dims >= 1 && n_dims <= kMaxDims, path, ": tensor '", t.name, "' has n_dims = ",
             n_dims, " (allowed 1..", kMaxDims, ")");
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.le(8, "ne of tensor '" + t.name + "'");
      GL_CHECK(ne <= uint64_t(std::numeric_limits<int64_t>::max()), path, ": tensor '", t.name,
               "': ne[", d, "] = ", ne, " is out of range");
      t.ne.push_back(int64_t(ne));
    }
    const uint32_t type = uint32_t(c.le(4, "type of tensor '" + t.name + "'"));
    GL_CHECK(known_ggml_type(type), path, ": tensor '", t.name, "' has ggml type ", type,
             ", not one this reader supports (F32, F16, BF16, Q4_0, Q4_1, Q8_0)");
    t.type = GgmlType(type);
    t.offset = c.le(8, "offset of tensor '" + t.name + "'");
    try {
      t.nbytes = gguf_tensor_bytes(t.type, t.ne, t.name);
    } catch (const Error& e) {
      GL_CHECK(false, path, ": ", e.what());
    }
    r.tensors_.push_back(std::move(t));
  }

  r.data_offset_ = align_up(c.pos(), r.alignment_);
  GL_CHECK(r.data_offset_ <= r.size_ || r.tensors_.empty(), path, ": truncated file: tensor data ",
           "would start at byte ", r.data_offset_, " but the file has ", r.size_, " bytes");
  const uint64_t data_size = r.size_ > r.data_offset_ ? r.size_ - r.data_offset_ : 0;
  std::vector<std::pair<uint64_t, size_t>> by_offset;
  for (size_t i = 0; i < r.tensors_.size(); ++i) {
    const auto& t = r.tensors_[i];
    GL_CHECK(t.offset % r.alignment_ == 0, path, ": tensor '", t.name, "' offset ", t.offset,
             " is not a multiple of the alignment ", r.alignment_);
    GL_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset, path, ": tensor '", t.name,
             "' data [", t.offset, ", ", t.offset + t.nbytes, ") lies outside the ", data_size,
             " bytes of tensor data (truncated file?)");
    by_offset.push_back({t.offset, i});
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const auto& prev = r.tensors_[by_offset[k - 1].second];
    const auto& cur = r.tensors_[by_offset[k].second];
    GL_CHECK(prev.offset + prev.nbytes <= cur.offset, path, ": tensors '", prev.name, "' and '",
             cur.name, "' overlap");
  }
  return r;
}

const GgufValue* GgufReader::find(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const GgufValue& GgufReader::at(const std::string& key) const {
  const GgufValue* v = find(key);
  GL_CHECK(v != nullptr, path_, ": metadata key '", key, "' is missing");
  return *v;
}

const GgufTensorInfo* GgufReader::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufReader::tensor(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  GL_CHECK(t != nullptr, path_, ": tensor '", name, "' is missing");
  return *t;
}

const uint8_t* GgufReader::data(const GgufTensorInfo& t) const {
  return base_ + data_offset_ + t.offset;
}

std::vector<float> GgufReader::dequantize(const GgufTensorInfo& t) const {
  std::vector<float> out(size_t(t.numel()));
  if (!out.empty()) ggml_dequantize(t.type, data(t), t.numel(), out.data());
  return out;
}

}  // namespace gl
