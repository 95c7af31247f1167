// GPTQ's weight update of one Linear (spec §6.9), on the host: the damped inverse Hessian's upper Cholesky
// factor (LAPACK, fp32 as ModelOpt computes it) and the blockwise column update with the weight quantizer's
// fixed scales from the max step. The Hessians come from calib/local_hessian.h's capture (full rows, after
// the input quantizer); the algorithm itself is calib/algo_gptq.cc.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qforge/numerics/qdq.h"
#include "qforge/numerics/quant_kernels.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

struct GptqOptions {
  double perc_damp = 0.01;  // of the mean Hessian diagonal, added to the diagonal
  int64_t block_size = 128;  // columns per block of the update
  // qforge extension (GPTQModel / llm-compressor's act_order): columns in order of decreasing Hessian
  // diagonal instead of 0, 1, 2, ... The quantization groups and their scales stay the columns' own.
  bool act_order = false;
};

struct GptqStats {
  int64_t dead_columns = 0;        // input columns whose weights are all zero (their Hessian row set to e_j)
  bool identity_fallback = false;  // the damped Hessian was not positive definite: Hinv = I (ModelOpt's fallback)
  // ModelOpt's logged "relative MSE": mean((dW H) ∘ dW) / (mean((W H) ∘ W) + 1e-6), dW = W_new − W (over at most
  // 256 evenly spaced rows of a larger weight: an estimate there).
  double relative_error = 0;
};

// One column of a weight [rows, cols] quantized the way the weight quantizer `q` quantizes the whole matrix
// with its calibrated amax (FakeQuant with q's amax and global amax): static specs (integer, FP8, static
// NVFP4; per tensor, per channel or in blocks) quantize each element with its own group's fixed scale, so a
// column alone suffices (quantized as a [rows, 1] tensor with the column's group amax); dynamic-block specs (NVFP4 dynamic, MX: scales from the block's current values)
// quantize the aligned block of columns around it. Dynamic per-tensor / per-channel specs (scales from the
// whole current matrix) are refused by name.
class WeightColumnQuantizer {
 public:
  WeightColumnQuantizer(const Quantizer& q, int64_t rows, int64_t cols, const HostQuantKernels* kernels = nullptr);
  // The columns [c0, c0 + width) the quantized column c depends on (width 1 for static specs).
  std::pair<int64_t, int64_t> Span(int64_t c) const;
  // Column c quantized: `region` holds the current values of the columns Span(c) ([rows, width] row-major),
  // `out` gets rows values.
  void Quantize(int64_t c, std::span<const float> region, std::span<float> out) const;

 private:
  QuantSpec spec_;
  std::string what_;
  int64_t rows_, cols_;
  bool dynamic_block_ = false;
  int64_t block_ = 1;                  // dynamic blocks: the block width along the columns
  std::vector<float> amax_;            // the quantizer's amax (AmaxShape order)
  std::optional<float> global_amax_;
  int64_t col_extent_ = 1, col_groups_ = 1, row_groups_ = 1;  // static: the group grid
  const HostQuantKernels* kernels_;
};

// The upper Cholesky factor U of the inverse of the damped Hessian (row-major [n, n], zero below the
// diagonal): dead columns (all-zero weight columns) get H's row and column zeroed and a 1 on the diagonal,
// then perc_damp · mean(diag H) is added to the diagonal; U = chol_upper(inverse(H)) in fp32. The identity
// when H is not positive definite. `dead` lists the dead columns.
std::vector<float> GptqInverseHessianFactor(std::span<const float> hessian, int64_t n, double perc_damp,
                                            std::span<const int64_t> dead, bool* identity_fallback);

// GPTQ of weight w [rows, cols] (row-major, updated in place with fake-quantized values) given its Hessian
// H = (2 / tokens) Σ x xᵀ ([cols, cols] row-major, fp32).
GptqStats GptqUpdate(std::span<float> w, int64_t rows, int64_t cols, std::span<const float> hessian,
                     const WeightColumnQuantizer& quantizer, const GptqOptions& options);

}  // namespace qforge
