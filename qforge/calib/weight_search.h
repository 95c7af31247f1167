// The weight step of `mse` and `local_hessian` (spec §6.3-6.4): after max calibration, every eligible weight
// quantizer's amax is replaced by the candidate that minimizes the weight's quantization error
// (numerics/amax_search.h), one decoder layer at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "qforge/model/model.h"
#include "qforge/numerics/amax_search.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

struct WeightSearchOptions {
  // fp8_scale_sweep: only static NVFP4 weights are searched, over the 126 FP8 scales; every other weight
  // quantizer keeps its max amax. Otherwise every eligible weight gets the multiplier search.
  bool fp8_scale_sweep = false;
  std::vector<float> multipliers;  // MseMultipliers(start, stop, step)
  // The sweep of a static NVFP4 weight with 16-element row blocks on the compute backend
  // (ForwardModel::SweepNvfp4Weight: module, block scales -> index per block), or nullopt / unset: on the host.
  // Used only with the plain squared error; the choices are the host's exactly.
  std::function<std::optional<std::vector<int32_t>>(int module, std::span<const float> scales)> device_sweep;
};

struct WeightSearchStats {
  int searched = 0;           // weight quantizers whose amax was searched
  int skipped = 0;            // enabled weight quantizers left at max (dynamic, MX, not static NVFP4 in a sweep)
  double sum_ratio = 0;       // Σ over searched groups of chosen amax / max amax
  int64_t groups = 0;
  float min_ratio = 0, max_ratio = 0;
  void Merge(const WeightSearchStats& o);
  // "mse: 14 weights searched (FP8 scale sweep), 0 left at max; chosen / max amax: mean 0.93, min 0.41, max 1.00"
  std::string Summary(std::string_view method, const WeightSearchOptions& o) const;
};

// Whether the weight quantizer takes part in the search: enabled, calibrated amax, not top-level dynamic,
// not MX; with fp8_scale_sweep, static NVFP4 only (with its promoted global amax).
bool WeightSearchEligible(const Quantizer& q, const WeightSearchOptions& o);

// Searches the weight amax of every Linear of decoder layer `layer` (-1: the Linears outside the decoder
// layers) in place. Shared-state groups stay consistent: a static NVFP4 quantizer's global amax (the group's
// value after promotion) is kept fixed, and only its per-block amax move. `metric_for` (nullptr: squared
// error) gives a per-module loss metric (local_hessian), or nullptr for that module.
WeightSearchStats SearchLayerWeightAmax(const Model& model, QuantState& state, int layer, const WeightSearchOptions& o,
                                        const HostQuantKernels* kernels,
                                        const std::function<const AmaxSearchMetric*(int module)>& metric_for = {});

}  // namespace qforge
