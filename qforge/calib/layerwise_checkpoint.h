// qforge's layerwise checkpoint directory (issue 6, spec §7.4 mapped onto qforge files; docs/layerwise.md):
//
//   <dir>/manifest.json            written last, by atomic rename; advances only at save_every window ends
//   <dir>/config.json              the resolved QuantizeConfig (for `qforge export --from`)
//   <dir>/layer_0000/quantizers.json               attributes of the layer's quantizers
//                    quantizer_buffers.safetensors  "<quantizer>._amax", "<quantizer>._global_amax" (f32)
//                    output_meta.json               output shapes per batch, MoE expert token counts
//                    weights.safetensors            only for algorithms that change weights
//                    next_inputs.safetensors        outputs of the layer (inputs of the next one), only at
//                                                   window boundaries (never for the last layer)
//                    final_hidden.safetensors       last layer only: its outputs (the head's inputs)
//
// Every layer directory is built under a temporary name and renamed into place complete, so a killed run
// leaves either a whole layer directory or none; the manifest never names a layer whose window is not on disk.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "qforge/config/json_util.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

inline constexpr std::string_view kQforgeVersion = "0.1.0";

struct LayerwiseManifest {
  int last_completed_layer = -1;
  int num_layers = 0;
  int64_t save_every = 1;
  bool save_quantizers_only = false;  // == !calib_mutates_weights
  bool qdq_from_prev = false;         // get_qdq_activations_from_prev_layer
  std::string method;                 // "max"
  std::string config_hash;            // of the resolved config without its layerwise block
  std::string calib_hash;             // of the calibration token ids and batch size
  std::string model_fingerprint;
  std::string qforge_version;

  config::Json ToJson() const;
  // Throws naming the key on a malformed manifest.
  static LayerwiseManifest FromJson(const config::Json& j);
};

// Reads `<dir>/manifest.json`; nullopt if absent. A corrupt manifest is an error (it is written atomically,
// so corruption means someone else's file).
std::optional<LayerwiseManifest> ReadManifest(const std::filesystem::path& dir);
void WriteManifest(const std::filesystem::path& dir, const LayerwiseManifest& m);

// Compares a manifest found on disk with the current run's; throws "checkpoint <key> mismatch: '<dir>' was
// written with ..., this run has ...; ... --restart ..." naming the first field that differs.
void CheckManifestCompatible(const std::filesystem::path& dir, const LayerwiseManifest& disk,
                             const LayerwiseManifest& now);

// A fingerprint of a model directory: names, sizes and mtimes of its *.safetensors files plus the content of
// config.json and the index. 16 hex digits.
std::string ModelFingerprint(const std::filesystem::path& model_dir);
// FNV-1a 64 of `s`, 16 hex digits.
std::string HashHex(std::string_view s);

std::filesystem::path LayerDir(const std::filesystem::path& dir, int layer);  // <dir>/layer_0007

// Quantizer state of decoder layer `layer` (or of the modules outside the decoder layers for layer == -1)
// as JSON attributes + a safetensors of buffers, written into `layer_dir` (which must exist).
void SaveLayerQuantizers(const std::filesystem::path& layer_dir, const Model& model, const QuantState& state,
                         int layer);
// Restores what SaveLayerQuantizers wrote into `state` (whose quant_cfg must already be applied). Throws
// naming the file and quantizer when the saved attributes disagree with the state's.
void LoadLayerQuantizers(const std::filesystem::path& layer_dir, const Model& model, QuantState& state, int layer);

// Weights of the layer's Linears as the model currently computes with them (overrides included), f32, under
// their checkpoint tensor names; and their restoration as overrides.
void SaveLayerWeights(const std::filesystem::path& layer_dir, const Model& model, int layer);
void LoadLayerWeights(const std::filesystem::path& layer_dir, Model& model, int layer);

// Test hook: with QF_TEST_KILL_AT=<event>:<n> in the environment, the n-th (1-based) occurrence of `event`
// in this process raises SIGKILL on the process. `layer` is the decoder layer being saved. An in-process
// handler (SetKillPointHandler, for tests that throw instead) is called first when set.
void KillPoint(std::string_view event, int layer = -1);
void SetKillPointHandler(std::function<void(std::string_view event, int layer)> handler);

// The layer a run should start at given the directory's manifest (0 without one); throws on a manifest
// incompatible with `now` (CheckManifestCompatible) or out of range.
int DetectResumeLayer(const std::filesystem::path& dir, const LayerwiseManifest& now);

}  // namespace qforge
