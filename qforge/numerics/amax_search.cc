// Amax search by quantization error (spec §6.3): candidates, per-group losses, first minimum.
#include "qforge/numerics/amax_search.h"

#include <cmath>
#include <limits>

#include "qforge/base/error.h"
#include "qforge/numerics/layout.h"
#include "qforge/numerics/qdq.h"

namespace qforge {

std::vector<float> MseMultipliers(double start, double stop, double step) {
  QF_ASSERT(start > 0 && stop > 0 && step > 0, "MSE multipliers need positive start, stop and step");
  const double steps_d = std::ceil((stop - start) / step) + 1;
  QF_CHECK(steps_d >= 1 && steps_d <= 1e6, "mse: ceil((stop_multiplier - start_multiplier) / step_size) + 1 = {} "
           "candidates (start {}, stop {}, step {}); expected between 1 and 1e6", steps_d, start, stop, step);
  const int64_t n = static_cast<int64_t>(steps_d);
  // torch.linspace in the output dtype (fp32), as its CUDA and vectorized CPU kernels compute it: start and
  // end cast first, one fp32 step, the lower half counted up from start and the upper half down from end,
  // each value one fused multiply-add (a single rounding; a separate product and sum differ in 4 of the 39
  // default multipliers).
  const float s = static_cast<float>(start), e = static_cast<float>(stop);
  std::vector<float> m(static_cast<size_t>(n));
  if (n == 1) {
    m[0] = s;
    return m;
  }
  const float d = (e - s) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  for (int64_t i = 0; i < n; ++i) {
    m[static_cast<size_t>(i)] = i < halfway ? std::fma(d, static_cast<float>(i), s)
                                            : std::fma(-d, static_cast<float>(n - i - 1), e);
  }
  return m;
}

std::vector<float> Fp8ScaleCandidates() {
  std::vector<float> c;
  for (uint32_t code = 0x01; code <= 0x7E; ++code) c.push_back(DecodeE4M3(static_cast<uint8_t>(code)) / 448.0f);
  return c;
}

namespace {

// Calls add(group, i) for every element i of `shape` (AmaxShape order of the spec's groups).
template <typename Add>
void ForEachGroupElement(const QuantSpec& spec, std::span<const int64_t> shape, size_t n_elements, size_t n_losses,
                         std::string_view what, Add add) {
  const std::optional<std::vector<int64_t>> amax_shape = AmaxShape(spec, shape);
  QF_CHECK(amax_shape.has_value(), "{}: its format has no amax to search (MX)", what);
  int64_t n_amax = 1;
  for (int64_t d : *amax_shape) n_amax *= d;
  QF_ASSERT(static_cast<int64_t>(n_losses) == n_amax, "{} losses for {} groups", n_losses, n_amax);
  if (n_amax == 1) {
    for (size_t i = 0; i < n_elements; ++i) add(0, i);
    return;
  }
  const QdqPlan plan = MakeQdqPlan(spec, shape, what);
  QF_ASSERT(plan.num_groups == n_amax, "the plan has {} groups, the amax {}", plan.num_groups, n_amax);
  QF_ASSERT(static_cast<int64_t>(n_elements) == plan.numel, "{} values for {} elements", n_elements, plan.numel);
  const size_t rank = plan.shape.size();
  // Odometer over the element index; the group index follows from idx[d] / extent[d].
  std::vector<int64_t> idx(rank, 0);
  for (size_t i = 0; i < n_elements; ++i) {
    int64_t g = 0;
    for (size_t d = 0; d < rank; ++d) g = g * plan.groups[d] + idx[d] / plan.extent[d];
    add(static_cast<size_t>(g), i);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < plan.shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void GroupSquaredError(const QuantSpec& spec, std::span<const int64_t> shape, std::span<const float> x,
                       std::span<const float> xq, std::span<double> losses, std::string_view what) {
  QF_ASSERT(x.size() == xq.size(), "GroupSquaredError: sizes differ");
  std::fill(losses.begin(), losses.end(), 0.0);
  ForEachGroupElement(spec, shape, x.size(), losses.size(), what, [&](size_t g, size_t i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(xq[i]);
    losses[g] += e * e;
  });
}

void GroupSum(const QuantSpec& spec, std::span<const int64_t> shape, std::span<const double> values,
              std::span<double> losses, std::string_view what) {
  std::fill(losses.begin(), losses.end(), 0.0);
  ForEachGroupElement(spec, shape, values.size(), losses.size(), what,
                      [&](size_t g, size_t i) { losses[g] += values[i]; });
}

namespace {

// Runs the candidates: `amax_of(k, out)` fills candidate k's amax (one value, or one per group).
template <typename AmaxOf>
AmaxSearchResult Search(const QuantSpec& spec, std::span<const float> w, std::span<const int64_t> shape,
                        int64_t n_groups, int64_t n_candidates, std::optional<float> global_amax, AmaxOf amax_of,
                        const AmaxSearchMetric* metric, std::string_view what, const HostQuantKernels* kernels) {
  AmaxSearchResult r;
  r.index.assign(static_cast<size_t>(n_groups), 0);
  std::vector<double> best(static_cast<size_t>(n_groups), std::numeric_limits<double>::infinity());
  std::vector<double> loss(static_cast<size_t>(n_groups));
  std::vector<float> xq(w.size());
  std::vector<float> amax;
  for (int64_t k = 0; k < n_candidates; ++k) {
    amax_of(k, amax);
    FakeQuant(spec, w, shape, amax, xq, global_amax, what, kernels);
    if (metric != nullptr) {
      metric->GroupLosses(w, xq, loss);
    } else {
      GroupSquaredError(spec, shape, w, xq, loss, what);
    }
    for (int64_t g = 0; g < n_groups; ++g) {
      // Strictly smaller: the first minimum wins, as torch.argmin; a NaN loss never wins.
      if (loss[static_cast<size_t>(g)] < best[static_cast<size_t>(g)]) {
        best[static_cast<size_t>(g)] = loss[static_cast<size_t>(g)];
        r.index[static_cast<size_t>(g)] = static_cast<int32_t>(k);
      }
    }
  }
  return r;
}

int64_t AmaxCount(const QuantSpec& spec, std::span<const int64_t> shape, std::string_view what) {
  const auto s = AmaxShape(spec, shape);
  QF_CHECK(s.has_value(), "{}: its format has no amax to search (MX)", what);
  int64_t n = 1;
  for (int64_t d : *s) n *= d;
  return n;
}

}  // namespace

AmaxSearchResult SearchAmaxMultiplier(const QuantSpec& spec, std::span<const float> w, std::span<const int64_t> shape,
                                      std::span<const float> initial_amax, std::optional<float> global_amax,
                                      std::span<const float> multipliers, const AmaxSearchMetric* metric,
                                      std::string_view what, const HostQuantKernels* kernels) {
  QF_CHECK(!spec.dynamic, "{}: a dynamic quantizer has no calibrated amax to search", what);
  const int64_t n = AmaxCount(spec, shape, what);
  QF_CHECK(static_cast<int64_t>(initial_amax.size()) == n, "{}: {} initial amax values for {} quantization groups",
           what, initial_amax.size(), n);
  QF_ASSERT(!multipliers.empty(), "no multipliers");
  auto amax_of = [&](int64_t k, std::vector<float>& out) {
    out.resize(initial_amax.size());
    for (size_t g = 0; g < out.size(); ++g) out[g] = initial_amax[g] * multipliers[static_cast<size_t>(k)];
  };
  AmaxSearchResult r = Search(spec, w, shape, n, static_cast<int64_t>(multipliers.size()), global_amax, amax_of,
                              metric, what, kernels);
  r.amax.resize(static_cast<size_t>(n));
  for (size_t g = 0; g < r.amax.size(); ++g) r.amax[g] = initial_amax[g] * multipliers[static_cast<size_t>(r.index[g])];
  return r;
}

namespace {

// The sweep for a [rows, cols] weight with 16-element blocks along its last dim, block by block: every
// candidate's block scale is the same for all blocks (one amax for all), so the 126 scales are computed
// once and each block tries them on its own elements. The same scalar functions as FakeQuant's static NVFP4
// path, and the same double sums in element order: the choices of the generic search exactly.
AmaxSearchResult Fp8SweepRowBlocks(const QdqPlan& plan, std::span<const float> w, float global_amax,
                                   std::span<const float> c) {
  const int64_t rows = plan.shape[0], cols = plan.shape[1];
  const int64_t nb = plan.groups[1];
  const std::vector<float> scale = Fp8SweepBlockScales(global_amax, plan.spec.block->four_over_six);
  AmaxSearchResult r;
  r.index.assign(static_cast<size_t>(rows * nb), 0);
  Nvfp4SweepRowBlocks(w.data(), rows, cols, scale, r.index.data());
  r.amax.resize(r.index.size());
  for (size_t g = 0; g < r.amax.size(); ++g) r.amax[g] = global_amax * c[static_cast<size_t>(r.index[g])];
  return r;
}

}  // namespace

std::vector<float> Fp8SweepBlockScales(float global_amax, bool four_over_six) {
  const std::vector<float> c = Fp8ScaleCandidates();
  const float fp8_norm = four_over_six ? 256.0f : 448.0f;
  std::vector<float> scale(c.size());
  for (size_t k = 0; k < c.size(); ++k) scale[k] = Nvfp4StaticBlockScale(global_amax * c[k], global_amax, fp8_norm);
  return scale;
}

void Nvfp4SweepRowBlocks(const float* w, int64_t rows, int64_t cols, std::span<const float> scale, int32_t* index) {
  const int64_t nb = (cols + 15) / 16;
#pragma omp parallel for schedule(static) if (rows * cols > (int64_t{1} << 16))
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = w + i * cols + b * 16;
      const int64_t n = std::min<int64_t>(16, cols - b * 16);
      double best = std::numeric_limits<double>::infinity();
      int32_t best_k = 0;
      for (size_t k = 0; k < scale.size(); ++k) {
        const float s = scale[k];
        double loss = 0;
        for (int64_t e = 0; e < n; ++e) {
          const float y = s == 0.0f ? 0.0f : Nvfp4QdqElement(x[e], IsFiniteF32(s) ? s : 1.0f);
          const double d = static_cast<double>(x[e]) - static_cast<double>(y);
          loss += d * d;
        }
        if (loss < best) {
          best = loss;
          best_k = static_cast<int32_t>(k);
        }
      }
      index[i * nb + b] = best_k;
    }
  }
}

AmaxSearchResult SearchAmaxFp8Sweep(const QuantSpec& spec, std::span<const float> w, std::span<const int64_t> shape,
                                    std::span<const float> initial_amax, float global_amax,
                                    const AmaxSearchMetric* metric, std::string_view what,
                                    const HostQuantKernels* kernels, bool reference) {
  QF_CHECK(spec.IsNvfp4Static(), "{}: the FP8 scale sweep applies to static NVFP4 weights only", what);
  const int64_t n = AmaxCount(spec, shape, what);
  QF_CHECK(static_cast<int64_t>(initial_amax.size()) == n, "{}: {} initial amax values for {} blocks", what,
           initial_amax.size(), n);
  const std::vector<float> c = Fp8ScaleCandidates();
  if (metric == nullptr && !reference && shape.size() == 2) {
    const QdqPlan plan = MakeQdqPlan(spec, shape, what);
    if (plan.extent[0] == 1 && plan.extent[1] == 16) return Fp8SweepRowBlocks(plan, w, global_amax, c);
  }
  // One amax for every block per candidate (FakeQuant broadcasts a single value).
  auto amax_of = [&](int64_t k, std::vector<float>& out) { out.assign(1, global_amax * c[static_cast<size_t>(k)]); };
  AmaxSearchResult r =
      Search(spec, w, shape, n, static_cast<int64_t>(c.size()), global_amax, amax_of, metric, what, kernels);
  r.amax.resize(static_cast<size_t>(n));
  for (size_t g = 0; g < r.amax.size(); ++g) r.amax[g] = global_amax * c[static_cast<size_t>(r.index[g])];
  return r;
}

}  // namespace qforge
