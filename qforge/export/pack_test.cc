// pack.h: tensor/file-level packing for every format, the unpack inverse, and errors naming the tensor.
#include "qforge/export/pack.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "qforge/io/safetensors.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

std::filesystem::path TempDir() {
  auto d = std::filesystem::temp_directory_path() / ("qforge_pack_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

Tensor RandomF32(Shape shape, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(NumElements(shape)));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (float& x : v) x = nd(rng);
  return Tensor::FromF32(shape, v);
}

TEST(Pack, EveryFormatRoundTripsThroughSafetensors) {
  const auto dir = TempDir();
  const Tensor a = RandomF32({256, 256}, 1);
  const Tensor b = RandomF32({128, 256}, 2).FromF32To(DType::kBF16);  // a bf16 input, "P" without .weight
  WriteSafetensors(dir / "in.safetensors", {{"model.layers.0.mlp.up_proj.weight", a}, {"head", b}});
  for (const PackFormatTraits& t : kPackFormatTable) {
    const auto packed_path = dir / ("p_" + std::string(t.name) + ".safetensors");
    const auto back_path = dir / ("b_" + std::string(t.name) + ".safetensors");
    EXPECT_EQ(PackSafetensorsFile(t.format, dir / "in.safetensors", packed_path).packed, 2);
    auto f = SafetensorsFile::Open(packed_path);
    std::vector<std::string> want = {"head.weight", "head.weight_scale", "model.layers.0.mlp.up_proj.weight",
                                     "model.layers.0.mlp.up_proj.weight_scale"};
    if (t.has_scale_2) want = {"head.weight", "head.weight_scale", "head.weight_scale_2",
                               "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight_scale",
                               "model.layers.0.mlp.up_proj.weight_scale_2"};
    std::vector<std::string> got = f->names();
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << t.name;
    EXPECT_EQ(f->Info("head.weight").dtype, StoredDTypeOf(t.weight_type)) << t.name;
    EXPECT_EQ(f->Info("head.weight_scale").dtype, StoredDTypeOf(t.scale_type)) << t.name;
    // unpack == UnpackWeight(PackWeight(...)) on the same input, bit for bit.
    EXPECT_EQ(UnpackSafetensorsFile(packed_path, back_path).packed, 2);
    auto back = SafetensorsFile::Open(back_path);
    const Tensor got_a = back->Get("model.layers.0.mlp.up_proj.weight");
    EXPECT_EQ(got_a.dtype(), DType::kF32);
    EXPECT_EQ(got_a.shape(), a.shape());
    const std::vector<float> want_a = UnpackWeight(PackWeight(t.format, a.span<float>(), a.shape()));
    EXPECT_EQ(0, std::memcmp(got_a.raw(), want_a.data(), want_a.size() * 4)) << t.name;
    const Tensor got_b = back->Get("head.weight");
    EXPECT_EQ(got_b.shape(), b.shape());
    const Tensor b32 = b.ToF32();
    const std::vector<float> want_b = UnpackWeight(PackWeight(t.format, b32.span<float>(), b32.shape()));
    EXPECT_EQ(0, std::memcmp(got_b.raw(), want_b.data(), want_b.size() * 4)) << t.name;
  }
  std::filesystem::remove_all(dir);
}

TEST(Pack, ErrorsNameTheTensor) {
  const auto dir = TempDir();
  auto expect_error = [&](PackFormat f, const std::vector<std::pair<std::string, Tensor>>& ts, const char* needle) {
    WriteSafetensors(dir / "bad.safetensors", ts);
    try {
      PackSafetensorsFile(f, dir / "bad.safetensors", dir / "out.safetensors");
      ADD_FAILURE() << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(PackFormat::kFp8, {{"ids", Tensor::Zeros(DType::kI32, {4, 4})}}, "tensor 'ids' has dtype I32");
  expect_error(PackFormat::kNvfp4, {{"x.weight", RandomF32({4, 24}, 3)}}, "tensor 'x.weight'");
  expect_error(PackFormat::kInt8, {{"bias", RandomF32({16}, 4)}}, "tensor 'bias'");
  // Two inputs that map to the same packed name.
  expect_error(PackFormat::kFp8, {{"a", RandomF32({4, 4}, 5)}, {"a.weight", RandomF32({4, 4}, 6)}}, "twice");
  // Unpack of something that is not a known packing names both tensors' dtypes.
  WriteSafetensors(dir / "odd.safetensors",
                   {{"m.weight", Tensor::Zeros(DType::kI32, {2, 2})}, {"m.weight_scale", Tensor::Scalar(1.0f)}});
  try {
    UnpackSafetensorsFile(dir / "odd.safetensors", dir / "o.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("I32"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(Pack, UnpackPassesOtherTensorsThroughAsF32) {
  const auto dir = TempDir();
  const Tensor w = RandomF32({32, 64}, 7);
  auto packed = PackWeightTensor(PackFormat::kMxfp4, "l.weight", w);
  packed.emplace_back("norm.weight", RandomF32({64}, 8).FromF32To(DType::kBF16));
  packed.emplace_back("l.input_scale", Tensor::Scalar(0.5f));
  WriteSafetensors(dir / "p.safetensors", packed);
  const PackFileSummary s = UnpackSafetensorsFile(dir / "p.safetensors", dir / "u.safetensors");
  EXPECT_EQ(s.packed, 1);
  EXPECT_EQ(s.passed_through, 2);
  auto u = SafetensorsFile::Open(dir / "u.safetensors");
  EXPECT_EQ(u->Info("norm.weight").dtype, DType::kF32);
  EXPECT_FALSE(u->Contains("l.weight_scale"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qforge
