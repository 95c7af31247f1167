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

void FakeQuantHooks::OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) {
  Apply(be, table_.input(module), x, {rows, cols}, "linear input");
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
