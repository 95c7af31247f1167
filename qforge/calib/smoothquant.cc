// SmoothQuant's per-Linear math (smoothquant.h).
#include "qforge/calib/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "qforge/base/error.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

float Round(DType dtype, float v) {
  RoundToDType(dtype, std::span<float>(&v, 1));
  return v;
}

}  // namespace

float TorchPow(float x, float e) {
  if (e == 0.0f) return 1.0f;
  if (e == 1.0f) return x;
  if (e == 0.5f) return std::sqrt(x);
  if (e == 2.0f) return x * x;
  return std::pow(x, e);
}

SmoothedInput SmoothLinear(std::span<const float> act_amax, std::span<float> weight, int64_t rows, int64_t cols,
                           double alpha, DType dtype, std::string_view what) {
  QF_ASSERT(static_cast<int64_t>(act_amax.size()) == cols && static_cast<int64_t>(weight.size()) == rows * cols,
            "SmoothLinear({}): {} amax and {} weights for [{}, {}]", what, act_amax.size(), weight.size(), rows, cols);
  // w_j = max_i |W_ij| over the output rows (exact in the weight's dtype).
  std::vector<float> wmax(static_cast<size_t>(cols), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) wmax[j] = std::max(wmax[j], std::fabs(weight[r * cols + j]));
  }
  // torch: weight_scale.pow(1 - alpha) stays in the weight's dtype; the quotient by the fp32 act_amax.pow(alpha)
  // is fp32.
  std::vector<float> s(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) s[j] = Round(dtype, TorchPow(wmax[j], static_cast<float>(1.0 - alpha))) /
                                              TorchPow(act_amax[j], static_cast<float>(alpha));
  constexpr float kEpsilon = 1.0f / static_cast<float>(1u << 31);
  if (*std::min_element(s.begin(), s.end()) <= kEpsilon) {
    for (int64_t j = 0; j < cols; ++j) {
      if (act_amax[j] <= kEpsilon) s[j] = 1.0f;
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    QF_CHECK(!std::isnan(s[j]), "smoothquant: '{}' input channel {} has amax {} and weight column max {}: its "
             "smoothing scale is undefined", what, j, act_amax[j], wmax[j]);
    s[j] = std::clamp(s[j], 1e-4f, 1e4f);
  }
  return ApplyPreQuantScale(s, act_amax, weight, rows, cols, dtype);
}

SmoothedInput ApplyPreQuantScale(std::span<const float> pre_quant_scale, std::span<const float> act_amax,
                                 std::span<float> weight, int64_t rows, int64_t cols, DType dtype) {
  QF_ASSERT(static_cast<int64_t>(pre_quant_scale.size()) == cols && static_cast<int64_t>(weight.size()) == rows * cols &&
                (act_amax.empty() || static_cast<int64_t>(act_amax.size()) == cols),
            "ApplyPreQuantScale: {} scales, {} amax and {} weights for [{}, {}]", pre_quant_scale.size(),
            act_amax.size(), weight.size(), rows, cols);
  // The weight's columns times 1 / p_j (an f32 reciprocal, an f32 product), in its dtype.
  std::vector<float> inv(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) inv[j] = 1.0f / pre_quant_scale[j];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) weight[r * cols + j] *= inv[j];
  }
  RoundToDType(dtype, weight);
  SmoothedInput out;
  for (size_t j = 0; j < act_amax.size(); ++j) {
    out.input_amax = std::max(out.input_amax, Round(dtype, act_amax[j]) * pre_quant_scale[j]);
  }
  out.input_amax = Round(dtype, out.input_amax);
  out.pre_quant_scale.assign(pre_quant_scale.begin(), pre_quant_scale.end());
  RoundToDType(dtype, out.pre_quant_scale);
  return out;
}

std::vector<float> MeanPreQuantScale(std::span<const std::vector<float>* const> scales, DType dtype) {
  QF_ASSERT(!scales.empty(), "MeanPreQuantScale of no scales");
  std::vector<float> mean(scales[0]->size(), 0.0f);
  for (const std::vector<float>* p : scales) {
    QF_ASSERT(p->size() == mean.size(), "siblings with pre_quant_scale of {} and {} values", p->size(), mean.size());
    for (size_t j = 0; j < mean.size(); ++j) mean[j] += (*p)[j];
  }
  for (float& v : mean) v /= static_cast<float>(scales.size());
  RoundToDType(dtype, mean);
  return mean;
}

void ResmoothWeight(std::span<float> weight, int64_t cols, std::span<const float> from, std::span<const float> to,
                    DType dtype) {
  QF_ASSERT(static_cast<int64_t>(from.size()) == cols && static_cast<int64_t>(to.size()) == cols &&
                static_cast<int64_t>(weight.size()) % cols == 0,
            "ResmoothWeight: {} weights, {} columns, {} -> {} scales", weight.size(), cols, from.size(), to.size());
  for (size_t i = 0; i < weight.size(); ++i) {
    const size_t j = i % static_cast<size_t>(cols);
    weight[i] = weight[i] * from[j] / to[j];
  }
  RoundToDType(dtype, weight);
}

}  // namespace qforge
