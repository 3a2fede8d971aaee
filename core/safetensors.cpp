// safetensors reader/writer and Hugging Face checkpoint directories; see
// core/safetensors.h. Reference: the format description in the README of
// https://github.com/huggingface/safetensors and its Rust implementation
// (safetensors/src/tensor.rs: header limit, space padding, validation).
//
// Invariants after SafetensorsFile::open succeeds: every entry's byte range
// lies inside the data buffer, has exactly numel * dtype_size bytes, and no
// two non-empty ranges overlap; so load() can never read out of bounds or
// return another tensor's bytes, whatever the file claims.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/mmap.h"

namespace gl {

// Tensor bytes are copied verbatim from the file, which is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

namespace {

// The Rust implementation refuses headers above 100 MB (MAX_HEADER_SIZE):
// a bigger length field means a corrupt or hostile file, not a real header.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Every dtype the safetensors format defines (with its element size), so
// that tensors gridlock cannot hold are still validated and reported by
// their dtype, while a string outside this list is a corrupt header.
struct StDType {
  const char* name;
  size_t size;
};
constexpr StDType kFormatDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

const StDType* find_format_dtype(const std::string& name) {
  for (const StDType& d : kFormatDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Reads the tensor description `name` -> `value` of header `where` (a path).
struct RawEntry {
  SafetensorsEntry entry;
  std::string dtype_name;
  bool supported = true;
};

RawEntry parse_entry(const std::string& where, const std::string& name, const Json& value,
                     size_t data_size) {
  const std::string ctx = where + ": tensor '" + name + "'";
  GL_CHECK(value.is_object(), ctx, ": expected an object, got ", value.type_name());
  RawEntry raw;
  raw.entry.name = name;
  raw.dtype_name = value.at("dtype", ctx).as_string(ctx + ": dtype");
  const StDType* fd = find_format_dtype(raw.dtype_name);
  GL_CHECK(fd != nullptr, ctx, ": unknown dtype '", raw.dtype_name,
           "' (safetensors dtypes: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32,"
           " F32, F64, I64, U64)");
  const char* ours[] = {"F32", "F64", "BF16", "F16", "I32", "I64", "U16"};
  raw.supported = std::find_if(std::begin(ours), std::end(ours), [&](const char* s) {
                    return raw.dtype_name == s;
                  }) != std::end(ours);
  if (raw.supported) raw.entry.dtype = safetensors_dtype_from_name(raw.dtype_name, ctx);

  // numel * element size with overflow checks: a lying shape must produce
  // an error, not a wrapped-around size that happens to match the offsets.
  const auto& dims = value.at("shape", ctx).as_array(ctx + ": shape");
  // The product of the non-zero dims bounds the strides a Tensor of this
  // shape computes, so it must fit int64 even when numel is 0.
  uint64_t nbytes = fd->size, span = 1;
  bool overflow = false;
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = dims[i].as_int(ctx + ": shape[" + std::to_string(i) + "]");
    GL_CHECK(d >= 0, ctx, ": negative dimension ", d, " at shape[", i, "]");
    raw.entry.shape.push_back(d);
    overflow = overflow || __builtin_mul_overflow(nbytes, uint64_t(d), &nbytes) ||
               __builtin_mul_overflow(span, uint64_t(std::max<int64_t>(d, 1)), &span) ||
               span > uint64_t(INT64_MAX);
  }
  GL_CHECK(!overflow, ctx, ": shape ", shape_str(raw.entry.shape), " is too large");

  const auto& offs = value.at("data_offsets", ctx).as_array(ctx + ": data_offsets");
  GL_CHECK(offs.size() == 2, ctx, ": data_offsets must be [begin, end], got ", offs.size(),
           " values");
  const int64_t begin = offs[0].as_int(ctx + ": data_offsets[0]");
  const int64_t end = offs[1].as_int(ctx + ": data_offsets[1]");
  GL_CHECK(begin >= 0 && begin <= end, ctx, ": data_offsets [", begin, ", ", end,
           "] are not an increasing pair of non-negative offsets");
  GL_CHECK(uint64_t(end) <= data_size, ctx, ": data_offsets [", begin, ", ", end,
           "] reach past the end of the data buffer (", data_size,
           " bytes; truncated file?)");
  GL_CHECK(uint64_t(end - begin) == nbytes, ctx, ": data_offsets [", begin, ", ", end, "] hold ",
           end - begin, " bytes but ", raw.dtype_name, " ", shape_str(raw.entry.shape), " needs ",
           nbytes);
  raw.entry.begin = size_t(begin);
  raw.entry.end = size_t(end);
  return raw;
}

// Tensors may leave gaps (the Rust reader is stricter) but never share a
// byte: sorted by begin, each non-empty range must start at or after the
// furthest end seen so far.
void check_no_overlap(const std::string& path, std::vector<const RawEntry*> ranges) {
  std::stable_sort(ranges.begin(), ranges.end(), [](const RawEntry* a, const RawEntry* b) {
    return a->entry.begin < b->entry.begin;
  });
  const RawEntry* furthest = nullptr;
  for (const RawEntry* r : ranges) {
    if (r->entry.begin == r->entry.end) continue;  // empty tensors occupy nothing
    if (furthest != nullptr) {
      GL_CHECK(r->entry.begin >= furthest->entry.end, path, ": tensors '", furthest->entry.name,
               "' [", furthest->entry.begin, ", ", furthest->entry.end, ") and '", r->entry.name,
               "' [", r->entry.begin, ", ", r->entry.end, ") overlap in the data buffer");
    }
    if (furthest == nullptr || r->entry.end > furthest->entry.end) furthest = r;
  }
}

}  // namespace

// --- dtype names --------------------------------------------------------

const char* safetensors_dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U16: return "U16";
  }
  GL_CHECK(false, "safetensors_dtype_name: invalid DType ", int(dt));
}

