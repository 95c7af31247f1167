// ModelOpt "unified HF" checkpoint export (spec §10, runtime contract): packed weights and scales under
// the checkpoint's hub names, KV-cache scales, hf_quant_config.json + config.json["quantization_config"]
// from one struct, tokenizer files, sharded safetensors, written atomically.
//
// Before any block scale is computed, fused siblings (q/k/v, gate/up, per-expert w1/w3) get one weight
// global amax and one input amax (the group max), whatever the calibration's shared-state patterns said,
// because runtimes fuse them into one GEMM with one scale (contract §6). For FP8 this is qforge's own
// choice (ModelOpt keeps separate scales and vLLM requantizes at load); the report says so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qforge/export/quant_config.h"
#include "qforge/model/model.h"
#include "qforge/model/weight_encoder.h"
#include "qforge/numerics/quant_kernels.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

struct HfExportOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // close a shard once it holds this many bytes
  bool show_progress = true;
  // What may be at `out_dir` already: by default only nothing or an empty directory. The CLI's
  // CheckOutputDirectory (base/file.h) gives kExportOnly for --overwrite of an earlier export.
  ReplaceMode replace = ReplaceMode::kNever;
  // Fast host kernels for weight packing (numerics/quant_kernels.h; the CLI passes &cpu::HostKernels()).
  // nullptr: numerics' scalar reference. The checkpoint's bytes are the same either way. Not owned.
  const HostQuantKernels* kernels = nullptr;
  // Where the weights are encoded: nullptr packs the host weights (HostWeightEncoder with `kernels`); a
  // device encoder (forward/device_weight_encoder.h) packs the copies resident on a GPU. Not owned.
  WeightEncoder* encoder = nullptr;
  // Encoded tensors waiting for the writer threads, at most (Add blocks beyond it). A staged export that
  // encodes before calibration raises it so that encoding finishes before the forward starts.
  uint64_t max_queued_bytes = 1ull << 30;
};

// HfExportOptions::max_shard_bytes for a limit of `gib` GiB, which must be finite and in [1/1024, 1024] (a
// shard holds at least one tensor whatever the limit; the range rules out 0, negative values and a size given
// in MiB or bytes). Throws qforge::Error naming `flag` otherwise.
uint64_t MaxShardBytesFromGiB(double gib, const char* flag);

struct LayerExportStat {
  std::string module;            // hub module name
  std::string format;            // ModelOpt format string ("nvfp4", "fp8", ...)
  int64_t params = 0;
  double rel_weight_mse = 0;     // sum((W - dequant(Q(W)))^2) / sum(W^2) of the exported encoding
};

struct FusedGroupStat {
  std::vector<std::string> members;
  std::string format;
  bool unified_weight = false;   // weight (global) amax set to the group max
  bool unified_input = false;    // input amax set to the group max
};

struct HfExportReport {
  exporter::HfQuantConfig config;
  std::vector<LayerExportStat> layers;          // quantized Linears, model order
  std::vector<std::string> excluded;            // modules left unquantized (with a quantizer slot) + routers
  std::vector<FusedGroupStat> fused_groups;
  int kv_scales_written = 0;
  uint64_t bytes_written = 0;
  int num_shards = 0;
  double encode_seconds = 0;  // weight encoding and error measurement (the WeightEncoder)
  double write_seconds = 0;   // the writer threads' time putting tensors on disk, summed over threads
  double total_seconds = 0;   // encoding, copying and writing, overlapped, until the directory is in place
  double commit_seconds = 0;  // Finish's wait for the last writes and syncs, and the renames
};

// Format detection of spec §10.2 for one Linear's weight and input quantizers. Throws qforge::Error, naming
// the quantizer and the quant_cfg entry that decided it, when the spec has no export format or the format
// cannot hold it exactly (block sizes, scale encoding, per-channel axis, the input quantizer the format's
// runtime assumes, or a format qforge does not write): a spec is never exported as a neighbouring format.
exporter::ExportFormat DetectExportFormat(const Quantizer* weight, const Quantizer* input);

