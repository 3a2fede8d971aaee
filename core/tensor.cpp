#include "core/tensor.h"

#include <algorithm>

#include "core/device_hooks.h"

namespace gl {

void throw_error(const char* file, int line, const std::string& msg) {
  std::string f = file;
  const size_t slash = f.find_last_of('/');
  if (slash != std::string::npos) {
    // Keep "folder/file.cpp" so the message points into the source tree.
    const size_t prev = f.find_last_of('/', slash - 1);
    f = f.substr(prev == std::string::npos ? 0 : prev + 1);
  }
  throw Error(msg + " [" + f + ":" + std::to_string(line) + "]");
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    GL_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
             shape_str(b), " cannot be broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

static void check_shape(const Shape& shape, const char* where) {
  for (int64_t d : shape)
    GL_CHECK(d >= 0, where, ": negative dimension in shape ", shape_str(shape));
}

Tensor::Tensor(std::shared_ptr<Storage> s, Shape shape, Shape strides, int64_t offset, DType dt)
    : storage_(std::move(s)), shape_(std::move(shape)), strides_(std::move(strides)),
      offset_(offset), dtype_(dt) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::empty");
  if (device.is_cuda()) {
    const int n = cuda_hooks::device_count();
    GL_CHECK(device.index >= 0 && device.index < n, "Tensor::empty: device ", device.name(),
             " is not available (", n, " CUDA device(s) visible",
             cuda_hooks::built() ? "" : "; gridlock was built without CUDA", ")");
  }
  const size_t nbytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(std::make_shared<Storage>(nbytes, device), shape, contiguous_strides(shape), 0,
                dtype);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                           Device device) {
  GL_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype, Device::cpu());
  cpu_hooks::convert(t.data_ptr(), dtype, values.data(), DType::F64, t.numel());
  return device.is_cpu() ? t : t.to(device);
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(i);
  return from_vector(v, {int64_t(v.size())}, dtype, device);
}

static Tensor random_tensor(const Shape& shape, Generator& gen, RandomKind kind, double a,
                            double b, DType dtype, Device device) {
  GL_CHECK(is_floating(dtype), "random tensors need a floating dtype, got ", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  const uint64_t n = uint64_t(t.numel());
  const uint64_t offset = gen.advance(kind == RandomKind::UNIFORM ? (n + 3) / 4 : n);
  if (device.is_cpu())
    cpu_hooks::random(t.data_ptr(), dtype, t.numel(), gen.seed, offset, kind, a, b);
  else
    cuda_hooks::random(device.index, t.data_ptr(), dtype, t.numel(), gen.seed, offset, kind, a, b);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, double low, double high, DType dtype,
                       Device device) {
  GL_CHECK(low <= high, "uniform: low ", low, " > high ", high);
  return random_tensor(shape, gen, RandomKind::UNIFORM, low, high, dtype, device);
}

Tensor Tensor::normal(const Shape& shape, Generator& gen, double mean, double std, DType dtype,
                      Device device) {
  GL_CHECK(std >= 0, "normal: negative std ", std);
  return random_tensor(shape, gen, RandomKind::NORMAL, mean, std, dtype, device);
}

bool Tensor::is_contiguous() const {
  // No elements, no layout: strides of an empty tensor are arbitrary (and
  // contiguous_strides gives zero-size dims stride-1 neighbours).
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;  // any stride is fine for a size-1 dim
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device().name();
}

int64_t Tensor::wrap_dim(int64_t d) const {
  const int64_t n = dim();
  GL_CHECK(d >= -n && d < n, "dim ", d, " out of range for ", describe());
  return d < 0 ? d + n : d;
}

void* Tensor::data_ptr() const {
  GL_CHECK(defined(), "data_ptr() of an undefined tensor");
  return static_cast<char*>(storage_->data) + offset_ * int64_t(element_size());
}

// --- views -----------------------------------------------------------------

static Shape infer_shape(const Shape& shape, int64_t numel, const std::string& who) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      GL_CHECK(infer < 0, who, ": more than one -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      GL_CHECK(out[i] >= 0, who, ": negative dimension in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    GL_CHECK(known != 0 && numel % known == 0, who, ": cannot infer -1 in ", shape_str(shape),
             " for ", numel, " elements");
    out[size_t(infer)] = numel / known;
  }
  GL_CHECK(shape_numel(out) == numel, who, ": shape ", shape_str(shape), " has ",
           shape_numel(out), " elements, tensor has ", numel);
  return out;
}

