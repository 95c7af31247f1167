// Tensor: a dense, row-major, contiguous n-d array with a dtype, owned or borrowed (e.g. from an mmap).
//
// Borrowed tensors keep their owner (a MappedFile, another tensor's buffer) alive through a shared_ptr
// and are read-only; owned tensors are writable. Copying a Tensor shares the storage (cheap); Clone()
// copies the bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/tensor/dtype.h"

namespace qforge {

using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a 0-d scalar). Throws on negative dims or overflow.
int64_t NumElements(const Shape& shape);
// "[4096, 128]"
std::string ShapeToString(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // A new zero-filled tensor that owns its storage.
  static Tensor Zeros(DType dtype, Shape shape);
  // A new tensor owning its storage, filled from `values` (f32 only).
  static Tensor FromF32(Shape shape, std::span<const float> values);
  // A 0-d f32 scalar.
  static Tensor Scalar(float value);
  // A read-only view of `data` (nbytes = numel * dtype size) kept valid by `owner`.
  static Tensor Borrow(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr || numel_ == 0; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative i counts from the end
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }
  bool writable() const { return writable_; }

  const void* raw() const { return data_; }
  void* mutable_raw();
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), nbytes()}; }

  template <typename T>
  const T* data() const {
    QF_ASSERT(sizeof(T) == DTypeSize(dtype_), "element size mismatch for dtype {}", DTypeName(dtype_));
    return static_cast<const T*>(data_);
  }
  template <typename T>
  T* mutable_data() {
    QF_ASSERT(sizeof(T) == DTypeSize(dtype_), "element size mismatch for dtype {}", DTypeName(dtype_));
    return static_cast<T*>(mutable_raw());
  }
  template <typename T>
  std::span<const T> span() const {
    return {data<T>(), static_cast<size_t>(numel_)};
  }
  template <typename T>
  std::span<T> mutable_span() {
    return {mutable_data<T>(), static_cast<size_t>(numel_)};
  }

  // Same bytes, new shape (numel must match).
  Tensor Reshape(Shape shape) const;
  // Deep copy (owned, writable).
  Tensor Clone() const;
  // Converts a floating tensor (F32, F16, BF16, F8_E4M3, F8_E5M2, F64) to f32 exactly (F64 rounds RNE).
  // Returns *this when already F32. Throws for integer dtypes.
  Tensor ToF32() const;
  // Converts an f32 tensor to `dtype` (F32, F16, BF16 with RNE). Throws for other targets.
  Tensor FromF32To(DType dtype) const;
  // Rows [begin, end) of dimension 0 as a view (shares storage).
  Tensor Slice0(int64_t begin, int64_t end) const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  int64_t numel_ = 0;
  const void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  bool writable_ = false;
};

// Converts `n` elements of a floating dtype to f32 (exact). `src` holds n * DTypeSize(dtype) bytes.
void ConvertToF32(DType dtype, const void* src, float* dst, int64_t n);

// Rounds f32 values in place to the nearest value of `dtype` (BF16, F16: RNE, as torch's .to(dtype); F32 and
// any other dtype: unchanged), e.g. updated weights as a bf16 model holds them.
void RoundToDType(DType dtype, std::span<float> values);

}  // namespace qforge
