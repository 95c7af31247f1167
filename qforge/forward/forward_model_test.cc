// Forward-pass tests: tiny/ checkpoints against transformers' logits, the real models' reference logits,
// the MoE-upcycled model against its dense original, hooks, layer streaming and weight replacement.
#include "qforge/forward/forward_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qforge/io/safetensors.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/host_device_backend.h"

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

// Embedding rows gathered on the host and uploaded equal a lookup in the uploaded table, bit for bit, and
// the table is then never uploaded.
TEST(ForwardModel, HostGatheredEmbeddingRowsEqualTheTableLookup) {
  testing_support::HostDeviceBackend dev;
  auto model = Model::Load(kModels / "llama-dense-26M");
  ForwardModel fm(*model, dev);
  std::vector<int32_t> ids(3 * 7);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 977 + 3) % 8000);
  const Tensor want = DownloadHidden(dev, fm.Embed(ids, 3, 7));
  fm.ReleaseEmbedding();
  fm.set_embed_rows_from_host(true);
  const int64_t before = dev.stats().h2d_bytes;
  const Tensor got = DownloadHidden(dev, fm.Embed(ids, 3, 7));
  ASSERT_EQ(got.nbytes(), want.nbytes());
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), got.nbytes()), 0);
  // Only the rows (and the row indices) went up, not the table.
  EXPECT_LT(dev.stats().h2d_bytes - before, static_cast<int64_t>(model->embed_table().nbytes()) / 10);
}

// A layer run on parts of a batch (groups of whole sequences for attention, row ranges for a dense MLP; a
// MoE block takes the whole batch) computes every row as the whole batch does: bit-identical hidden states
// on a device backend (here one whose ops are the CPU's), dense and MoE, with parts that do not divide the
// batch.
TEST(ForwardModel, ChunkedLayersEqualWholeBatches) {
  for (const char* name : {"llama-dense-26M", "qwen2moe-25M"}) {
    testing_support::HostDeviceBackend dev;
    auto model = Model::Load(kModels / name);
    ForwardModel fm(*model, dev);
    const int64_t batch = 5, seq = 12;
    std::vector<int32_t> ids(batch * seq);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 131 + 7) % 8000);
    std::vector<Tensor> want;
    // (attention rows, MLP rows): MLP row ranges inside an attention group, and ones that cut sequences.
    for (auto [chunk, mlp] : {std::pair<int64_t, int64_t>{0, 0}, {12, 0}, {30, 0}, {1, 0}, {36, 12}, {0, 7},
                              {24, 5}}) {
      SCOPED_TRACE(::testing::Message() << name << " chunk rows " << chunk << " mlp rows " << mlp);
      fm.set_max_chunk_rows(chunk);
      fm.set_max_mlp_rows(mlp);
      HiddenStates h = fm.Embed(ids, batch, seq);
      for (int l = 0; l < fm.num_layers(); ++l) {
        fm.RunLayer(l, h);
        const Tensor got = DownloadHidden(dev, h);
        if (chunk == 0 && mlp == 0) {
          want.push_back(got);
        } else {
          ASSERT_EQ(std::memcmp(got.raw(), want[static_cast<size_t>(l)].raw(), got.nbytes()), 0) << "layer " << l;
        }
      }
    }
  }
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

QuantSpec Fp8Spec() {
  QuantSpec s;
  s.num_bits = NumBits::Float(4, 3);
  return s;
}

// WeightAmax (the device path of weight calibration) against numerics ComputeAmax on the host weight, with
// small row chunks so the chunked per-tensor path is exercised on the CPU too.
TEST(ForwardModel, WeightAmaxEqualsComputeAmax) {
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M");
  Model& m = fm->model();
  QuantSpec nvfp4;
  nvfp4.num_bits = NumBits::Float(2, 1);
  BlockSpec b;
  b.sizes = {{-1, 16}};
  b.dynamic = true;
  b.scale_bits = NumBits::Float(4, 3);
  nvfp4.block = b;
  QuantSpec per_channel = Fp8Spec();
  per_channel.axis = std::vector<int>{0};
  const int q = m.FindModule("model.layers.1.self_attn.q_proj");
  const Tensor w = m.LinearWeight(q);
  for (const QuantSpec& spec : {Fp8Spec(), nvfp4, per_channel}) {
    const std::vector<float> want = ComputeAmax(spec, w.span<float>(), w.shape(), "w");
    for (int64_t chunk : {int64_t{7}, int64_t{4096}}) {
      auto got = fm->WeightAmax(q, spec, "w", chunk);
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(*got, want) << "chunk " << chunk;
    }
  }
  // A non-finite weight: the chunked path declines (the host path names the element's index in the whole
  // weight); unchunked it throws as ComputeAmax does.
  Tensor bad = w.Clone();
  bad.mutable_data<float>()[w.numel() - 3] = std::numeric_limits<float>::infinity();
  m.SetLinearWeight(q, bad);
  EXPECT_FALSE(fm->WeightAmax(q, Fp8Spec(), "w", 7).has_value());
  EXPECT_THROW(fm->WeightAmax(q, Fp8Spec(), "w", w.dim(0)), Error);
  m.RestoreLinearWeight(q);
}

TEST(ForwardModel, ReleasedEmbeddingAndHeadComeBack) {
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M");
  std::vector<int32_t> ids(2 * 16);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 131 + 7) % 8000);
  const Tensor a = fm->Forward(ids, 2, 16);
  fm->ReleaseEmbedding();
  fm->ReleaseHead();
  const Tensor b = fm->Forward(ids, 2, 16);
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
}

}  // namespace
}  // namespace qforge