Tensor Tensor::view(const Shape& shape) const {
  const Shape s = infer_shape(shape, numel(), "view of " + describe());
  GL_CHECK(is_contiguous(), "view: ", describe(),
           " is not contiguous; use reshape() (which copies) or contiguous() first");
  return Tensor(storage_, s, contiguous_strides(s), offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  GL_CHECK(int64_t(dims.size()) == dim(), "permute: ", dims.size(), " dims given for ",
           describe());
  Shape s(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i]);
    GL_CHECK(!seen[size_t(d)], "permute: dim ", d, " repeated for ", describe());
    seen[size_t(d)] = true;
    s[i] = shape_[size_t(d)];
    st[i] = strides_[size_t(d)];
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(static_cast<size_t>(dim()));
  for (size_t i = 0; i < p.size(); ++i) p[i] = int64_t(i);
  std::swap(p[size_t(wrap_dim(d0))], p[size_t(wrap_dim(d1))]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d);
  GL_CHECK(step > 0, "slice: step must be positive, got ", step, " for ", describe());
  const int64_t n = shape_[size_t(d)];
  // Python semantics: negative indices count from the end, then clamp.
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape_, st = strides_;
  s[size_t(d)] = end > start ? (end - start - 1) / step + 1 : 0;  // no overflow for huge steps
  // One element or none: the stride is never used, and stride * step could overflow.
  if (s[size_t(d)] > 1) st[size_t(d)] = strides_[size_t(d)] * step;
  return Tensor(storage_, s, st, offset_ + start * strides_[size_t(d)], dtype_);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d);
  const int64_t n = shape_[size_t(d)];
  GL_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ",
           start + length, ") out of range for dim ", d, " of ", describe());
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d);
  const int64_t n = shape_[size_t(d)];
  GL_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d,
           " of ", describe());
  if (index < 0) index += n;
  Shape s = shape_, st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return Tensor(storage_, s, st, offset_ + index * strides_[size_t(d)], dtype_);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  GL_CHECK(d >= -dim() - 1 && d <= dim(), "unsqueeze: dim ", d, " out of range for ",
           describe());
  if (d < 0) d += dim() + 1;
  Shape s = shape_, st = strides_;
  const int64_t stride = d < dim() ? strides_[size_t(d)] * shape_[size_t(d)] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d);
  GL_CHECK(shape_[size_t(d)] == 1, "squeeze: dim ", d, " of ", describe(), " is not 1");
  Shape s = shape_, st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  GL_CHECK(shape.size() >= shape_.size(), "expand: ", describe(), " to ", shape_str(shape),
           " has fewer dims");
  for (int64_t d : shape)
    GL_CHECK(d >= 0, "expand: ", describe(), " to ", shape_str(shape), ": negative size");
  const size_t lead = shape.size() - shape_.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    const int64_t have = shape_[i], want = shape[lead + i];
    GL_CHECK(have == want || have == 1, "expand: ", describe(), " cannot expand to ",
             shape_str(shape));
    st[lead + i] = have == want ? strides_[i] : 0;
  }
  return Tensor(storage_, shape, st, offset_, dtype_);
}

// --- copies ----------------------------------------------------------------

// dst and src: same shape, dtype and device, any strides.
static void copy_strided(const Tensor& dst, const Tensor& src) {
  const int ndim = int(dst.dim());
  if (dst.device().is_cpu())
    cpu_hooks::copy_strided(dst.data_ptr(), dst.strides().data(), src.data_ptr(),
                            src.strides().data(), dst.shape().data(), ndim, dst.element_size());
  else
    cuda_hooks::copy_strided(dst.device().index, dst.data_ptr(), dst.strides().data(),
                             src.data_ptr(), src.strides().data(), dst.shape().data(), ndim,
                             dst.element_size());
}

