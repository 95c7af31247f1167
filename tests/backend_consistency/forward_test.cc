// Whole forward passes on a device backend against the CPU: a synthetic Llama (and a real one when
// QF_CONSISTENCY_MODEL names a model directory), plain and with fake-quant hooks, every hook call's
// FakeQuant compared bit for bit with the scalar reference on the very input the device saw.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "qforge/calib/synthetic_model.h"
#include "qforge/forward/fake_quant_hooks.h"
#include "tests/backend_consistency/consistency_util.h"
#include "tests/support/checked_fake_quant.h"

namespace qforge::consistency {
namespace {

namespace fs = std::filesystem;

fs::path SyntheticModelDir() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("qf_consistency_llama_" + std::to_string(::getpid()));
    SyntheticLlamaSpec s;
    s.hidden = 256;
    s.layers = 2;
    s.intermediate = 512;
    s.heads = 4;  // head_dim 64
    s.kv_heads = 2;
    s.vocab = 1000;
    WriteSyntheticLlama(d, s, ReplaceMode::kAlways);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("qf_consistency_llama_" + std::to_string(::getpid())), ec);
    });
    return d;
  }();
  return dir;
}

fs::path ModelDir() {
  const char* env = std::getenv("QF_CONSISTENCY_MODEL");
  return env != nullptr && *env != '\0' ? fs::path(env) : SyntheticModelDir();
}

std::vector<int32_t> Ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids = RandomInts(static_cast<size_t>(n), 7, 0, static_cast<int32_t>(vocab - 1));
  return ids;
}

TEST_P(DeviceBackendTest, ForwardMatchesTheCpu) {
  auto model = Model::Load(ModelDir());
  ForwardModel on_cpu(*model, cpu());
  ForwardModel on_dev(*model, dev());
  const int64_t B = 3, S = 40;
  const auto ids = Ids(B * S, model->config().vocab_size);
  const Tensor want = on_cpu.Forward(ids, B, S);
  const Tensor got = on_dev.Forward(ids, B, S);
  Tolerance tol;
  tol.nmse = bf16() ? 1e-3 : 1e-10;
  tol.abs = bf16() ? 1.0 : 1e-3;
  EXPECT_TRUE(Near("logits", got.span<float>(), want.span<float>(), tol));
  // One sequence alone gives its rows of the batch (other GEMM shapes: not bit for bit).
  const std::vector<int32_t> first(ids.begin(), ids.begin() + S);
  const Tensor one = on_dev.Forward(first, 1, S);
  Tolerance same;
  same.nmse = bf16() ? 1e-4 : 1e-12;
  same.abs = bf16() ? 0.5 : 1e-4;
  EXPECT_TRUE(Near("batch of one", one.span<float>(), got.span<float>().subspan(0, one.numel()), same));
}

TEST_P(DeviceBackendTest, FakeQuantHooksAreBitExactInAForward) {
  auto model = Model::Load(ModelDir());
  ForwardModel on_cpu(*model, cpu());
  ForwardModel on_dev(*model, dev());
  for (int64_t B : {1, 4}) {
    const int64_t S = 48;
    const auto ids = Ids(B * S, model->config().vocab_size);
    // NVFP4 inputs with a global amax below the data's max (saturating blocks), FP8 KV cache.
    const ActivationQuantTable table = testing_support::Nvfp4Table(on_cpu, ids, B, S, 0.75f);
    testing_support::CheckedFakeQuant checked(table);
    const Tensor got = on_dev.Forward(ids, B, S, &checked);
    EXPECT_GT(checked.calls, 0);
    for (const auto& m : checked.mismatches) ADD_FAILURE() << "batch " << B << ": " << m;
    // The logits only agree loosely: a W4A4 forward is chaotic in its inputs. A GEMM's last bit (another
    // summation order than OpenBLAS) flips a few E2M1 roundings, each flip moves the next layer's inputs
    // by a quantization step, which flips more: on llama-dense-26M the f32 logits of the two backends end
    // up with an nmse of ~5e-3 although every hook above was bit-exact. Gross errors are still caught.
    FakeQuantHooks ref(table);
    const Tensor want = on_cpu.Forward(ids, B, S, &ref);
    Tolerance tol;
    tol.nmse = 0.05;
    tol.abs = 8.0;
    EXPECT_TRUE(Near("fake-quantized logits, batch " + std::to_string(B), got.span<float>(), want.span<float>(), tol));
  }
}

}  // namespace
}  // namespace qforge::consistency
