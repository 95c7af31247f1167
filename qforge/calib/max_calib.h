// `max` calibration (spec §6.1, §6.2): weight amax from the weights, activation and KV amax from forward
// passes over the calibration samples, MoE expert input-amax syncing and the shared weight global amax.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qforge/calib/calib_data.h"
#include "qforge/forward/forward_model.h"
#include "qforge/model/model.h"
#include "qforge/numerics/act_headroom.h"
#include "qforge/quant/quant_state.h"
#include "qforge/quant/shared_state.h"

namespace qforge {

// Receives the weight side of max calibration as soon as it is final. Max calibration never changes a
// weight, so a staged export (export/hf_export.h) can encode and write the weights from it while the
// activation forward runs.
class WeightsFinalSink {
 public:
  virtual ~WeightsFinalSink() = default;
  // Whole-model calibration: once, before the forward, with the state as the end of calibration will have it
  // on the weight side (weight amax, expert weight sync, shared weight global amax, static NVFP4 promotion:
  // none of it depends on data); its input quantizers are not calibrated yet.
  virtual void AllWeights(const QuantState& weights_final) = 0;
  // Layerwise calibration: first with layer -1 (the Linears outside the decoder layers), then with each
  // decoder layer in order as soon as its weights' amax are final (synced across experts, shared groups and
  // promotion done), before the layer's forward and while its weights are resident on the backend. `state`
  // is the calibration's own state: later layers have no weight amax yet. Layers resumed from a checkpoint
  // come too, with the quantizers the checkpoint holds.
  virtual void LayerWeights(const QuantState& state, int layer) = 0;
  // Layerwise calibration: layer `layer` is done and its weights are about to be released (a sink that
  // encodes a layer's weights beside its forward waits for that here).
  virtual void LayerDone(int /*layer*/) {}
};

struct MaxCalibOptions {
  int64_t batch_size = 1;                    // sequences per forward pass
  std::vector<std::string> shared_patterns;  // weight_global_amax patterns (empty: grouping off)
  bool sync_expert_weight_amax = false;
  bool show_progress = true;
  WeightsFinalSink* weights_final = nullptr;  // not owned; nullptr: none
  // nvfp4_act_headroom (spec §6.5): every calibrating NVFP4 dynamic-block input quantizer takes its amax
  // from the histogram of its per-16-block amax instead of the plain max.
  std::optional<ActHeadroomParams> act_headroom;
  // moe_calib_experts_ratio (spec §6.0): calibration forwards route each MoE block's tokens to
  // max(top_k, round(experts * ratio)) experts for the statistics, then run the original top_k for the
  // output; each expert then keeps its own input amax (no sync across the layer's experts).
  std::optional<double> moe_calib_experts_ratio;
};

// Per-MoE-layer routing statistics: how many calibration tokens each expert received.
struct ExpertTokenCounts {
  int layer = -1;
  std::string block;                // e.g. "model.layers.0.mlp"
  std::vector<int64_t> tokens;      // per expert
};

struct MaxCalibReport {
  int64_t batches = 0;
  int64_t tokens = 0;
  bool ran_forward = false;
  double weight_amax_seconds = 0;   // max over the weights
  double on_weights_final_seconds = 0;  // in the WeightsFinalSink (a staged export's encoding)
  double forward_seconds = 0;       // calibration forward passes (amax collection included)
  double reduce_seconds = 0;        // MoE syncing, shared groups, promotion
  std::vector<ExpertTokenCounts> expert_tokens;
  std::vector<SharedGroup> shared_groups;
  std::vector<std::string> notes;   // things the summary must show (e.g. experts that saw no token)
};

// Weight amax of every enabled weight quantizer that needs calibration (weight_only_quantize), from the
// model's current weights. Layer weights are loaded as needed. With `layer`, only the quantizers of that
// decoder layer (-1: the modules outside the decoder layers) — layerwise calibration.
// `kernels`: the host SIMD kernels (Backend::host_kernels(); nullptr: scalar reference, same values).
void CalibrateWeightAmax(Model& model, QuantState& state, std::optional<int> layer = std::nullopt,
                         const HostQuantKernels* kernels = nullptr);
// The same for the weight quantizers of `modules` only (an algorithm that changed just those weights, or set
// other weights' amax that must stay).
void CalibrateWeightAmaxOf(Model& model, QuantState& state, std::span<const int> modules,
                           const HostQuantKernels* kernels = nullptr);
// The same with the forward's backend: on a device backend the amax is computed from the weights resident
// there (uploaded as needed; ForwardModel::WeightAmax), bit-identical to the host path; on the CPU it is
// the host path with the backend's SIMD kernels.
// keep_resident = false: weights uploaded for it are freed again (ForwardModel::WeightAmax).
void CalibrateWeightAmax(ForwardModel& fm, QuantState& state, std::optional<int> layer = std::nullopt,
                         bool keep_resident = true);

// True for a quantizer that nvfp4_act_headroom calibrates (spec §6.5, ModelOpt's choice): a calibrating
// input quantizer, not `type: dynamic` itself, whose blocks are dynamic NVFP4 ((2,1) elements, (4,3) scales).
bool IsActHeadroomQuantizer(const Quantizer& q);

// Forward hooks that fold max|x| into the amax of every calibrating activation quantizer (inputs, outputs,
// q/k/v bmm). Activations are not modified (ModelOpt calibrates on unquantized activations). The amax is
// the backend's QuantAmax op on backend memory: only the few amax values reach the host.
class MaxCalibHooks : public ForwardHooks {
 public:
  // options.act_headroom: such quantizers then get the tensor, never a fold; options.moe_calib_experts_ratio:
  // MoeCalibExpertsRatio().
  explicit MaxCalibHooks(QuantState& state, const MaxCalibOptions& options = {});
  std::optional<double> MoeCalibExpertsRatio() const override { return moe_ratio_; }
  bool ModifiesActivations() const override { return false; }
  // When every activation amax collected is one number per tensor: the max over parts of a batch is the
  // max over all of it, bit for bit.
  bool RowLocal() const override { return row_local_; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override;
  // One amax per distinct spec among the modules' input quantizers (q/k/v usually share one).
  void OnLinearInputs(Backend& be, std::span<const int> modules, float* x, int64_t rows, int64_t cols) override;
  bool WantsLinearOutput(int module) const override;
  // On a device, a calibrating per-tensor input quantizer takes max |x| folded into its slot.
  InputTap LinearInputTap(Backend& be, int module, int64_t rows, int64_t cols) override;
  // Merges what was folded on a device since the last Flush into the quantizers' amax (one download);
  // throws naming the quantizer if its activations held a NaN or an infinity; and sets each act_headroom
  // quantizer that saw data to its histogram's amax. The drivers call it after their forward passes, before
  // the amax is read.
  void Flush(Backend& be);
  void OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) override;
  void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                      int64_t head_dim) override;

