// Calibration dispatch (spec §6.0): runs a QuantizeConfig's `algorithm` (a name, a config, null or a list)
// on a model whose QuantState already has the config's quant_cfg applied.
#pragma once

#include <functional>

#include "qforge/calib/calib_data.h"
#include "qforge/calib/max_calib.h"
#include "qforge/config/quantize_config.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

struct CalibrateOptions {
  int64_t batch_size = 4;
  bool show_progress = true;
};

struct CalibrateReport {
  std::vector<std::string> methods;  // what ran, in order ("max"); empty for `algorithm: null`
  MaxCalibReport max;                // the max pass (every supported algorithm starts with one)
  bool used_data = false;            // the calibration data was needed (activation quantizers)
};

// True if calibrating `state` needs forward passes over data (an enabled activation quantizer with a
// data-driven amax).
bool NeedsCalibrationData(const QuantState& state);

// Runs `config.algorithm`. `data` is called at most once, only if forward passes are needed (so the text is
// tokenized only when used). Weight amax is always computed from the weights (also for `algorithm: null`,
// as ModelOpt's export does). Throws naming the method for algorithms qforge does not implement yet and for
// `layerwise.enable` (not supported by this driver).
CalibrateReport Calibrate(Model& model, QuantState& state, const config::QuantizeConfig& config,
                          const std::function<CalibData()>& data, const CalibrateOptions& options = {});

}  // namespace qforge
