// Tensor storage, views and dtype conversions.
#include "qforge/tensor/tensor.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#include "qforge/numerics/half.h"
#include "qforge/numerics/layout.h"

namespace qforge {

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  for (const auto& t : kDTypeTable) {
    if (t.safetensors_name == name) return t.dtype;
  }
  return std::nullopt;
}

std::optional<DType> DTypeFromTorchName(std::string_view name) {
  if (name.substr(0, 6) == "torch.") name.remove_prefix(6);
  for (const auto& t : kDTypeTable) {
    if (t.torch_name == name) return t.dtype;
  }
  if (name == "float" ) return DType::kF32;
  if (name == "half") return DType::kF16;
  return std::nullopt;
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    QF_CHECK(d >= 0, "negative dimension in shape {}", ShapeToString(shape));
    QF_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, "shape {} overflows",
             ShapeToString(shape));
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  t.shape_ = std::move(shape);
  const size_t nbytes = t.nbytes();
  // Over-allocate to a multiple of 64 bytes so SIMD tails may read a whole vector safely.
  const size_t alloc = (nbytes + 63) / 64 * 64 + 64;
  std::shared_ptr<std::byte[]> buf(new (std::align_val_t(64)) std::byte[alloc](),
                                   [](std::byte* p) { ::operator delete[](p, std::align_val_t(64)); });
  t.data_ = buf.get();
  t.owner_ = std::shared_ptr<const void>(buf, buf.get());
  t.writable_ = true;
  return t;
}

Tensor Tensor::FromF32(Shape shape, std::span<const float> values) {
  Tensor t = Zeros(DType::kF32, std::move(shape));
  QF_CHECK(static_cast<int64_t>(values.size()) == t.numel_, "FromF32: {} values for shape {}", values.size(),
           ShapeToString(t.shape_));
  if (!values.empty()) std::memcpy(t.mutable_raw(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::Scalar(float value) { return FromF32({}, std::span<const float>(&value, 1)); }

Tensor Tensor::Borrow(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape);
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.owner_ = std::move(owner);
  t.writable_ = false;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  if (i < 0) i += r;
  QF_ASSERT(i >= 0 && i < r, "dim {} out of range for rank {}", i, r);
  return shape_[static_cast<size_t>(i)];
}

void* Tensor::mutable_raw() {
  QF_ASSERT(writable_, "tensor is read-only (borrowed storage)");
  return const_cast<void*>(data_);
}

Tensor Tensor::Reshape(Shape shape) const {
  QF_CHECK(NumElements(shape) == numel_, "cannot reshape {} to {}", ShapeToString(shape_), ShapeToString(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Zeros(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.mutable_raw(), data_, nbytes());
  return t;
}

Tensor Tensor::Slice0(int64_t begin, int64_t end) const {
  QF_ASSERT(rank() >= 1 && begin >= 0 && begin <= end && end <= shape_[0]);
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.numel_ = NumElements(t.shape_);
  const int64_t row = shape_[0] == 0 ? 0 : numel_ / shape_[0];
  t.data_ = static_cast<const std::byte*>(data_) + static_cast<size_t>(begin * row) * DTypeSize(dtype_);
  return t;
}

// Conversions of more elements than this use OpenMP threads.
constexpr int64_t kParallelConvert = int64_t{1} << 20;

void ConvertToF32(DType dtype, const void* src, float* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    // Large weights (a layer of an 8B model is 10^8 values) convert on every core: the loop is exact and
    // elementwise, so the thread count changes nothing but the time.
    case DType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp parallel for simd if (n > kParallelConvert)
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(s[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp parallel for if (n > kParallelConvert)
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(s[i]);
      return;
    }
    case DType::kF8E4M3: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = DecodeE4M3(s[i]);
      return;
    }
    case DType::kF8E5M2: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = DecodeE5M2(s[i]);
      return;
    }
    case DType::kF64: {
      const double* s = static_cast<const double*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    default:
      QF_FAIL("cannot convert a {} tensor to float32", DTypeName(dtype));
  }
}

Tensor Tensor::ToF32() const {
  if (dtype_ == DType::kF32) return *this;
  Tensor t = Zeros(DType::kF32, shape_);
  ConvertToF32(dtype_, data_, t.mutable_data<float>(), numel_);
  return t;
}

void RoundToDType(DType dtype, std::span<float> values) {
  if (dtype == DType::kBF16) {
    for (float& v : values) v = Bf16ToF32(F32ToBf16Rne(v));
  } else if (dtype == DType::kF16) {
    for (float& v : values) v = F16ToF32(F32ToF16Rne(v));
  }
}

Tensor Tensor::FromF32To(DType dtype) const {
  QF_ASSERT(dtype_ == DType::kF32);
  if (dtype == DType::kF32) return *this;
  Tensor t = Zeros(dtype, shape_);
  const float* s = data<float>();
  switch (dtype) {
    case DType::kBF16: {
      uint16_t* d = t.mutable_data<uint16_t>();
      for (int64_t i = 0; i < numel_; ++i) d[i] = F32ToBf16Rne(s[i]);
      break;
    }
    case DType::kF16: {
      uint16_t* d = t.mutable_data<uint16_t>();
      for (int64_t i = 0; i < numel_; ++i) d[i] = F32ToF16Rne(s[i]);
      break;
    }
    default:
      QF_FAIL("cannot convert float32 to {}", DTypeName(dtype));
  }
  return t;
}

}  // namespace qforge