// Whether `state` (configured, not necessarily calibrated) can be exported: DetectExportFormat for every
// Linear, a KV-cache algorithm for every enabled k/v bmm quantizer (one for all), and no enabled quantizer
// that no export represents (output, q/p bmm, embedding weights). Throws qforge::Error naming the quantizer
// and its quant_cfg entry. Needs no amax, so `plan` and `quantize` run it before calibration.
void CheckExportable(const Model& model, const QuantState& state);

// Writes the quantized checkpoint of `model` with the calibrated `state` to `out_dir` (built beside it and
// renamed into place; an existing one is replaced only as options.replace allows). Throws qforge::Error for a quantizer without the amax its format needs, formats that
// cannot be exported, or fused siblings with different formats (runtimes cannot load those).
HfExportReport ExportHfCheckpoint(Model& model, const QuantState& state, const std::filesystem::path& out_dir,
                                  const HfExportOptions& options = {});

// An export in two stages, for calibrations that never change weights (max): the packed weights depend only
// on the weight amax, so they can be encoded, and written by the writer threads, while calibration runs.
//   StagedHfExport e(model, state_with_final_weight_amax, out, options, /*calibrated=*/false);
//   e.EncodeWeights();          // before the calibration forward; the writes continue during it
//   ... calibrate the activations ...
//   auto report = e.Finish(calibrated_state);
// Before calibration the layout's input-scale tensors are predicted from the configuration (an enabled
// input quantizer that calibration gives an amax). Finish checks every weight scale against what was
// encoded (a change is a bug: QF_ASSERT) and returns nullopt when the calibrated state asks for other
// input or KV-scale tensors than predicted: the caller then exports again with ExportHfCheckpoint. A
// StagedHfExport destroyed without a successful Finish leaves nothing at `out_dir`.
// `calibrated` = true plans from calibrated amax (ExportHfCheckpoint is that, in one call).
//
// Layer by layer (layerwise calibration, `by_layer` = true): the layout is planned from the formats alone,
// so `state` needs no weight amax yet; EncodeLayer(state, l) then encodes the Linears of decoder layer l
// (-1: those outside the decoder layers) once `state` holds their final weight amax, while the layer's
// weights are still resident on the device that encodes them. Every layer must be encoded before Finish.
class StagedHfExport {
 public:
  StagedHfExport(Model& model, const QuantState& state, const std::filesystem::path& out_dir,
                 const HfExportOptions& options, bool calibrated, bool by_layer = false);
  ~StagedHfExport();
  StagedHfExport(const StagedHfExport&) = delete;
  StagedHfExport& operator=(const StagedHfExport&) = delete;
  void EncodeWeights();
  // EncodeWeights on a thread of its own, with `encoder` (which must outlive Finish and be safe to use from
  // that thread while the caller computes, e.g. a DeviceWeightEncoder on a Fork of the calibration's
  // backend). Finish waits for it and throws its error; the destructor stops it.
  void EncodeWeightsInBackground(WeightEncoder& encoder);
  void EncodeLayer(const QuantState& state, int layer);
  // EncodeLayer with `encoder` on a thread of its own (the layer's quantizers are read before this returns;
  // the thread reads none). The layer's weights must stay as they are until WaitLayer, which waits for it
  // and throws its error; the next EncodeLayer* and Finish wait first too, and the destructor stops it.
  void EncodeLayerInBackground(const QuantState& state, int layer, WeightEncoder& encoder);
  void WaitLayer();
  std::optional<HfExportReport> Finish(const QuantState& calibrated_state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Human-readable summary of an export: per format layers and parameters, exclusions, fused groups,
// and the layers with the largest weight error first.
std::string FormatExportSummary(const HfExportReport& report, int worst_layers = 10);

}  // namespace qforge
