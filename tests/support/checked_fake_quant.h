// Test support shared by the forward tests of every backend: an NVFP4-input / FP8-KV activation table
// calibrated on a forward, and FakeQuantHooks that check every call against the scalar reference on the
// very input the backend saw (bit for bit; the reference rounded to bf16 when the backend computes in bf16).
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "qforge/forward/fake_quant_hooks.h"
#include "qforge/numerics/half.h"
#include "qforge/numerics/qdq.h"

namespace qforge::testing_support {

// NVFP4 inputs of every Linear and FP8 K/V caches, with amax = `amax_factor` x the max over a forward of
// `ids` (a factor below 1 saturates blocks, as unseen text does). `fm`'s backend collects the maxima.
inline ActivationQuantTable Nvfp4Table(ForwardModel& fm, std::span<const int32_t> ids, int64_t batch, int64_t seq,
                                       float amax_factor) {
  struct AmaxHooks : ForwardHooks {
    std::map<std::pair<int, int>, float> amax;  // (module, -1 input / BmmInput) -> max|x|
    bool ModifiesActivations() const override { return false; }
    void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
      Note({module, -1}, be.Amax(x, rows * cols));
    }
    void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t b, int64_t h, int64_t s,
                        int64_t d) override {
      Note({module, static_cast<int>(which)}, be.Amax(x, b * h * s * d));
    }
    void Note(std::pair<int, int> k, float v) { amax[k] = std::max(amax[k], v); }
  } rec;
  (void)fm.Forward(ids, batch, seq, &rec);
  const Model& m = fm.model();
  ActivationQuantTable t(m.modules().size());
  for (const auto& [key, v] : rec.amax) {
    ActivationQuant a;
    a.name = m.modules()[static_cast<size_t>(key.first)].name;
    if (key.second < 0) {
      if (a.name == "lm_head") continue;
      a.spec.num_bits = NumBits::Float(2, 1);
      BlockSpec b;
      b.sizes = {{-1, 16}};
      b.dynamic = true;
      b.scale_bits = NumBits::Float(4, 3);
      a.spec.block = b;
      a.amax = {v * amax_factor};
      t.SetInput(key.first, a);
    } else if (key.second != static_cast<int>(BmmInput::kQ)) {
      a.spec.num_bits = NumBits::Float(4, 3);
      a.amax = {v * amax_factor};
      t.SetBmm(key.first, static_cast<BmmInput>(key.second), a);
    }
  }
  return t;
}

// FakeQuantHooks, each call checked against numerics FakeQuant (no kernels: the scalar reference).
class CheckedFakeQuant : public ForwardHooks {
 public:
  explicit CheckedFakeQuant(const ActivationQuantTable& t) : inner_(t), table_(t) {}
  bool ModifiesActivations() const override { return true; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
    Check(be, table_.input(module), x, {rows, cols}, [&] { inner_.OnLinearInput(be, module, x, rows, cols); });
  }
  void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t b, int64_t h, int64_t s,
                      int64_t d) override {
    Check(be, table_.bmm(module, which), x, {b, h, s, d},
          [&] { inner_.OnAttentionBmm(be, module, which, x, b, h, s, d); });
  }
  int calls = 0;
  std::vector<std::string> mismatches;  // "<quantizer> <shape> [i]: in .. got .. want .." (first per call)

 private:
  template <typename F>
  void Check(Backend& be, const ActivationQuant* q, float* x, std::vector<int64_t> shape, F&& apply) {
    if (q == nullptr) return;
    const int64_t n = NumElements(shape);
    const int64_t bytes = n * static_cast<int64_t>(sizeof(float));
    std::vector<float> in(static_cast<size_t>(n)), got(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    be.Download(in.data(), x, bytes);
    apply();
    be.Download(got.data(), x, bytes);
    FakeQuant(q->spec, in, shape, q->amax, want, q->global_amax, q->name);
    if (be.compute_dtype() == ComputeDType::kBF16) {
      for (float& v : want) v = Bf16ToF32(F32ToBf16Rne(v));
    }
    ++calls;
    for (size_t i = 0; i < want.size(); ++i) {
      if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
        mismatches.push_back(q->name + " " + ShapeToString(shape) + " [" + std::to_string(i) + "]: in " +
                             std::to_string(in[i]) + " got " + std::to_string(got[i]) + " want " +
                             std::to_string(want[i]));
        break;
      }
    }
  }
  FakeQuantHooks inner_;
  const ActivationQuantTable& table_;
};

}  // namespace qforge::testing_support