DType safetensors_dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "F32") return DType::F32;
  if (name == "F64") return DType::F64;
  if (name == "BF16") return DType::BF16;
  if (name == "F16") return DType::F16;
  if (name == "I32") return DType::I32;
  if (name == "I64") return DType::I64;
  if (name == "U16") return DType::U16;
  GL_CHECK(false, where, ": unsupported dtype '", name,
           "' (gridlock reads F32, F64, BF16, F16, I32, I64, U16)");
}

// --- reading ------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto map = std::make_shared<const MappedFile>(path);
  const size_t size = map->size();
  GL_CHECK(size >= 8, path, ": file is ", size,
           " bytes, too short for a safetensors file (8-byte header length, then the header)");
  uint64_t header_len;
  std::memcpy(&header_len, map->data(), 8);  // little-endian u64 (static_assert above)
  GL_CHECK(header_len <= kMaxHeaderSize, path, ": header length ", header_len,
           " exceeds the 100 MB limit (not a safetensors file, or corrupt)");
  GL_CHECK(header_len <= size - 8, path, ": header length ", header_len, " exceeds the ",
           size - 8, " bytes after the length field (truncated file?)");

  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = map;
  f.data_ = map->data() + 8 + header_len;
  f.data_size_ = size - 8 - size_t(header_len);

  const Json header = Json::parse(std::string_view(map->data() + 8, size_t(header_len)),
                                  path + " (safetensors header)");
  GL_CHECK(header.is_object(), path, ": safetensors header is a JSON ", header.type_name(),
           ", expected an object");
  std::vector<RawEntry> raws;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      const std::string ctx = path + ": __metadata__";
      for (const auto& [k, v] : value.items(ctx))
        f.metadata_[k] = v.as_string(ctx + "['" + k + "']");
      continue;
    }
    raws.push_back(parse_entry(path, name, value, f.data_size_));
  }
  std::vector<const RawEntry*> ptrs;
  for (const RawEntry& r : raws) ptrs.push_back(&r);
  check_no_overlap(path, ptrs);

  // "File order" is data-buffer order: what the writer laid out, whatever
  // order its JSON library put the header keys in.
  std::stable_sort(ptrs.begin(), ptrs.end(), [](const RawEntry* a, const RawEntry* b) {
    return a->entry.begin < b->entry.begin;
  });
  for (const RawEntry* r : ptrs) {
    if (!r->supported) {
      f.unsupported_[r->entry.name] = r->dtype_name;
      continue;
    }
    f.index_[r->entry.name] = f.entries_.size();
    f.entries_.push_back(r->entry);
  }
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::load(const std::string& name, Device device) const {
  const SafetensorsEntry* e = find(name);
  const auto u = unsupported_.find(name);
  GL_CHECK(u == unsupported_.end(), path_, ": tensor '", name, "' is stored as ", u->second,
           ", which gridlock cannot load");
  GL_CHECK(e != nullptr, path_, ": no tensor '", name, "' (the file holds ", entries_.size(),
           " tensors)");
  return load(name, e->dtype, device);
}

