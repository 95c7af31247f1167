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
//                    checksums.json                 size + XXH3-128 of every other file, verified on resume
//   <dir>/.qforge-checkpoint.lock  marks the directory as qforge's and holds the one-run lock (flock)
//
// Every layer directory is built under a temporary name and renamed into place complete, so a killed run
// leaves either a whole layer directory or none; the manifest never names a layer whose window is not on disk.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "qforge/base/kill_point.h"
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
  std::string config_checksum;        // XXH3-128 of <dir>/config.json as written by this run

  // With "checksum": XXH3-128 of the dump without that key, so a hand-edited manifest is detected.
  config::Json ToJson() const;
  // Throws naming the key on a malformed manifest or a checksum that does not match.
  static LayerwiseManifest FromJson(const config::Json& j);
};

// The state of `<dir>/manifest.json`. Only kValid carries a manifest; `problem` says what is wrong otherwise.
enum class ManifestState : uint8_t { kMissing, kCorrupt, kIncomplete, kValid };
struct ManifestRead {
  ManifestState state = ManifestState::kMissing;
  std::optional<LayerwiseManifest> manifest;
  std::string problem;
};
// Reads `<dir>/manifest.json` without throwing on its content: not JSON or a checksum mismatch = corrupt, a
// required key missing or mistyped = incomplete.
ManifestRead ReadManifestState(const std::filesystem::path& dir);
// Reads `<dir>/manifest.json`; nullopt if absent. A corrupt or incomplete manifest is an error naming it.
std::optional<LayerwiseManifest> ReadManifest(const std::filesystem::path& dir);
void WriteManifest(const std::filesystem::path& dir, const LayerwiseManifest& m);

// Name of the lock file that marks a checkpoint directory as qforge's.
inline constexpr std::string_view kCheckpointLockFile = ".qforge-checkpoint.lock";
// True if `dir` can serve as a checkpoint directory: missing, empty, or already qforge's (it has the lock
// file or a qforge manifest). Anything else holds someone else's files, which --restart must never delete.
bool IsUsableCheckpointDir(const std::filesystem::path& dir);

// Writes `<layer_dir>/checksums.json` over every regular file of `layer_dir` (call last, before the layer
// directory is renamed into place), and checks it: throws naming the file whose size or XXH3-128 differs
// from the record, or that is missing or unlisted (a corrupted or hand-edited checkpoint).
void WriteLayerChecksums(const std::filesystem::path& layer_dir);
void VerifyLayerChecksums(const std::filesystem::path& layer_dir);

// Compares a manifest found on disk with the current run's; throws "checkpoint <key> mismatch: '<dir>' was
// written with ..., this run has ...; ... --restart ..." naming the first field that differs.
void CheckManifestCompatible(const std::filesystem::path& dir, const LayerwiseManifest& disk,
                             const LayerwiseManifest& now);

// A content fingerprint of a model directory (32 hex digits), independent of paths and mtimes so that a
// copied or touched model still resumes: for each *.safetensors file (sorted by name) its name, size, the
// XXH3-128 of its header (the 8-byte length + JSON) and of a sample of its data section (64 KiB at each of
// 16 evenly spaced offsets, whole if smaller than 1 MiB); plus the full content of config.json and of
// model.safetensors.index.json.
std::string ModelFingerprint(const std::filesystem::path& model_dir);

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

// The layer a run should start at, in ModelOpt's order (spec §7.4): a missing, corrupt or incomplete
// manifest means a fresh start (0), and so does a complete one (every layer done); only then is the manifest
// compared with `now` (CheckManifestCompatible throws on a mismatch), and start = last_completed_layer + 1.
// `note` (optional) receives why a fresh start was chosen over an existing manifest.
int DetectResumeLayer(const std::filesystem::path& dir, const LayerwiseManifest& now, std::string* note = nullptr);

}  // namespace qforge
