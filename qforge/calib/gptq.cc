// GPTQ's weight update (gptq.h, spec §6.9).
#include "qforge/calib/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qforge/base/error.h"

// LAPACK from OpenBLAS (Fortran interface, column-major): Cholesky factor and the inverse from it.
extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotri_(const char* uplo, const int* n, float* a, const int* lda, int* info);
}

namespace qforge {

WeightColumnQuantizer::WeightColumnQuantizer(const Quantizer& q, int64_t rows, int64_t cols,
                                             const HostQuantKernels* kernels)
    : spec_(q.spec()), what_(q.slot.name), rows_(rows), cols_(cols), amax_(q.amax), global_amax_(q.global_amax),
      kernels_(kernels) {
  const std::vector<int64_t> shape = {rows, cols};
  const QdqPlan plan = MakeQdqPlan(spec_, shape, what_);
  if (plan.kind == QdqKind::kMx || plan.kind == QdqKind::kNvfp4Dynamic) {
    QF_CHECK(plan.block_axis == 1, "gptq: weight quantizer '{}' has dynamic blocks along axis {}; GPTQ updates "
             "input columns and needs blocks along the input axis (-1)", what_, plan.block_axis);
    dynamic_block_ = true;
    block_ = plan.block_size;
    return;
  }
  QF_CHECK(!plan.spec.dynamic,
           "gptq: weight quantizer '{}' is dynamic (its scales come from the whole current weight): GPTQ needs the "
           "fixed scales of a calibrated weight quantizer (use a static type)", what_);
  QF_CHECK(q.has_amax && !amax_.empty() && static_cast<int64_t>(amax_.size()) == plan.num_groups,
           "gptq: weight quantizer '{}' has {} amax values, expected {} from max calibration", what_, amax_.size(),
           plan.num_groups);
  col_extent_ = plan.extent[1];
  row_groups_ = plan.groups[0];
  col_groups_ = plan.groups[1];
}

std::pair<int64_t, int64_t> WeightColumnQuantizer::Span(int64_t c) const {
  QF_ASSERT(c >= 0 && c < cols_, "column {} of {}", c, cols_);
  // Static specs: an element's scale is its group's fixed one, so the column by itself. Dynamic blocks: the
  // column's aligned block, whose current values set its scales.
  if (!dynamic_block_) return {c, 1};
  const int64_t c0 = c - c % block_;
  return {c0, std::min(block_, cols_ - c0)};
}

void WeightColumnQuantizer::Quantize(int64_t c, std::span<const float> region, std::span<float> out) const {
  const auto [c0, width] = Span(c);
  QF_ASSERT(static_cast<int64_t>(region.size()) == rows_ * width && static_cast<int64_t>(out.size()) == rows_,
            "WeightColumnQuantizer: region of {} values for [{} x {}]", region.size(), rows_, width);
  const std::vector<int64_t> shape = {rows_, width};
  std::vector<float> q(region.size());
  if (dynamic_block_) {
    // NVFP4 dynamic: the calibrated per-tensor amax is the global amax; MX takes none.
    FakeQuant(spec_, region, shape, amax_, q, std::nullopt, what_, kernels_);
  } else {
    // One column [rows, 1]: its groups are the full grid's row groups at the column's group c / col_extent
    // (a block of width 1, or the kept or reduced column dim).
    std::vector<float> amax(static_cast<size_t>(row_groups_));
    const int64_t cg = col_groups_ == 1 ? 0 : c0 / col_extent_;
    for (int64_t g = 0; g < row_groups_; ++g) amax[static_cast<size_t>(g)] = amax_[static_cast<size_t>(g * col_groups_ + cg)];
    FakeQuant(spec_, region, shape, amax, q, global_amax_, what_, kernels_);
  }
  const int64_t i = c - c0;
  for (int64_t r = 0; r < rows_; ++r) out[static_cast<size_t>(r)] = q[static_cast<size_t>(r * width + i)];
}

std::vector<float> GptqInverseHessianFactor(std::span<const float> hessian, int64_t n, double perc_damp,
                                            std::span<const int64_t> dead, bool* identity_fallback) {
  QF_ASSERT(static_cast<int64_t>(hessian.size()) == n * n, "Hessian of {} values for n = {}", hessian.size(), n);
  QF_CHECK(n <= std::numeric_limits<int>::max(), "gptq: in_features {} exceeds LAPACK's int range", n);
  std::vector<float> h(hessian.begin(), hessian.end());
  for (int64_t j : dead) {
    for (int64_t k = 0; k < n; ++k) h[j * n + k] = h[k * n + j] = 0.0f;
    h[j * n + j] = 1.0f;
  }
  // mean(diag H) in fp32 as torch.mean reduces it (pairwise; fp32 noise either way), then the damping.
  double diag_sum = 0;
  for (int64_t j = 0; j < n; ++j) diag_sum += h[j * n + j];
  const float damp = static_cast<float>(perc_damp) * static_cast<float>(diag_sum / static_cast<double>(n));
  for (int64_t j = 0; j < n; ++j) h[j * n + j] += damp;
  // H is symmetric, so its row-major array is its column-major array. Lower Cholesky, inverse (lower
  // triangle), mirrored, then the upper factor of the inverse.
  const int ni = static_cast<int>(n);
  int info = 0;
  spotrf_("L", &ni, h.data(), &ni, &info);
  if (info == 0) spotri_("L", &ni, h.data(), &ni, &info);
  if (info == 0) {
    for (int64_t j = 0; j < n; ++j) {        // column-major (i, j) at i + j n; lower: i > j
      for (int64_t i = j + 1; i < n; ++i) h[j + i * n] = h[i + j * n];
    }
    spotrf_("U", &ni, h.data(), &ni, &info);
  }
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
  *identity_fallback = info != 0;
  if (info != 0) {
    for (int64_t j = 0; j < n; ++j) u[j * n + j] = 1.0f;
    return u;
  }
  // Column-major upper U(i, j), i <= j, at i + j n; row-major out[i][j].
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i <= j; ++i) u[i * n + j] = h[i + j * n];
  }
  return u;
}

