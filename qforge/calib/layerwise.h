// Layerwise calibration (issue 6, spec §7): one decoder layer at a time, each layer fed the captured outputs
// of the one before, with an optional checkpoint directory (layerwise_checkpoint.h) so a killed run resumes.
//
// Memory: only the current layer's weights (Model::LoadLayer / ReleaseLayer) and one set of activations
// ([batch*seq, hidden] per calibration batch, f32 or bf16 as the compute dtype; each batch's layer outputs
// replace its inputs) are materialized, with the workspace of one part of a batch on a device
// (`device_chunk_rows`); activations beyond the device and host budgets spill to a file.
//
// With get_qdq_activations_from_prev_layer = false, every layer sees exactly the activations of a whole-model
// pass, so layerwise `max` gives bit-identical amax (and exports) to MaxCalibrate.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "qforge/calib/activation_store.h"
#include "qforge/calib/calib_data.h"
#include "qforge/calib/max_calib.h"
#include "qforge/model/model.h"
#include "qforge/forward/fake_quant_hooks.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// ModelOpt's per-layer execution modes (spec §7.3). qforge keeps the same schedule: at step i layer i is
// calibrated on captured inputs ("capture"), layer i-1's outputs are what it replays ("run"), earlier layers
// are done and released ("skip"), later ones untouched ("original").
enum class LayerMode : uint8_t { kOriginal, kCapture, kRun, kSkip };
std::string_view LayerModeName(LayerMode m);  // "original", "capture", "run", "skip"

// Modes of `num_layers` layers while calibrating layer `step`. Throws "no collected inputs to replay" when
// step > 0 and the previous layer collected nothing (`have_collected_inputs` false).
std::vector<LayerMode> LayerModesForStep(int num_layers, int step, bool have_collected_inputs);

struct LayerwiseOptions {
  bool qdq_from_prev = false;            // get_qdq_activations_from_prev_layer
  std::filesystem::path checkpoint_dir;  // empty: no checkpoint
  int64_t save_every = 1;                // >= 1
  bool save_quantizers_only = false;     // == !calib_mutates_weights: never write weights
  int64_t activation_memory = int64_t{2} << 30;  // bytes of activations kept in host RAM
  // Bytes of activations kept in device memory on a GPU backend (-1: half the memory free when calibration
  // starts); ignored on the CPU. The batches beyond it are held in host RAM (activation_memory) and stream
  // through the device: each loop over the batches copies the next one in while it runs this one, and copies
  // outputs back beside the next ones (ActivationStore::Prefetch).
  int64_t device_activation_memory = -1;
  // On a device backend, a layer's attention runs on parts of about this many rows (whole sequences) of
  // each batch (ForwardModel::set_max_chunk_rows; 0: whole batches), and a dense MLP on at most
  // device_mlp_rows rows (set_max_mlp_rows; 0: the attention's part), so the workspace stays small beside
  // the activations. Attention and MLP share their scratch: a Llama-3-8B layer needs about 130 MiB for
  // attention on 2048 rows and the MLP on 1024. Ignored on the CPU.
  int64_t device_chunk_rows = 2048;
  int64_t device_mlp_rows = 1024;
  bool restart = false;                  // discard an existing checkpoint
  std::string config_json;               // resolved QuantizeConfig, stored as <checkpoint>/config.json
  std::string config_hash;               // hash of the config without its layerwise block (manifest)
  // An algorithm step that changes the layer's weights after its amax is calibrated (via
  // Model::SetLinearWeight); with it the checkpoint stores the layer's weights (unless save_quantizers_only).
  // max has none; tests and later algorithms use it.
  std::function<void(Model&, QuantState&, int layer)> weight_update;
  // An algorithm step that changes a layer's quantizers (not its weights) after its max step, before its
  // outputs are captured and its checkpoint written: mse's weight search, local_hessian's capture and
  // search. `inputs` are the layer's inputs (for layer -1, the head: the last layer's outputs), readable
  // when `refine_reads_inputs` (the max step then keeps them, and the outputs come from one more pass).
  // Called for every decoder layer, then for -1 once the head is calibrated. With it no staged export runs
  // (the weight amax change after the layer's max step).
  using RefineLayer = std::function<void(ForwardModel&, QuantState&, int layer, const ActivationStore& inputs)>;
  RefineLayer refine_layer;
  // An algorithm step that changes a layer's quantizers before its max step (smoothquant: per-channel input
  // amax for the statistics, made per-tensor again by its refinement). Called for each decoder layer this run
  // calibrates (not for layers resumed from a checkpoint, which come as they were saved), then for the head
  // (-1) before its calibration.
  using PrepareLayer = std::function<void(QuantState&, int layer)>;
  PrepareLayer prepare_layer;
  bool refine_reads_inputs = false;
  // The refinement changes the layer's weights (Model::SetLinearWeight overrides: GPTQ), so the checkpoint
  // stores them as with weight_update.
  bool refine_mutates_weights = false;
  std::string method = "max";
  bool show_progress = true;
};

struct LayerwiseReport {
  MaxCalibReport max;
  bool used_data = false;
  int start_layer = 0;         // first layer calibrated by this run (num_layers: finished checkpoint reused)
  bool resumed = false;
  int layers_calibrated = 0;
  int64_t peak_activation_bytes = 0;  // inputs + outputs held at once
  int64_t peak_device_activation_bytes = 0;  // of which in device memory (GPU backends)
  int64_t spilled_bytes = 0;          // largest spill
};

// Layerwise `max` calibration of every quantizer of `state` (whose quant_cfg is applied). `data` is called
// once, only if activations need calibration.
LayerwiseReport LayerwiseMaxCalibrate(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                                      const MaxCalibOptions& max_options, const LayerwiseOptions& options);

// Restores a finished checkpoint directory into `state` (quant_cfg applied from `<dir>/config.json` by the
// caller) without calibrating: every layer's quantizers, the head's activation amax from the last layer's
// outputs, shared state and promotion. Throws if the directory is unfinished or the model differs.
// `refine_head`: the algorithm's LayerwiseOptions::refine_layer, run for the head (-1) as the driver does.
// `prepare_head`: the algorithm's LayerwiseOptions::prepare_layer, run for the head before its calibration.
MaxCalibReport RestoreLayerwiseCheckpoint(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir,
                                          const MaxCalibOptions& max_options,
                                          const LayerwiseOptions::RefineLayer& refine_head = {},
                                          const LayerwiseOptions::PrepareLayer& prepare_head = {});

// Replaces the weights of decoder layer `layer`'s Linears with their fake-quantized values (enabled weight
// quantizers, calibrated amax / global amax). Returns the weights it replaced (module, f32 weight), for
// RestoreLayerWeights, which puts them back as overrides (`as_overrides`) or restores the checkpoint's.
std::vector<std::pair<int, Tensor>> SetFakeQuantLayerWeights(Model& model, const QuantState& state, int layer,
                                                             const HostQuantKernels* kernels = nullptr);
void RestoreLayerWeights(Model& model, std::vector<std::pair<int, Tensor>> previous, bool as_overrides);

}  // namespace qforge
