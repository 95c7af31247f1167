// Calibration algorithm dispatch.
#include "qforge/calib/calibrate.h"

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/hash.h"
#include "qforge/base/strings.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/layerwise_checkpoint.h"

namespace qforge {

LayerwiseOptions ResolveLayerwiseOptions(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo,
                                         const LayerwiseOverrides& ov) {
  // Algorithms that change the whole model at once (spec §6.0 "layerwise: no").
  QF_CHECK(algo.traits().supports_layerwise, "algorithm '{}' does not support layerwise.enable=True", algo.method());
  const config::LayerwiseConfig& lw = algo.layerwise();
  LayerwiseOptions lo;
  lo.qdq_from_prev = ov.qdq_from_prev.value_or(lw.get_qdq_activations_from_prev_layer);
  lo.checkpoint_dir = ov.checkpoint_dir.value_or(lw.checkpoint_dir.value_or(""));
  lo.save_every = ov.save_every.value_or(lw.save_every);
  lo.save_quantizers_only = ov.save_quantizers_only.value_or(!lw.calib_mutates_weights);
  lo.activation_memory = ov.activation_memory;
  lo.device_activation_memory = ov.device_activation_memory;
  lo.device_chunk_rows = ov.device_chunk_rows;
  lo.device_mlp_rows = ov.device_mlp_rows;
  lo.restart = ov.restart;
  lo.config_json = config.ToJson().dump(2);
  lo.config_hash = LayerwiseConfigHash(config);
  lo.method = algo.method();
  return lo;
}

std::string LayerwiseConfigHash(const config::QuantizeConfig& config) {
  config::Json j = config.ToJson();
  auto strip = [](config::Json& a) {
    if (a.is_object()) a.erase("layerwise");
  };
  if (j.contains("algorithm")) {
    if (j["algorithm"].is_array()) {
      for (auto& a : j["algorithm"]) strip(a);
    } else {
      strip(j["algorithm"]);
    }
  }
  return HashHex(j.dump());
}

CalibrateReport Calibrate(ForwardModel& fm, QuantState& state, const config::QuantizeConfig& config,
                          const std::function<CalibData()>& data, const CalibrateOptions& options) {
  Model& model = fm.model();
  CalibrateReport report;
  const auto& algos = config.algorithm.configs;
  if (algos.empty()) {  // algorithm: null -> no calibration; weights still get their amax for export
    CalibrateWeightAmax(fm, state);
    FinalizeSharedStateAndPromote(model, state, {}, nullptr);
    return report;
  }
  QF_CHECK(algos.size() == 1, "algorithm: a list of {} algorithms is not supported yet (give one)", algos.size());
  const config::AlgorithmConfig& algo = algos[0];
  if (options.layerwise.enable.value_or(algo.layerwise().enable)) {
    (void)ResolveLayerwiseOptions(config, algo, options.layerwise);  // refuses algorithms without layerwise
  }
  return MakeCalibAlgorithm(config, algo)->Run(fm, state, data, options);
}

config::QuantizeConfig LoadLayerwiseCheckpointConfig(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  QF_CHECK(std::filesystem::exists(path), "'{}' is not a layerwise checkpoint directory ('{}' missing)", dir.string(),
           path.string());
  config::Json j;
  try {
    j = config::Json::parse(ReadFileToString(path));
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL("'{}': not valid JSON: {}", path.string(), e.what());
  }
  return config::QuantizeConfig::FromJson(j, path.string());
}

CalibrateReport RestoreFromLayerwiseCheckpoint(ForwardModel& fm, QuantState& state,
                                               const config::QuantizeConfig& config, const std::filesystem::path& dir) {
  const auto& algos = config.algorithm.configs;
  QF_CHECK(algos.size() == 1, "checkpoint '{}': its config has {} algorithms (layerwise checkpoints have one)",
           dir.string(), algos.size());
  return MakeCalibAlgorithm(config, algos[0])->Restore(fm, state, dir);
}

}  // namespace qforge
