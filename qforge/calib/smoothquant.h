// SmoothQuant's per-Linear math (spec §6.6), as ModelOpt computes it on a model held in `dtype` (the
// checkpoint's: bf16 or f16 round where torch rounds, f32 rounds nowhere), apart from the algorithm's
// wiring (algo_smoothquant.cc) so that it can be checked against ModelOpt's own results.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "qforge/tensor/dtype.h"

namespace qforge {

struct SmoothedInput {
  std::vector<float> pre_quant_scale;  // [cols], dtype values: the input is multiplied by it
  float input_amax = 0;                // the per-tensor amax of the smoothed input, a dtype value
};

// Smooths one Linear: `act_amax` [cols] its per-input-channel amax, `weight` [rows, cols] row-major (dtype
// values as f32), divided in place column by column.
//   s_j = dtype(w_j^(1-alpha)) / a_j^alpha (f32), w_j = max_i |W_ij|;
//   when min_j s_j <= 2^-31, s_j = 1 where a_j <= 2^-31; s clamped to [1e-4, 1e4];
//   W_ij = dtype(W_ij * (1 / s_j)); pre_quant_scale = dtype(s); input_amax = dtype(max_j dtype(a_j) * s_j).
// An undefined scale (a channel with zero amax and zero weights at alpha < 1) is an error naming `what`.
SmoothedInput SmoothLinear(std::span<const float> act_amax, std::span<float> weight, int64_t rows, int64_t cols,
                           double alpha, DType dtype, std::string_view what);

// One pre_quant_scale for siblings that read one input (ModelOpt's export, preprocess_linear_fusion): the
// mean of theirs, summed in f32 in the given order, divided, rounded to dtype (torch.mean of a stack).
std::vector<float> MeanPreQuantScale(std::span<const std::vector<float>* const> scales, DType dtype);

// A sibling's weight re-smoothed from pre_quant_scale `from` to `to`: W_ij = dtype(W_ij * from_j / to_j).
void ResmoothWeight(std::span<float> weight, int64_t cols, std::span<const float> from, std::span<const float> to,
                    DType dtype);

}  // namespace qforge
