// FakeQuantHooks on the CPU backend (SIMD kernels) equal the scalar reference at every hook of a real
// model's forward, on the very input each hook saw: NVFP4 inputs with a global amax below the data's max
// (saturating blocks, as on unseen text) and an FP8 KV cache.
#include "qforge/forward/fake_quant_hooks.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

const std::filesystem::path kModels = std::filesystem::path(QF_SHARED_DIR) / "data" / "models";

ActivationQuantTable Nvfp4Table(ForwardModel& fm, std::span<const int32_t> ids, int64_t batch, int64_t seq,
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

// FakeQuantHooks, checked against the scalar reference at each call.
class CheckedFakeQuant : public ForwardHooks {
 public:
  explicit CheckedFakeQuant(const ActivationQuantTable& t) : inner_(t), table_(t) {}
  bool ModifiesActivations() const override { return true; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
    Check(table_.input(module), x, {rows, cols}, [&] { inner_.OnLinearInput(be, module, x, rows, cols); });
  }
  void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t b, int64_t h, int64_t s,
                      int64_t d) override {
    Check(table_.bmm(module, which), x, {b, h, s, d}, [&] { inner_.OnAttentionBmm(be, module, which, x, b, h, s, d); });
  }
  int calls = 0;
  std::vector<std::string> mismatches;

 private:
  template <typename F>
  void Check(const ActivationQuant* q, float* x, std::vector<int64_t> shape, F&& apply) {
    if (q == nullptr) return;
    const size_t n = static_cast<size_t>(NumElements(shape));
    const std::vector<float> in(x, x + n);  // CPU backend memory is host memory
    apply();
    std::vector<float> want(n);
    FakeQuant(q->spec, in, shape, q->amax, want, q->global_amax, q->name);  // scalar reference
    ++calls;
    for (size_t i = 0; i < n; ++i) {
      if (std::memcmp(&x[i], &want[i], 4) != 0) {
        mismatches.push_back(q->name + " " + ShapeToString(shape) + " [" + std::to_string(i) + "]: in " +
                             std::to_string(in[i]) + " got " + std::to_string(x[i]) + " want " +
                             std::to_string(want[i]));
        break;
      }
    }
  }
  FakeQuantHooks inner_;
  const ActivationQuantTable& table_;
};

TEST(FakeQuantHooks, CpuKernelsEqualTheReferenceAtEveryHook) {
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M");
  std::vector<int32_t> ids(2 * 64);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 3) % 8000);
  for (float factor : {1.0f, 0.75f}) {
    const ActivationQuantTable table = Nvfp4Table(*fm, ids, 2, 64, factor);
    CheckedFakeQuant checked(table);
    (void)fm->Forward(ids, 2, 64, &checked);
    EXPECT_GT(checked.calls, 40);
    for (const auto& m : checked.mismatches) ADD_FAILURE() << "amax x" << factor << ": " << m;
  }
}

}  // namespace
}  // namespace qforge
