// Tensor: a strided view (shape, strides, offset in elements) over a shared,
// reference-counted Storage with one dtype and one device.
//
// Views (view, reshape when possible, permute, transpose, slice, narrow,
// unsqueeze, squeeze, expand) share storage and copy nothing; contiguous(),
// clone(), to(device), to(dtype) copy. Strides may be zero (expand) or any
// non-negative value; kernels receive contiguous() data unless they say
// otherwise. Sizes and element offsets are int64_t throughout.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/storage.h"

namespace gl {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);     // "[2, 3]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);  // row-major
// Broadcast two shapes numpy-style; throws naming both shapes and `op`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps C++ element types to DType for the typed accessors.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<uint16_t> { static constexpr DType value = DType::U16; };

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() == false

  // --- factories ---
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
  // Copies host values (converted from double) into a new tensor.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::F32, Device device = Device::cpu());
  template <class T>
  static Tensor from_data(const std::vector<T>& values, const Shape& shape,
                          Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());
  // Philox draws (core/philox.h): identical values on CPU and CUDA for the
  // same generator state. Both advance `gen`.
  static Tensor uniform(const Shape& shape, Generator& gen, double low = 0.0, double high = 1.0,
                        DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor normal(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0,
                       DType dtype = DType::F32, Device device = Device::cpu());

  // --- metadata ---
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t d) const { return shape_[size_t(wrap_dim(d))]; }
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }
  // "f32[2, 3] cpu": used in every error message about a tensor.
  std::string describe() const;
  // Resolves a possibly negative dim; throws naming this tensor if out of range.
  int64_t wrap_dim(int64_t d) const;

  // --- raw data ---
  void* data_ptr() const;  // address of element 0 of this view
  template <class T> T* data() const {
    GL_CHECK(dtype_ == dtype_of<T>::value, "data<", dtype_name(dtype_of<T>::value),
             ">() on ", describe());
    return static_cast<T*>(data_ptr());
  }

  // --- views (no copy) ---
  Tensor view(const Shape& shape) const;  // needs contiguous(); one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view if contiguous, else copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // broadcast view with zero strides

  // --- copies ---
  Tensor contiguous() const;  // this if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  void copy_(const Tensor& src);  // same shape; any dtype and device
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // --- low-precision shadow (core/storage.h, Storage::lowp_shadow) ---
  // The bf16/f16 copy of this tensor attached by the op that made it, as a
  // tensor of this shape; undefined when there is none of dtype `half` or
  // this is not an f32 view of its whole storage, contiguous from element 0.
  // Read only: it shares memory with the shadow.
  Tensor lowp_shadow(DType half) const;
  // Attaches `half` (BF16 or F16, this shape and device, contiguous, its own
  // whole storage) as this tensor's shadow. Only for an op's fresh output
  // that nobody writes again; `half` must equal to(half.dtype()) bit for bit.
  void attach_lowp_shadow(const Tensor& half) const;

  // --- host access (copies to CPU) ---
  std::vector<double> to_vector() const;
  template <class T> std::vector<T> to_vector_as() const;
  double item() const;  // one-element tensor

 private:
  Tensor(std::shared_ptr<Storage> s, Shape shape, Shape strides, int64_t offset, DType dt);
  std::shared_ptr<Storage> storage_;
  Shape shape_, strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

template <class T>
Tensor Tensor::from_data(const std::vector<T>& values, const Shape& shape, Device device) {
  GL_CHECK(int64_t(values.size()) == shape_numel(shape), "from_data: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value, Device::cpu());
  std::copy(values.begin(), values.end(), t.data<T>());
  return device.is_cpu() ? t : t.to(device);
}

template <class T>
std::vector<T> Tensor::to_vector_as() const {
  Tensor c = to(Device::cpu()).to(dtype_of<T>::value).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace gl