namespace {

// mean((d H) ∘ d) over [rows, cols] for d = x − y (y empty: d = x) [rows, cols], H [cols, cols]:
// Σ_r d_r H d_rᵀ / (rows cols), over at most kErrorRows evenly spaced rows (all of them when there are fewer):
// the logged error is an estimate on large weights, where the exact sum would cost 2 rows cols² flops, more
// than the update.
constexpr int64_t kErrorRows = 256;
double HessianWeightedMean(std::span<const float> x, std::span<const float> y, int64_t rows, int64_t cols,
                           std::span<const float> h) {
  const int64_t step = std::max<int64_t>(1, rows / kErrorRows), n = (rows + step - 1) / step;
  std::vector<float> ds(static_cast<size_t>(n * cols)), dh(ds.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t o = i * step * cols;
    for (int64_t c = 0; c < cols; ++c) ds[i * cols + c] = y.empty() ? x[o + c] : x[o + c] - y[o + c];
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), static_cast<int>(cols),
              static_cast<int>(cols), 1.0f, ds.data(), static_cast<int>(cols), h.data(), static_cast<int>(cols), 0.0f,
              dh.data(), static_cast<int>(cols));
  double s = 0;
  for (size_t i = 0; i < ds.size(); ++i) s += static_cast<double>(dh[i]) * ds[i];
  return s / static_cast<double>(n * cols);
}

}  // namespace