Tensor Tensor::contiguous() const {
  GL_CHECK(defined(), "contiguous() of an undefined tensor");
  if (is_contiguous()) return *this;
  Tensor out = empty(shape_, dtype_, device());
  copy_strided(out, *this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, dev);
  cuda_hooks::memcpy(out.data_ptr(), dev, src.data_ptr(), device(), nbytes());
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype_) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape_, dt, device());
  if (device().is_cpu())
    cpu_hooks::convert(out.data_ptr(), dt, src.data_ptr(), dtype_, numel());
  else
    cuda_hooks::convert(device().index, out.data_ptr(), dt, src.data_ptr(), dtype_, numel());
  return out;
}

void Tensor::copy_(const Tensor& src) {
  GL_CHECK(defined() && src.defined(), "copy_: undefined tensor");
  GL_CHECK(src.shape() == shape_, "copy_: source ", src.describe(), " does not match ",
           describe());
  for (size_t d = 0; d < shape_.size(); ++d)
    GL_CHECK(strides_[d] != 0 || shape_[d] <= 1, "copy_: destination ", describe(),
             " is an expanded view (stride 0 in dim ", d, "): several elements share memory");
  // Bring the source to our dtype and device first; the strided copy then
  // writes it into this view, whatever its strides.
  Tensor s = src.to(dtype_).to(device());
  if (s.shares_storage(*this)) {  // overlapping views: read everything before writing
    Tensor tmp = empty(shape_, dtype_, device());
    copy_strided(tmp, s);
    s = tmp;
  }
  storage_->lowp_shadow.reset();  // a written storage's shadow would be stale
  copy_strided(*this, s);
}

// A view of the whole storage in element order: the shadow's elements are
// this tensor's, whatever shape it has been reshaped to.
static bool views_whole_storage(const Tensor& t) {
  return t.dtype() == DType::F32 && t.offset() == 0 && t.is_contiguous() &&
         t.nbytes() == t.storage()->nbytes;
}

Tensor Tensor::lowp_shadow(DType half) const {
  if (!defined() || !storage_->lowp_shadow || storage_->lowp_shadow_dtype != half ||
      !views_whole_storage(*this))
    return Tensor();
  return Tensor(storage_->lowp_shadow, shape_, contiguous_strides(shape_), 0, half);
}

void Tensor::attach_lowp_shadow(const Tensor& half) const {
  GL_CHECK(defined() && views_whole_storage(*this), "attach_lowp_shadow: ", describe(),
           " is not an f32 view of its whole storage");
  GL_CHECK(half.defined() && (half.dtype() == DType::BF16 || half.dtype() == DType::F16) &&
               half.shape() == shape_ && half.device() == device() && half.offset() == 0 &&
               half.is_contiguous() && half.nbytes() == half.storage()->nbytes,
           "attach_lowp_shadow: ", half.defined() ? half.describe() : "undefined",
           " is not a whole bf16/f16 tensor shaped like ", describe());
  storage_->lowp_shadow = half.storage();
  storage_->lowp_shadow_dtype = half.dtype();
}

void Tensor::fill_(double value) {
  GL_CHECK(defined(), "fill_ of an undefined tensor");
  storage_->lowp_shadow.reset();
  if (!is_contiguous()) {
    copy_(full(shape_, value, dtype_, device()));
    return;
  }
  if (device().is_cpu()) cpu_hooks::fill(data_ptr(), dtype_, numel(), value);
  else cuda_hooks::fill(device().index, data_ptr(), dtype_, numel(), value);
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = to(Device::cpu()).contiguous();
  std::vector<double> out(size_t(c.numel()));
  cpu_hooks::convert(out.data(), DType::F64, c.data_ptr(), dtype_, c.numel());
  return out;
}

double Tensor::item() const {
  GL_CHECK(numel() == 1, "item() needs one element, got ", describe());
  return to_vector()[0];
}

}  // namespace gl
