// local_hessian's statistics (spec §6.4): per-input-block Hessians H_j = Σ_tokens x_j x_jᵀ of every quantized
// Linear's input, captured in a forward with the activation quantizers applied and the weights unquantized,
// and the Hessian-weighted loss dwᵀ (H_j / tokens) dw that replaces the squared error in the weight search.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include "qforge/calib/activation_store.h"
#include "qforge/calib/calib_data.h"
#include "qforge/calib/weight_search.h"
#include "qforge/forward/fake_quant_hooks.h"
#include "qforge/forward/forward_model.h"
#include "qforge/numerics/amax_search.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// Accumulates the Hessians of the Linears of `modules` whose weight quantizer is enabled and whose
// in_features is a multiple of `block` (the others fall back to plain MSE), in backend memory, while
// forwarding every call to `activations` (the fake quantization of the activations; weights stay
// unquantized because the forward's weights are). The input is captured before it is fake-quantized
// (local_hessian), or after it (`after_quant`: GPTQ's Hessian of the quantized input). `block` 0: one block
// of the whole row, H = Σ x xᵀ [in, in] (GPTQ).
class HessianCaptureHooks final : public ForwardHooks {
 public:
  HessianCaptureHooks(ForwardModel& fm, const QuantState& state, const std::vector<int>& modules, int64_t block,
                      FakeQuantHooks activations, bool after_quant = false);
  bool ModifiesActivations() const override { return true; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override;
  void OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) override {
    inner_.OnLinearOutput(be, module, y, rows, cols);
  }
  void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                      int64_t head_dim) override {
    inner_.OnAttentionBmm(be, module, which, x, batch, heads, seq, head_dim);
  }
  bool WantsAttentionProbs(int module) const override { return inner_.WantsAttentionProbs(module); }
  void OnAttentionProbs(Backend& be, int module, float* probs, int64_t batch, int64_t heads, int64_t seq) override {
    inner_.OnAttentionProbs(be, module, probs, batch, heads, seq);
  }

  // The normalized Hessians H_j / tokens of `module` ([in/block, block, block] f32, host), or empty when it
  // has none (not captured, no token reached it). `scale`: the factor over 1 / tokens (GPTQ's 2).
  std::vector<float> NormalizedHessian(int module, float scale = 1.0f) const;
  int64_t tokens(int module) const;

 private:
  struct Acc {
    Buffer h;  // [in/block, block, block] f32, backend memory
    int64_t cols = 0;
    int64_t block = 0;
    int64_t tokens = 0;
  };
  Backend& be_;
  bool after_quant_;
  std::map<int, Acc> acc_;
  FakeQuantHooks inner_;
};

// The capture passes of the algorithms built on these hooks (local_hessian, gptq), with `hooks`:
// Whole model: the calibration data batch by batch through every decoder layer, and through the final norm
// and lm_head when `through_head`; progress lines named `name` when `show_progress`.
void CaptureForward(ForwardModel& fm, const CalibData& calib, int64_t batch_size, ForwardHooks& hooks,
                    bool through_head, bool show_progress, std::string_view name);
// Layer by layer: decoder layer `layer`'s inputs through it (-1: the last layer's outputs through the final
// norm and lm_head), batch by batch.
void CaptureLayer(ForwardModel& fm, int layer, const ActivationStore& inputs, ForwardHooks& hooks);

// The weight-search metric of one Linear: for a weight [out, in] and per row r and input block j,
// loss(r, j) = dwᵀ Hn_j dw with dw = w[r, j·b:(j+1)·b] − wq[r, j·b:(j+1)·b] (double sums); each element of
// the block carries its block's loss and the quantization group sums them (as ModelOpt expands the block
// loss over the block's elements before reducing), so the argmin per group is ModelOpt's.
class LocalHessianMetric final : public AmaxSearchMetric {
 public:
  LocalHessianMetric(QuantSpec spec, std::vector<int64_t> shape, int64_t block, std::vector<float> hessian);
  void GroupLosses(std::span<const float> x, std::span<const float> xq, std::span<double> losses) const override;

 private:
  QuantSpec spec_;
  std::vector<int64_t> shape_;
  int64_t block_;
  std::vector<float> h_;  // normalized, [in/block, block, block]
};

// local_hessian's refinement after the max step (the local_hessian algorithm, and gptq's scale_algorithm):
// the per-block Hessians (`block`) of each Linear's input before its quantizer, then the weight search with
// the loss of LocalHessianMetric where a Linear has a Hessian, mse's squared error otherwise. `with_hessian`
// counts the former. The head's input is captured only when lm_head's weight is searched (a forward through
// the vocabulary buys nothing otherwise).
// Layer by layer: decoder layer `layer`'s inputs (-1: the last layer's outputs, for the head).
WeightSearchStats LocalHessianRefineLayer(ForwardModel& fm, QuantState& state, int layer,
                                          const ActivationStore& inputs, int64_t block,
                                          const WeightSearchOptions& search, int* with_hessian);
// Whole model: one capture forward over `calib` (batches of `batch_size`; progress lines named `name`), then
// every layer's search.
WeightSearchStats LocalHessianRefineWhole(ForwardModel& fm, QuantState& state, const CalibData& calib,
                                          int64_t batch_size, int64_t block, const WeightSearchOptions& search,
                                          bool show_progress, std::string_view name, int* with_hessian);

}  // namespace qforge