 private:
  // Per spec, the amax of one activation (host path) or the slot it was folded into (device path), for
  // quantizers of modules that read the same x.
  struct AmaxCache {
    std::vector<std::pair<QuantSpec, std::vector<float>>> values;
    std::vector<std::pair<QuantSpec, int>> slots;
    std::vector<std::pair<QuantSpec, BlockAmaxHistogram>> histograms;
  };
  // nvfp4_act_headroom's collection for quantizer q (a headroom quantizer) of x [rows, cols].
  void CollectHistogram(Backend& be, Quantizer& q, const QuantSpec& spec, const float* x, int64_t rows, int64_t cols,
                        AmaxCache* cache);
  // Folds max|x| into the (module, role) quantizer's amax if it calibrates; with `cache`, a spec's amax is
  // computed once.
  void Collect(Backend& be, int module, QuantizerRole role, const float* x, std::vector<int64_t> shape,
               AmaxCache* cache = nullptr);
  // On a device, a per-tensor amax is folded into a slot of backend memory (Backend::AmaxFold) and read
  // by Flush: no round trip per call.
  bool Fold(Backend& be, Quantizer& q, const QuantSpec& spec, const float* x, const std::vector<int64_t>& shape,
            AmaxCache* cache);
  // q's slot (allocated on first use) if its amax may be folded on `be` for inputs of `shape`, else null.
  uint32_t* FoldSlot(Backend& be, const Quantizer& q, const QuantSpec& spec, const std::vector<int64_t>& shape);
  // Quantizer qi's amax at Flush is the max of slot src (its own, or a sibling's that read the same x).
  void MarkFolded(int qi, int src);
  QuantState& state_;
  bool row_local_ = true;
  Buffer slots_;                           // uint32 per quantizer (index in state_.quantizers())
  std::vector<std::vector<int>> sources_;  // per quantizer: the slots whose max is its amax
  bool folded_ = false;
  std::optional<ActHeadroomParams> act_headroom_;
  std::optional<double> moe_ratio_;
  std::vector<char> headroom_;                          // per quantizer: calibrated by act_headroom_
  std::vector<std::optional<BlockAmaxHistogram>> hist_;  // per quantizer, since the last Flush
};

// MoE step 3 of spec §6.2: every expert input quantizer's amax becomes the element-wise max across the
// layer's experts for that projection (covering experts that saw no token); with `sync_weights` the
// expert weight amax too. Records per-expert token counts from `rows_seen` (ForwardModel::rows_seen()). With
// `layer`, only that decoder layer's experts.
// With `independent` (moe_calib_experts_ratio), each expert keeps its own amax: only an expert input
// quantizer that saw no token at all takes the max over its siblings (with a note), and weights are not synced.
void SyncMoeExperts(const Model& model, const std::vector<int64_t>& rows_seen, QuantState& state, bool sync_weights,
                    MaxCalibReport* report, std::optional<int> layer = std::nullopt, bool independent = false);

// Spec §6.2 step 5 / §8.4: shared weight global amax per group, then promotion of the static NVFP4 weights
// that have no global amax yet (global_amax = group value, or the max of the quantizer's own per-block amax).
void FinalizeSharedStateAndPromote(const Model& model, QuantState& state, const std::vector<std::string>& patterns,
                                   MaxCalibReport* report);

// The policy both max drivers (MaxCalibrate, LayerwiseMaxCalibrate) share.
// True if calibrating `state` needs forward passes over data: an enabled activation quantizer with a
// data-driven amax.
bool NeedsCalibrationData(const QuantState& state);
// True if an input or output quantizer of lm_head calibrates (the head then runs in the calibration).
bool HeadNeedsCalibration(const Model& model, const QuantState& state);
// Throws naming the first calibrating activation quantizer without amax (it received no calibration data;
// its export would have no scale). lm_head is exempt (its quantizers see data only when the head runs).
// With `layer`, only that decoder layer's quantizers.
void CheckActivationAmax(const Model& model, const QuantState& state, std::optional<int> layer = std::nullopt);
// The token ids of samples [b0, b0 + count) of `data`, concatenated ([count, seq_len] row-major).
std::vector<int32_t> BatchIds(const CalibData& data, int64_t b0, int64_t count);

// The whole `max` algorithm over `data`.
MaxCalibReport MaxCalibrate(ForwardModel& fm, QuantState& state, const CalibData& data, const MaxCalibOptions& options);

// Names of ModuleList containers of the model (for shared-state parents): "model.layers" and every
// "...experts".
std::set<std::string> ModuleListNames(const Model& model);

}  // namespace qforge
