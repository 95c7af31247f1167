// Fake-quantized forwards.
#include "qforge/forward/fake_quant_hooks.h"

#include "qforge/base/error.h"

namespace qforge {
namespace {

void Apply(Backend& be, const ActivationQuant* q, float* x, std::initializer_list<int64_t> dims, const char* what) {
  if (q == nullptr) return;
  QF_CHECK(!q->missing_amax, "quantizer '{}' has no calibrated amax", q->name);
  const std::vector<int64_t> shape(dims);
  be.FakeQuant(q->spec, x, shape, q->amax, x, q->global_amax, what);
}

}  // namespace

const float* FakeQuantHooks::PreQuantScaleOn(Backend& be, int module, const ActivationQuant& q) {
  auto& [owner, buf] = pqs_[module];
  if (owner != &be || buf.empty()) {
    buf = be.AllocCopy(q.pre_quant_scale.data(), static_cast<int64_t>(q.pre_quant_scale.size() * sizeof(float)));
    owner = &be;
  }
  return buf.as<const float>();
}

void FakeQuantHooks::OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) {
  const ActivationQuant* q = table_.input(module);
  if (q == nullptr) return;
  if (!q->pre_quant_scale.empty()) {  // smoothing first, as ModelOpt's TensorQuantizer (also when disabled)
    QF_CHECK(static_cast<int64_t>(q->pre_quant_scale.size()) == cols,
             "quantizer '{}': its pre_quant_scale has {} values for a Linear input of {} features", q->name,
             q->pre_quant_scale.size(), cols);
    be.ScaleColumns(x, PreQuantScaleOn(be, module, *q), rows, cols);
  }
  if (q->quantize) Apply(be, q, x, {rows, cols}, "linear input");
}

void FakeQuantHooks::OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) {
  Apply(be, table_.output(module), y, {rows, cols}, "linear output");
}

void FakeQuantHooks::OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads,
                                    int64_t seq, int64_t head_dim) {
  Apply(be, table_.bmm(module, which), x, {batch, heads, seq, head_dim}, "attention bmm input");
}

void FakeQuantHooks::OnAttentionProbs(Backend& be, int module, float* probs, int64_t batch, int64_t heads,
                                      int64_t seq) {
  Apply(be, table_.probs(module), probs, {batch, heads, seq, seq}, "attention probabilities");
}

}  // namespace qforge
