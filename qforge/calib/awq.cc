// AWQ's per-Linear math (awq.h).
#include "qforge/calib/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "qforge/base/error.h"
#include "qforge/calib/smoothquant.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

float Round(DType dtype, float v) {
  RoundToDType(dtype, std::span<float>(&v, 1));
  return v;
}

// torch.finfo(dtype).tiny: the smallest normal number.
float Tiny(DType dtype) { return dtype == DType::kF16 ? 0x1p-14f : 0x1p-126f; }

}  // namespace

std::vector<float> AwqAlphaGrid(double step) {
  QF_CHECK(step > 0 && step <= 1, "awq alpha_step must be in (0, 1], got {}", step);
  const auto n = static_cast<int64_t>(std::ceil((1.0 + step) / step));
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<float>(static_cast<double>(i) * step));
  return out;
}

std::vector<double> AwqClipRatios(double min_ratio, double step) {
  QF_CHECK(min_ratio > 0 && min_ratio < 1, "awq min_clip_ratio must be in (0, 1), got {}", min_ratio);
  QF_CHECK(step > 0 && step <= 1, "awq shrink_step must be in (0, 1], got {}", step);
  const auto n = static_cast<int64_t>(std::ceil((1.0 - min_ratio) / step));
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) {
    const float k = static_cast<float>(min_ratio + static_cast<double>(i) * step);
    out.push_back(std::nearbyint(static_cast<double>(k) * 100.0) / 100.0);  // Python's round(k, 2)
  }
  out.push_back(1.0);
  return out;
}

std::vector<float> AwqWeightScale(std::span<const float> w, int64_t rows, int64_t cols, int64_t block, DType dtype) {
  QF_ASSERT(static_cast<int64_t>(w.size()) == rows * cols && rows > 0, "AwqWeightScale: {} values for [{}, {}]",
            w.size(), rows, cols);
  const int64_t b = block > 0 ? block : cols;
  const float tiny = Tiny(dtype);
  std::vector<double> sum(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    for (int64_t j0 = 0; j0 < cols; j0 += b) {
      const int64_t j1 = std::min(cols, j0 + b);
      float m = 0;
      for (int64_t j = j0; j < j1; ++j) m = std::max(m, std::fabs(row[j]));
      const float d = Round(dtype, m + tiny);
      for (int64_t j = j0; j < j1; ++j) sum[j] += static_cast<double>(Round(dtype, std::fabs(row[j]) / d));
    }
  }
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) out[j] = Round(dtype, static_cast<float>(sum[j] / static_cast<double>(rows)));
  return out;
}

void AccumulateAwqActScale(std::span<const float> x, int64_t rows, int64_t cols, DType dtype, std::span<float> acc) {
  QF_ASSERT(static_cast<int64_t>(x.size()) == rows * cols && static_cast<int64_t>(acc.size()) == cols && rows > 0,
            "AccumulateAwqActScale: {} values for [{}, {}], {} accumulators", x.size(), rows, cols, acc.size());
  std::vector<double> sum(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    for (int64_t j = 0; j < cols; ++j) sum[j] += std::fabs(row[j]);
  }
  for (int64_t j = 0; j < cols; ++j) acc[j] += Round(dtype, static_cast<float>(sum[j] / static_cast<double>(rows)));
}

std::vector<float> AwqScale(std::span<const float> act_scale, std::span<const float> weight_scale, float alpha) {
  QF_ASSERT(act_scale.size() == weight_scale.size() && !act_scale.empty(), "AwqScale: {} and {} channels",
            act_scale.size(), weight_scale.size());
  // torch: 1 - alpha in double (alpha is a Python float holding a float32), the exponent used as float32.
  const auto beta = static_cast<float>(1.0 - static_cast<double>(alpha));
  std::vector<float> s(act_scale.size());
  for (size_t j = 0; j < s.size(); ++j) {
    s[j] = std::clamp(TorchPow(act_scale[j], alpha) / (TorchPow(weight_scale[j], beta) + 0x1p-126f), 1e-4f, 1e4f);
  }
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*hi * *lo);
  for (float& v : s) v /= norm;
  return s;
}

