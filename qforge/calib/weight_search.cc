// MSE weight search over a layer's Linears (spec §6.3-6.4).
#include "qforge/calib/weight_search.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {

void WeightSearchStats::Merge(const WeightSearchStats& o) {
  if (o.groups > 0) {
    min_ratio = groups > 0 ? std::min(min_ratio, o.min_ratio) : o.min_ratio;
    max_ratio = groups > 0 ? std::max(max_ratio, o.max_ratio) : o.max_ratio;
  }
  searched += o.searched;
  skipped += o.skipped;
  sum_ratio += o.sum_ratio;
  groups += o.groups;
}

std::string WeightSearchStats::Summary(std::string_view method, const WeightSearchOptions& o) const {
  std::string s = fmt::format("{}: {} weight quantizer(s) searched ({}), {} left at max", method, searched,
                              o.fp8_scale_sweep ? "FP8 scale sweep, 126 candidates"
                                                : fmt::format("multiplier search, {} candidates", o.multipliers.size()),
                              skipped);
  if (groups > 0) {
    s += fmt::format("; chosen / max amax over {} group(s): mean {:.3f}, min {:.3f}, max {:.3f}", groups,
                     sum_ratio / static_cast<double>(groups), min_ratio, max_ratio);
  }
  return s;
}

namespace {

// Ratio statistics of one searched quantizer: chosen / max amax per group.
void Record(WeightSearchStats& st, const std::vector<float>& before, const std::vector<float>& after) {
  for (size_t g = 0; g < after.size(); ++g) {
    if (!(before[g] > 0)) continue;  // all-zero groups: no ratio
    const float ratio = after[g] / before[g];
    st.sum_ratio += ratio;
    st.min_ratio = std::min(st.min_ratio, ratio);
    st.max_ratio = std::max(st.max_ratio, ratio);
    ++st.groups;
  }
}

}  // namespace

bool WeightSearchEligible(const Quantizer& q, const WeightSearchOptions& o) {
  if (q.role != QuantizerRole::kWeight || !q.NeedsCalibration() || q.sequential() || !q.has_amax) return false;
  if (!o.fp8_scale_sweep) return true;
  return q.spec().IsNvfp4Static() && q.global_amax.has_value();
}

WeightSearchStats SearchLayerWeightAmax(const Model& model, QuantState& state, int layer, const WeightSearchOptions& o,
                                        const HostQuantKernels* kernels,
                                        const std::function<const AmaxSearchMetric*(int module)>& metric_for) {
  WeightSearchStats st;
  st.min_ratio = std::numeric_limits<float>::infinity();
  st.max_ratio = 0;
  const auto& modules = model.modules();
  for (int m : model.linear_modules()) {
    const ModuleInfo& info = modules[static_cast<size_t>(m)];
    if (info.layer != layer) continue;
    Quantizer* q = state.Get(m, QuantizerRole::kWeight);
    if (q == nullptr || !q->enabled()) continue;
    if (!WeightSearchEligible(*q, o)) {
      ++st.skipped;
      continue;
    }
    const QuantSpec spec = q->spec();
    const AmaxSearchMetric* metric = metric_for ? metric_for(m) : nullptr;
    const std::string what = info.name + ".weight";
    std::optional<std::vector<int32_t>> device_index;
    if (o.fp8_scale_sweep && metric == nullptr && o.device_sweep) {
      const std::vector<int64_t> shape = {info.out_features, info.in_features};
      const QdqPlan plan = MakeQdqPlan(spec, shape, what);
      if (plan.extent[0] == 1 && plan.extent[1] == 16) {
        device_index = o.device_sweep(m, Fp8SweepBlockScales(*q->global_amax, spec.block->four_over_six));
      }
    }
    if (device_index) {
      QF_ASSERT(device_index->size() == q->amax.size(), "{}: the device sweep chose {} blocks, the amax has {}", what,
                device_index->size(), q->amax.size());
      const std::vector<float> c = Fp8ScaleCandidates();
      std::vector<float> amax(q->amax.size());
      for (size_t g = 0; g < amax.size(); ++g) amax[g] = *q->global_amax * c[static_cast<size_t>((*device_index)[g])];
      Record(st, q->amax, amax);
      q->amax = std::move(amax);
      ++st.searched;
      continue;
    }
    const Tensor w = model.LinearWeight(m);
    AmaxSearchResult r = o.fp8_scale_sweep
                             ? SearchAmaxFp8Sweep(spec, w.span<float>(), w.shape(), q->amax, *q->global_amax, metric,
                                                  what, kernels)
                             : SearchAmaxMultiplier(spec, w.span<float>(), w.shape(), q->amax, q->global_amax,
                                                    o.multipliers, metric, what, kernels);
    Record(st, q->amax, r.amax);
    q->amax = std::move(r.amax);  // same shape, AmaxShape order
    ++st.searched;
  }
  if (st.groups == 0) st.min_ratio = st.max_ratio = 0;
  return st;
}

}  // namespace qforge
