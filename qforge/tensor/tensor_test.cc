// Tests for tensor/: shapes, views, and exact dtype conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "qforge/numerics/half.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

TEST(DType, NamesRoundTrip) {
  for (const auto& t : kDTypeTable) {
    EXPECT_EQ(DTypeFromSafetensorsName(t.safetensors_name), t.dtype);
    EXPECT_EQ(DTypeFromTorchName(t.torch_name), t.dtype);
    EXPECT_EQ(Traits(t.dtype).dtype, t.dtype) << "table order must match the enum";
  }
  EXPECT_EQ(DTypeFromTorchName("torch.bfloat16"), DType::kBF16);
  EXPECT_FALSE(DTypeFromSafetensorsName("F4").has_value());
}

TEST(Tensor, ZerosSliceReshape) {
  Tensor t = Tensor::Zeros(DType::kF32, {3, 4});
  EXPECT_EQ(t.numel(), 12);
  for (int i = 0; i < 12; ++i) t.mutable_data<float>()[i] = static_cast<float>(i);
  Tensor s = t.Slice0(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(s.data<float>()[0], 4.0f);
  EXPECT_EQ(t.Reshape({4, 3}).dim(-1), 3);
  EXPECT_THROW(t.Reshape({5}), Error);
  EXPECT_EQ(Tensor::Scalar(2.5f).rank(), 0);
  EXPECT_EQ(Tensor::Scalar(2.5f).numel(), 1);
}

TEST(Tensor, Bf16AndF16ConversionsAreExactForEveryCode) {
  // Every 16-bit code converts to f32 and back to the same code (NaNs stay NaN).
  Tensor b = Tensor::Zeros(DType::kBF16, {65536});
  Tensor h = Tensor::Zeros(DType::kF16, {65536});
  for (uint32_t i = 0; i < 65536; ++i) {
    b.mutable_data<uint16_t>()[i] = static_cast<uint16_t>(i);
    h.mutable_data<uint16_t>()[i] = static_cast<uint16_t>(i);
  }
  Tensor bf = b.ToF32(), hf = h.ToF32();
  Tensor b2 = bf.FromF32To(DType::kBF16), h2 = hf.FromF32To(DType::kF16);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float fb = bf.data<float>()[i], fh = hf.data<float>()[i];
    if (std::isnan(fb)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(b2.data<uint16_t>()[i])));
    } else {
      ASSERT_EQ(b2.data<uint16_t>()[i], i);
    }
    if (std::isnan(fh)) {
      EXPECT_TRUE(std::isnan(F16ToF32(h2.data<uint16_t>()[i])));
    } else {
      ASSERT_EQ(h2.data<uint16_t>()[i], i);
    }
  }
}

TEST(Tensor, RoundingIsNearestEven) {
  // bf16 has 8 significant bits: 1 + 2^-8 is a tie between 1 and 1+2^-7 -> even (1).
  EXPECT_EQ(F32ToBf16Rne(1.0f + 0x1p-8f), 0x3F80);
  EXPECT_EQ(F32ToBf16Rne(1.0f + 0x1p-7f + 0x1p-8f), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(F32ToBf16Rne(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);  // above tie
  EXPECT_EQ(F32ToF16Rne(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16Rne(65519.99f), 0x7BFF);
  EXPECT_EQ(F32ToF16Rne(65520.0f), 0x7C00);  // tie at the top rounds to inf
  EXPECT_EQ(F32ToF16Rne(0x1p-25f), 0x0000);  // tie between 0 and min subnormal -> 0
  EXPECT_EQ(F32ToF16Rne(0x1.8p-25f), 0x0001);
  EXPECT_EQ(F32ToF16Rne(-0x1p-24f), 0x8001);
  EXPECT_EQ(F32ToF16Rne(0x1.8p-24f), 0x0002);  // 1.5 ulp -> tie -> even (2)
  EXPECT_EQ(F32ToBf16Rne(3.4028235e38f), 0x7F80);  // rounds up to inf
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

TEST(Tensor, Fp8TensorsConvertToF32) {
  Tensor t = Tensor::Zeros(DType::kF8E4M3, {4});
  uint8_t* p = t.mutable_data<uint8_t>();
  p[0] = 0x7E;  // 448
  p[1] = 0xFE;  // -448
  p[2] = 0x01;  // 2^-9, smallest subnormal
  p[3] = 0x7F;  // NaN
  Tensor f = t.ToF32();
  EXPECT_EQ(f.data<float>()[0], 448.0f);
  EXPECT_EQ(f.data<float>()[1], -448.0f);
  EXPECT_EQ(f.data<float>()[2], 0x1p-9f);
  EXPECT_TRUE(std::isnan(f.data<float>()[3]));
  Tensor e = Tensor::Zeros(DType::kF8E5M2, {1});
  e.mutable_data<uint8_t>()[0] = 0x7B;  // 57344, E5M2 max
  EXPECT_EQ(e.ToF32().data<float>()[0], 57344.0f);
}

}  // namespace
}  // namespace qforge
