// The registry of calibration algorithms (algorithm.h).
#include "qforge/calib/algorithm.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "qforge/base/error.h"
#include "qforge/base/progress.h"

namespace qforge {
namespace {

using Factory = std::unique_ptr<CalibAlgorithm> (*)(const config::QuantizeConfig&, const config::AlgorithmConfig&);

struct Registration {
  std::string_view method;  // config::AlgorithmTraits::method
  Factory make;
};

// One row per implemented method.
constexpr Registration kAlgorithms[] = {
    {"max", &MakeMaxAlgorithm},
    {"mse", &MakeMseAlgorithm},
    {"local_hessian", &MakeLocalHessianAlgorithm},
    {"nvfp4_act_headroom", &MakeActHeadroomAlgorithm},
    {"gptq", &MakeGptqAlgorithm},
    {"smoothquant", &MakeSmoothQuantAlgorithm},
    {"awq_lite", &MakeAwqLiteAlgorithm},
    {"awq_clip", &MakeAwqClipAlgorithm},
    {"awq_full", &MakeAwqFullAlgorithm},
};

}  // namespace

std::vector<std::string_view> ImplementedCalibMethods() {
  std::vector<std::string_view> out;
  for (const auto& r : kAlgorithms) out.push_back(r.method);
  return out;
}

std::unique_ptr<CalibAlgorithm> MakeCalibAlgorithm(const config::QuantizeConfig& config,
                                                   const config::AlgorithmConfig& algo) {
  for (const auto& r : kAlgorithms) {
    if (algo.method() == r.method) return r.make(config, algo);
  }
  QF_FAIL("algorithm '{}' is not implemented yet; qforge calibrates with {} (give one with --algorithm, or use a "
          "recipe or --qformat whose algorithm is one of them)",
          algo.method(), fmt::join(ImplementedCalibMethods(), ", "));
}

CalibrateReport RunMaxCalibration(const CalibAlgorithm& algo, const config::QuantizeConfig& config, ForwardModel& fm,
                                  QuantState& state, const std::function<CalibData()>& data,
                                  const CalibrateOptions& options, MaxCalibOptions mo, const MaxRefinement& refine) {
  CalibrateReport report;
  const config::AlgorithmConfig& ac = algo.wrapper().config != nullptr ? *algo.wrapper().config : algo.config();
  mo.act_headroom = algo.wrapper().act_headroom;
  mo.moe_calib_experts_ratio = ac.moe_calib_experts_ratio();
  mo.batch_size = options.batch_size;
  mo.show_progress = options.show_progress;
  if (refine.empty()) mo.weights_final = options.weights_final;
  const LayerwiseOverrides& ov = options.layerwise;
  if (ov.enable.value_or(ac.layerwise().enable)) {
    LayerwiseOptions lo = ResolveLayerwiseOptions(config, ac, ov);
    lo.show_progress = options.show_progress;
    lo.refine_layer = refine.layer;
    lo.prepare_layer = refine.prepare;
    lo.refine_reads_inputs = refine.reads_inputs;
    lo.refine_mutates_weights = refine.mutates_weights;
    report.layerwise = true;
    report.checkpoint_dir = lo.checkpoint_dir.string();
    report.layerwise_report = LayerwiseMaxCalibrate(fm, state, data, mo, lo);
    report.max = report.layerwise_report.max;
    report.used_data = report.layerwise_report.used_data;
  } else {
    CalibData calib;
    if (algo.Needs(state).forward) {
      calib = data();
      report.used_data = true;
    }
    if (refine.prepare) {
      for (int l = -1; l < fm.model().num_layers(); ++l) refine.prepare(state, l);
    }
    report.max = MaxCalibrate(fm, state, calib, mo);
    if (refine.whole) {
      Timer t;  // counted with the weight amax, as the layerwise driver counts refine_layer
      refine.whole(fm, state, calib);
      report.max.weight_amax_seconds += t.Seconds();
    }
  }
  report.methods.push_back(ac.method());
  if (&ac != &algo.config()) report.methods.push_back(algo.config().method());
  return report;
}

CalibrateReport RestoreMaxCalibration(const CalibAlgorithm& algo, ForwardModel& fm, QuantState& state,
                                      const std::filesystem::path& dir, const MaxCalibOptions& base,
                                      const LayerwiseOptions::RefineLayer& refine_head,
                                      const LayerwiseOptions::PrepareLayer& prepare_head) {
  CalibrateReport report;
  MaxCalibOptions mo = base;
  mo.act_headroom = algo.wrapper().act_headroom;
  report.max = RestoreLayerwiseCheckpoint(fm, state, dir, mo, refine_head, prepare_head);
  if (algo.wrapper().config != nullptr) report.methods.push_back(algo.wrapper().config->method());
  report.methods.push_back(algo.config().method());
  report.layerwise = true;
  report.checkpoint_dir = dir.string();
  return report;
}

}  // namespace qforge
