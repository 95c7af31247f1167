// Calibration dispatch (spec §6.0): runs a QuantizeConfig's `algorithm` (a name, a config, null or a list)
// on a model whose QuantState already has the config's quant_cfg applied.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "qforge/calib/calib_data.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/max_calib.h"
#include "qforge/config/quantize_config.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// Command-line overrides of the config's `layerwise` block (unset: the config decides).
struct LayerwiseOverrides {
  std::optional<bool> enable;
  std::optional<bool> qdq_from_prev;
  std::optional<std::string> checkpoint_dir;
  std::optional<int64_t> save_every;
  std::optional<bool> save_quantizers_only;
  int64_t activation_memory = int64_t{2} << 30;
  int64_t device_activation_memory = LayerwiseOptions{}.device_activation_memory;
  bool restart = false;
  int64_t device_chunk_rows = LayerwiseOptions{}.device_chunk_rows;  // (LayerwiseOptions, on a device)
  int64_t device_mlp_rows = LayerwiseOptions{}.device_mlp_rows;
};

struct CalibrateOptions {
  int64_t batch_size = 4;
  bool show_progress = true;
  LayerwiseOverrides layerwise;
  // MaxCalibOptions::weights_final for max calibration, whole-model or layerwise (not called for
  // `algorithm: null`, nor when layerwise calibration updates weights). Not owned.
  WeightsFinalSink* weights_final = nullptr;
};

struct CalibrateReport {
  std::vector<std::string> methods;  // what ran, in order ("max"); empty for `algorithm: null`
  MaxCalibReport max;                // the max pass (every supported algorithm starts with one)
  bool used_data = false;            // the calibration data was needed (activation quantizers)
  bool layerwise = false;            // ran layer by layer (then `layerwise_report` is filled)
  LayerwiseReport layerwise_report;
  std::string checkpoint_dir;        // layerwise checkpoint directory used ("" = none)
};

// The LayerwiseOptions of `algo`'s `layerwise` block with `overrides` applied (enable is not part of them).
// Throws "algorithm '<m>' does not support layerwise.enable=True" for algorithms that cannot run layer by
// layer (spec §6.0: svdquant).
LayerwiseOptions ResolveLayerwiseOptions(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo,
                                         const LayerwiseOverrides& overrides);

// The hash of a config that decides whether a layerwise checkpoint can be resumed: the full dump without
// the algorithm's `layerwise` block (its fields are compared one by one).
std::string LayerwiseConfigHash(const config::QuantizeConfig& config);

// Runs `config.algorithm`. `data` is called at most once, only if forward passes are needed (so the text is
// tokenized only when used). Weight amax is always computed from the weights (also for `algorithm: null`,
// as ModelOpt's export does). Throws naming the method for algorithms qforge does not implement yet.
// `layerwise.enable` (config or options.layerwise) runs LayerwiseMaxCalibrate.
CalibrateReport Calibrate(ForwardModel& fm, QuantState& state, const config::QuantizeConfig& config,
                          const std::function<CalibData()>& data, const CalibrateOptions& options = {});

// The resolved config a layerwise checkpoint directory was written with (`<dir>/config.json`).
config::QuantizeConfig LoadLayerwiseCheckpointConfig(const std::filesystem::path& dir);

// Fills `state` (with `config.quant_cfg` applied) from a finished layerwise checkpoint directory written with
// `config`, without calibrating (RestoreLayerwiseCheckpoint with the algorithm's shared-state patterns).
CalibrateReport RestoreFromLayerwiseCheckpoint(ForwardModel& fm, QuantState& state,
                                               const config::QuantizeConfig& config, const std::filesystem::path& dir);

}  // namespace qforge