Tensor SafetensorsFile::load(const std::string& name, DType dtype, Device device) const {
  const SafetensorsEntry* e = find(name);
  if (e == nullptr) return load(name, device);  // throws the precise error
  Tensor t = Tensor::empty(e->shape, e->dtype, Device::cpu());
  if (e->end > e->begin) std::memcpy(t.data_ptr(), data_ + e->begin, e->end - e->begin);
  // Convert on the CPU before moving: the copy to a GPU then carries the
  // final dtype and needs no device-side conversion.
  return t.to(dtype).to(device);
}

// --- writing ------------------------------------------------------------

namespace {

// The temporary file of one save: removed unless commit() renamed it into
// place, so no error path leaves "<path>.tmp.<pid>" behind.
class TempFile {
 public:
  explicit TempFile(const std::string& path)
      : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
    do {
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd_ < 0 && errno == EINTR);
    GL_CHECK(fd_ >= 0, "save_safetensors: ", path_, ": cannot create ", tmp_, ": ",
             std::strerror(errno));
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
      GL_CHECK(w > 0, "save_safetensors: ", path_, ": write failed after ", written_ + done,
               " bytes: ", w < 0 ? std::strerror(errno) : "short write");
      done += size_t(w);
    }
    written_ += n;
  }

  // fsync before rename: otherwise a crash soon after could leave the new
  // name pointing at a file whose data never reached the disk.
  void commit() {
    GL_CHECK(::fsync(fd_) == 0, "save_safetensors: ", path_, ": fsync failed: ",
             std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    GL_CHECK(::close(fd) == 0, "save_safetensors: ", path_, ": close failed: ",
             std::strerror(errno));
    GL_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "save_safetensors: ", path_,
             ": cannot rename ", tmp_, " into place: ", std::strerror(errno));
    committed_ = true;
    // Make the rename itself durable; failure here loses nothing written.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

}  // namespace

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // The header needs only shapes, so it is built before any data moves and
  // each tensor is then brought to the CPU one at a time while writing.
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta.set(k, Json(v));
    header.set("__metadata__", std::move(meta));
  }
  std::set<std::string> seen;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    GL_CHECK(t.defined(), "save_safetensors: ", path, ": tensor '", name, "' is undefined");
    GL_CHECK(name != "__metadata__", "save_safetensors: ", path,
             ": '__metadata__' is reserved and cannot name a tensor");
    GL_CHECK(seen.insert(name).second, "save_safetensors: ", path, ": tensor name '", name,
             "' given twice");
    Json shape = Json::array();
    for (int64_t d : t.shape()) shape.push_back(Json(d));
    Json offsets = Json::array();
    offsets.push_back(Json(uint64_t(offset)));
    offsets.push_back(Json(uint64_t(offset + t.nbytes())));
    Json e = Json::object();
    e.set("dtype", Json(safetensors_dtype_name(t.dtype())));
    e.set("shape", std::move(shape));
    e.set("data_offsets", std::move(offsets));
    header.set(name, std::move(e));
    offset += t.nbytes();
  }
  // Pad with spaces to a multiple of 8 (as the Rust writer does) so the data
  // buffer starts 8-byte aligned in the file and in any mapping of it.
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  TempFile out(path);
  out.write(&header_len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    if (t.numel() == 0) continue;
    const Tensor c = t.to(Device::cpu()).contiguous();
    out.write(c.data_ptr(), c.nbytes());
  }
  out.commit();
}

// --- checkpoint directories ---------------------------------------------