void AccumulateGram(std::span<const float> x, int64_t rows, int64_t cols, float weight, std::span<float> g) {
  QF_ASSERT(static_cast<int64_t>(x.size()) == rows * cols && static_cast<int64_t>(g.size()) == cols * cols,
            "AccumulateGram: {} values for [{}, {}], Gram of {}", x.size(), rows, cols, g.size());
  if (rows == 0) return;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols), static_cast<int>(rows), weight, x.data(),
              static_cast<int>(cols), 1.0f, g.data(), static_cast<int>(cols));
}

void AccumulateBlockGram(std::span<const float> x, int64_t rows, int64_t cols, int64_t block, float weight,
                         std::span<float> g) {
  const int64_t nb = (cols + block - 1) / block;
  QF_ASSERT(static_cast<int64_t>(x.size()) == rows * cols && static_cast<int64_t>(g.size()) == nb * block * block,
            "AccumulateBlockGram: {} values for [{}, {}], block {}, Gram of {}", x.size(), rows, cols, block, g.size());
  if (rows == 0) return;
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t c0 = j * block, w = std::min(block, cols - c0);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(w), static_cast<int>(rows), weight,
                x.data() + c0, static_cast<int>(cols), 1.0f, g.data() + j * block * block, static_cast<int>(block));
  }
}

double AwqGramLoss(std::span<const float> d, int64_t rows, int64_t cols, std::span<const float> g) {
  QF_ASSERT(static_cast<int64_t>(d.size()) == rows * cols && static_cast<int64_t>(g.size()) == cols * cols,
            "AwqGramLoss: {} values for [{}, {}], Gram of {}", d.size(), rows, cols, g.size());
  std::vector<float> t(d.size());  // d · G, G symmetric from its upper triangle
  cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(rows), static_cast<int>(cols), 1.0f, g.data(),
              static_cast<int>(cols), d.data(), static_cast<int>(cols), 0.0f, t.data(), static_cast<int>(cols));
  double sum = 0;
  for (size_t i = 0; i < d.size(); ++i) sum += static_cast<double>(t[i]) * d[i];
  return sum;
}

void AccumulateAwqBlockGramLoss(std::span<const float> d, int64_t rows, int64_t cols, int64_t block,
                                std::span<const float> g, std::span<float> loss) {
  const int64_t nb = (cols + block - 1) / block;
  QF_ASSERT(static_cast<int64_t>(d.size()) == rows * cols && static_cast<int64_t>(g.size()) == nb * block * block &&
                static_cast<int64_t>(loss.size()) == rows * nb,
            "AccumulateAwqBlockGramLoss: d {} for [{}, {}], block {}, Gram {}, loss {}", d.size(), rows, cols, block,
            g.size(), loss.size());
#pragma omp parallel for schedule(static) if (rows * cols * block > (int64_t{1} << 20))
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t c0 = j * block, w = std::min(block, cols - c0);
      const float* dv = d.data() + r * cols + c0;
      const float* gj = g.data() + j * block * block;
      double q = 0;
      for (int64_t a = 0; a < w; ++a) {
        double row = static_cast<double>(gj[a * block + a]) * dv[a] * 0.5;  // the diagonal once (doubled below)
        for (int64_t c = a + 1; c < w; ++c) row += static_cast<double>(gj[a * block + c]) * dv[c];
        q += 2.0 * dv[a] * row;
      }
      loss[r * nb + j] += static_cast<float>(q);
    }
  }
}

std::vector<int64_t> AwqClipTokenRows(int64_t n, int64_t max_tokens) {
  QF_ASSERT(max_tokens > 0, "AwqClipTokenRows: max_tokens {}", max_tokens);
  const int64_t k = std::max<int64_t>(1, n / max_tokens);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; i += k) out.push_back(i);
  return out;
}

}  // namespace qforge