GptqStats GptqUpdate(std::span<float> w, int64_t rows, int64_t cols, std::span<const float> hessian,
                     const WeightColumnQuantizer& quantizer, const GptqOptions& options) {
  QF_ASSERT(static_cast<int64_t>(w.size()) == rows * cols && static_cast<int64_t>(hessian.size()) == cols * cols,
            "GptqUpdate: weight of {} values for [{} x {}], Hessian of {}", w.size(), rows, cols, hessian.size());
  QF_CHECK(options.block_size > 0, "gptq: block_size must be > 0, got {}", options.block_size);
  GptqStats stats;
  const std::vector<float> original(w.begin(), w.end());
  std::vector<int64_t> dead;
  for (int64_t c = 0; c < cols; ++c) {
    bool zero = true;
    for (int64_t r = 0; r < rows && zero; ++r) zero = w[r * cols + c] == 0.0f;
    if (zero) dead.push_back(c);
  }
  stats.dead_columns = static_cast<int64_t>(dead.size());

  // The processing order: columns in place, or (act_order) by decreasing diag H after the dead-column rule.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (options.act_order) {
    std::vector<float> diag(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) diag[c] = hessian[c * cols + c];
    for (int64_t c : dead) diag[c] = 1.0f;
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  }
  std::vector<int64_t> inv(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) inv[perm[k]] = k;
  // The weight wp [rows, cols] (column k = original perm[k]) and Hessian in processing order: w and the
  // Hessian themselves, or (act_order) permuted copies.
  std::span<float> wp = w;
  std::span<const float> hp = hessian;
  std::vector<float> wp_permuted, hp_permuted;
  if (options.act_order) {
    wp_permuted.resize(w.size());
    hp_permuted.resize(hessian.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) wp_permuted[r * cols + k] = w[r * cols + perm[k]];
    }
    for (int64_t a = 0; a < cols; ++a) {
      for (int64_t b = 0; b < cols; ++b) hp_permuted[a * cols + b] = hessian[perm[a] * cols + perm[b]];
    }
    wp = wp_permuted;
    hp = hp_permuted;
  }
  std::vector<int64_t> dead_p;
  for (int64_t c : dead) dead_p.push_back(inv[c]);
  const std::vector<float> u = GptqInverseHessianFactor(hp, cols, options.perc_damp, dead_p, &stats.identity_fallback);

  const int64_t bs = options.block_size;
  std::vector<float> blk, err, region, q(static_cast<size_t>(rows));
  for (int64_t b0 = 0; b0 < cols; b0 += bs) {
    const int64_t b1 = std::min(b0 + bs, cols), nb = b1 - b0;
    // The block's working copy [rows, nb] and its scaled errors.
    blk.assign(static_cast<size_t>(rows * nb), 0.0f);
    err.assign(static_cast<size_t>(rows * nb), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(wp.data() + r * cols + b0, nb, blk.data() + r * nb);
    }
    // The current value of original column c: the block's copy inside it, the weight outside.
    auto current = [&](int64_t r, int64_t c) {
      const int64_t k = inv[c];
      return k >= b0 && k < b1 ? blk[r * nb + (k - b0)] : wp[r * cols + k];
    };
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t k = b0 + i, c = perm[k];
      const auto [c0, width] = quantizer.Span(c);
      region.resize(static_cast<size_t>(rows * width));
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < width; ++j) region[r * width + j] = current(r, c0 + j);
      }
      quantizer.Quantize(c, region, q);
      const float d = u[k * cols + k];
      const float* urow = u.data() + k * cols;
#pragma omp parallel for schedule(static) if (rows * (nb - i) > (int64_t{1} << 15))
      for (int64_t r = 0; r < rows; ++r) {
        float* br = blk.data() + r * nb;
        const float e = (br[i] - q[r]) / d;
        wp[r * cols + k] = q[r];
        err[r * nb + i] = e;
        for (int64_t j = i; j < nb; ++j) br[j] -= e * urow[b0 + j];
      }
    }
    // The later columns: wp[:, b1:] -= err · U[b0:b1, b1:].
    if (b1 < cols) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols - b1),
                  static_cast<int>(nb), -1.0f, err.data(), static_cast<int>(nb), u.data() + b0 * cols + b1,
                  static_cast<int>(cols), 1.0f, wp.data() + b1, static_cast<int>(cols));
    }
  }
  if (options.act_order) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < cols; ++k) w[r * cols + perm[k]] = wp[r * cols + k];
    }
  }
  const double num = HessianWeightedMean(w, original, rows, cols, hessian);
  const double den = HessianWeightedMean(original, {}, rows, cols, hessian);
  stats.relative_error = num / (den + 1e-6);
  return stats;
}

}  // namespace qforge
