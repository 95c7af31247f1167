// compare: bit-identical weights, activation scales within a tolerance, missing tensors.
#include "qforge/export/compare.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "qforge/io/safetensors.h"

namespace qforge::exporter {
namespace {

namespace fs = std::filesystem;

struct Dir {
  fs::path path;
  explicit Dir(const char* name)
      : path(fs::temp_directory_path() / (std::string("qf_compare_") + name + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void Write(const fs::path& dir, float input_scale, uint8_t weight_byte, bool with_k_scale = true) {
  Tensor w = Tensor::Zeros(DType::kU8, {4, 8});
  w.mutable_data<uint8_t>()[5] = weight_byte;
  std::vector<std::pair<std::string, Tensor>> t = {
      {"model.layers.0.mlp.down_proj.weight", w},
      {"model.layers.0.mlp.down_proj.weight_scale_2", Tensor::Scalar(0.5f)},
      {"model.layers.0.mlp.down_proj.input_scale", Tensor::Scalar(input_scale)},
  };
  if (with_k_scale) t.emplace_back("model.layers.0.self_attn.k_proj.k_scale", Tensor::Scalar(0.25f));
  WriteSafetensors(dir / "model.safetensors", t);
}

TEST(Compare, IdenticalExportsAndScaleTolerance) {
  Dir a("a"), b("b");
  Write(a.path, 1.0f, 7);
  Write(b.path, 1.0f, 7);
  CompareReport r = CompareCheckpoints(a.path, b.path, {});
  EXPECT_TRUE(r.ok()) << r.ToText();
  EXPECT_EQ(r.tensors, 4);
  EXPECT_EQ(r.identical, 4);
  EXPECT_EQ(r.activation_scales, 2);

  Write(b.path, 1.005f, 7);  // 0.5% apart
  CompareOptions loose;
  loose.scale_rtol = 0.01;
  r = CompareCheckpoints(a.path, b.path, loose);
  EXPECT_TRUE(r.ok()) << r.ToText();
  EXPECT_NEAR(r.max_scale_rel_diff, 0.005 / 1.005, 1e-6);
  EXPECT_EQ(r.max_scale_tensor, "model.layers.0.mlp.down_proj.input_scale");
  r = CompareCheckpoints(a.path, b.path, {});
  ASSERT_EQ(r.problems.size(), 1u) << r.ToText();
  EXPECT_NE(r.problems[0].find("input_scale"), std::string::npos);
}

TEST(Compare, WeightBytesMustBeIdenticalAndTensorsPresent) {
  Dir a("c"), b("d");
  Write(a.path, 1.0f, 7);
  Write(b.path, 1.0f, 8, /*with_k_scale=*/false);
  CompareOptions loose;
  loose.scale_rtol = 1.0;  // a tolerance never excuses weight bytes
  const CompareReport r = CompareCheckpoints(a.path, b.path, loose);
  EXPECT_FALSE(r.ok());
  std::string all;
  for (const auto& p : r.problems) all += p + "\n";
  EXPECT_NE(all.find("'model.layers.0.self_attn.k_proj.k_scale' is in"), std::string::npos) << all;
  EXPECT_NE(all.find("down_proj.weight' (U8 [4, 8]): 1 of 32 bytes differ"), std::string::npos) << all;
}

}  // namespace
}  // namespace qforge::exporter