namespace {

namespace fs = std::filesystem;

// A shard name from the index must stay inside the model directory.
void check_shard_name(const std::string& index_path, const std::string& tensor,
                      const std::string& file) {
  const fs::path p(file);
  bool escapes = file.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  GL_CHECK(!escapes, index_path, ": weight_map['", tensor, "'] = '", file,
           "' is not a file name inside the model directory");
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open_dir(const std::string& dir) {
  std::error_code ec;
  GL_CHECK(fs::is_directory(dir, ec), dir, ": not a directory (expected a Hugging Face model ",
           "directory with model.safetensors)");
  SafetensorsCheckpoint ck;
  ck.dir_ = dir;
  const std::string single = (fs::path(dir) / "model.safetensors").string();
  const std::string index = (fs::path(dir) / "model.safetensors.index.json").string();

  // index: tensor -> shard file named by model.safetensors.index.json.
  std::vector<std::pair<std::string, std::string>> listed;
  std::vector<std::string> shard_names;
  if (fs::exists(single, ec)) {  // Hugging Face also prefers the single file
    shard_names.push_back("model.safetensors");
  } else if (fs::exists(index, ec)) {
    const Json idx = Json::parse_file(index);
    const Json& map = idx.at("weight_map", index);
    std::set<std::string> unique;
    for (const auto& [tensor, file_json] : map.items(index + ": weight_map")) {
      const std::string& file = file_json.as_string(index + ": weight_map['" + tensor + "']");
      check_shard_name(index, tensor, file);
      listed.emplace_back(tensor, file);
      if (unique.insert(file).second) {
        GL_CHECK(fs::exists(fs::path(dir) / file, ec), index, ": shard '", file,
                 "' (listed for tensor '", tensor, "') does not exist in ", dir);
      }
    }
    // Shard names sort in shard order (model-00001-of-00003, ...).
    shard_names.assign(unique.begin(), unique.end());
  } else {
    GL_CHECK(false, dir, ": no model.safetensors or model.safetensors.index.json found");
  }

  std::map<std::string, size_t> unsupported_of;  // tensors we cannot load, by shard
  for (const std::string& name : shard_names) {
    const size_t i = ck.files_.size();
    ck.files_.push_back(SafetensorsFile::open((fs::path(dir) / name).string()));
    auto add = [&](const std::string& tensor) {
      const auto prev = ck.file_of_.find(tensor);
      const auto prev_u = unsupported_of.find(tensor);
      const size_t other = prev != ck.file_of_.end() ? prev->second
                           : prev_u != unsupported_of.end() ? prev_u->second
                                                            : i;
      GL_CHECK(other == i, dir, ": tensor '", tensor, "' appears in two shards: '",
               shard_names[other], "' and '", name, "'");
    };
    for (const SafetensorsEntry& e : ck.files_[i].entries()) {
      add(e.name);
      ck.file_of_[e.name] = i;
      ck.order_.push_back(e.name);
    }
    for (const auto& [tensor, dtype] : ck.files_[i].unsupported()) {
      add(tensor);
      unsupported_of[tensor] = i;
    }
  }
  for (const auto& [tensor, file] : listed) {
    auto it = ck.file_of_.find(tensor);
    size_t actual = it != ck.file_of_.end() ? it->second : size_t(-1);
    if (auto u = unsupported_of.find(tensor); u != unsupported_of.end()) actual = u->second;
    GL_CHECK(actual != size_t(-1), index, ": tensor '", tensor, "' is listed in shard '", file,
             "' but that shard has no such tensor");
    GL_CHECK(shard_names[actual] == file, index, ": tensor '", tensor, "' is listed in shard '",
             file, "' but is stored in '", shard_names[actual], "'");
  }
  return ck;
}

std::vector<std::string> SafetensorsCheckpoint::names() const { return order_; }

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  const auto it = file_of_.find(name);
  if (it == file_of_.end()) {
    for (const SafetensorsFile& f : files_) {
      const auto u = f.unsupported().find(name);
      GL_CHECK(u == f.unsupported().end(), dir_, ": tensor '", name, "' is stored as ",
               u->second, " in ", f.path(), ", which gridlock cannot load");
    }
    GL_CHECK(false, dir_, ": no tensor '", name, "' in the checkpoint");
  }
  return *files_[it->second].find(name);
}

Tensor SafetensorsCheckpoint::load(const std::string& name, DType dtype, Device device) const {
  entry(name);  // the checkpoint-level error, naming the directory
  return files_[file_of_.at(name)].load(name, dtype, device);
}

}  // namespace gl
