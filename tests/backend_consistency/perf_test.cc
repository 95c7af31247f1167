// A timing profile of one Llama-3-8B decoder layer (hidden 4096, 32 heads, 8 kv heads, head_dim 128,
// intermediate 14336) over 4 sequences of 512 tokens on each device backend: per op kind, so that one
// sees the forward is dominated by its GEMMs. Prints only; runs when QF_BACKEND_PERF=1 (else skips).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/backend_consistency/consistency_util.h"

namespace qforge::consistency {
namespace {

// Fast host fill for large weights (values only need to be non-degenerate for timing).
std::vector<float> FastRandom(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int32_t>(s >> 8) - (1 << 23)) * (1.f / (1 << 23)) * 0.05f;
  }
  return v;
}

TEST_P(DeviceBackendTest, LlamaLayerProfile) {
  if (std::getenv("QF_BACKEND_PERF") == nullptr) GTEST_SKIP() << "set QF_BACKEND_PERF=1 to print the profile";
  Backend& be = dev();
  constexpr int64_t kHidden = 4096, kHeads = 32, kKvHeads = 8, kHeadDim = 128, kInter = 14336;
  constexpr int64_t kBatch = 4, kSeq = 512, kTokens = kBatch * kSeq, kKv = kKvHeads * kHeadDim;

  const auto wsrc = FastRandom(static_cast<size_t>(kInter * kHidden), 1);
  auto weight = [&](int64_t n, int64_t k) { return be.UploadWeight(wsrc.data(), n * k, nullptr); };
  Buffer wq = weight(kHidden, kHidden), wk = weight(kKv, kHidden), wv = weight(kKv, kHidden);
  Buffer wo = weight(kHidden, kHidden), wg = weight(kInter, kHidden), wu = weight(kInter, kHidden);
  Buffer wd = weight(kHidden, kInter);
  const DType wt = be.weight_dtype();
  Buffer norm = ToDevice(be, Input(kHidden, 2, 0.5f, 1.5f));
  Buffer cos = ToDevice(be, Input(kSeq * kHeadDim / 2, 3)), sin = ToDevice(be, Input(kSeq * kHeadDim / 2, 4));
  Buffer x = ToDevice(be, Input(kTokens * kHidden, 5));
  auto act = [&](int64_t n) { return be.Alloc(n * 4); };
  Buffer h = act(kTokens * kHidden), qt = act(kTokens * kHidden), kt = act(kTokens * kKv), vt = act(kTokens * kKv);
  Buffer qh = act(kTokens * kHidden), kh = act(kTokens * kKv), vh = act(kTokens * kKv), ao = act(kTokens * kHidden);
  Buffer o = act(kTokens * kHidden), g = act(kTokens * kInter), u = act(kTokens * kInter);
  Buffer probs = act(kBatch * kHeads * kSeq * kSeq);
  const float scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  auto F = [](const Buffer& b) { return b.as<float>(); };

  std::map<std::string, double> seconds;
  auto timed = [&](const std::string& kind, const std::function<void()>& op) {
    be.Synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    op();
    be.Synchronize();
    seconds[kind] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto layer = [&] {
    timed("rmsnorm", [&] { be.RmsNorm(F(x), F(norm), F(h), kTokens, kHidden, 1e-5f); });
    timed("gemm", [&] {
      be.Gemm(F(h), WeightRef(wq.data(), wt), nullptr, F(qt), kTokens, kHidden, kHidden, false);
      be.Gemm(F(h), WeightRef(wk.data(), wt), nullptr, F(kt), kTokens, kKv, kHidden, false);
      be.Gemm(F(h), WeightRef(wv.data(), wt), nullptr, F(vt), kTokens, kKv, kHidden, false);
    });
    timed("swap axes", [&] {
      be.SwapMiddleAxes(F(qt), F(qh), kBatch, kSeq, kHeads, kHeadDim);
      be.SwapMiddleAxes(F(kt), F(kh), kBatch, kSeq, kKvHeads, kHeadDim);
      be.SwapMiddleAxes(F(vt), F(vh), kBatch, kSeq, kKvHeads, kHeadDim);
    });
    timed("rope", [&] {
      be.Rope(F(qh), kBatch, kHeads, kSeq, kHeadDim, F(cos), F(sin));
      be.Rope(F(kh), kBatch, kKvHeads, kSeq, kHeadDim, F(cos), F(sin));
    });
    timed("attention", [&] {
      be.CausalAttention(F(qh), F(kh), F(vh), F(ao), kBatch, kHeads, kKvHeads, kSeq, kHeadDim, scale);
    });
    timed("gemm", [&] { be.Gemm(F(ao), WeightRef(wo.data(), wt), nullptr, F(o), kTokens, kHidden, kHidden, false); });
    timed("add", [&] { be.Add(F(x), F(o), kTokens * kHidden); });
    timed("rmsnorm", [&] { be.RmsNorm(F(x), F(norm), F(h), kTokens, kHidden, 1e-5f); });
    timed("gemm", [&] {
      be.Gemm(F(h), WeightRef(wg.data(), wt), nullptr, F(g), kTokens, kInter, kHidden, false);
      be.Gemm(F(h), WeightRef(wu.data(), wt), nullptr, F(u), kTokens, kInter, kHidden, false);
    });
    timed("silu_mul", [&] { be.SiluMul(F(g), F(u), F(g), kTokens * kInter); });
    timed("gemm", [&] { be.Gemm(F(g), WeightRef(wd.data(), wt), nullptr, F(o), kTokens, kHidden, kInter, false); });
    timed("add", [&] { be.Add(F(x), F(o), kTokens * kHidden); });
  };
  layer();  // warm-up (cuBLAS heuristics, kernel loading)
  seconds.clear();
  constexpr int kReps = 5;
  for (int r = 0; r < kReps; ++r) layer();
  double total = 0;
  for (const auto& [kind, s] : seconds) total += s;
  const double gemm_flops = 2.0 * kTokens * (2 * kHidden * kHidden + 2 * kKv * kHidden + 3 * kHidden * kInter);
  const double attn_flops = 4.0 * kBatch * kHeads * kHeadDim * (kSeq * (kSeq + 1) / 2.0);
  std::printf("[ profile  ] %s %s: Llama-3-8B layer, %lld x %lld tokens: %.3f ms per layer\n", be.Describe().c_str(),
              std::string(ComputeDTypeName(be.compute_dtype())).c_str(), static_cast<long long>(kBatch),
              static_cast<long long>(kSeq), 1e3 * total / kReps);
  for (const auto& [kind, s] : seconds) {
    std::printf("[ profile  ]   %-10s %8.3f ms  %5.1f%%", kind.c_str(), 1e3 * s / kReps, 100 * s / total);
    if (kind == "gemm") std::printf("  %.1f TFLOP/s", gemm_flops * kReps / s / 1e12);
    if (kind == "attention") std::printf("  %.1f TFLOP/s (causal flops)", attn_flops * kReps / s / 1e12);
    std::printf("\n");
  }
  // The two-step attention (materialized probabilities) for comparison.
  seconds.clear();
  for (int r = 0; r < kReps; ++r) {
    timed("probs+apply", [&] {
      be.CausalAttentionProbs(F(qh), F(kh), F(probs), kBatch, kHeads, kKvHeads, kSeq, kHeadDim, scale);
      be.AttentionApply(F(probs), F(vh), F(ao), kBatch, kHeads, kKvHeads, kSeq, kHeadDim);
    });
  }
  std::printf("[ profile  ]   two-step attention (CausalAttentionProbs + AttentionApply): %.3f ms\n",
              1e3 * seconds["probs+apply"] / kReps);
  EXPECT_GT(seconds["probs+apply"], 0.0);
}

}  // namespace
}  // namespace qforge::consistency
