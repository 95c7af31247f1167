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

// x^e as torch's pow(tensor, scalar) computes it with the exponent as float32: its special cases exactly (0: 1,
// 1: x, 0.5: sqrt, 2: x·x), std::pow otherwise (torch's vectorized pow may differ from it by an ulp there).
float TorchPow(float x, float e);

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

// Smooths one Linear with a given pre_quant_scale p ([cols], f32, positive), as ModelOpt's
// apply_pre_quant_scale_and_smooth: W_ij = dtype(W_ij * (1 / p_j)) (an f32 reciprocal, an f32 product);
// pre_quant_scale = dtype(p); input_amax = dtype(max_j dtype(a_j) * p_j) from `act_amax` [cols] (0 when empty:
// a weight-only Linear). SmoothLinear is this with p = s; AWQ passes p = 1 / s.
SmoothedInput ApplyPreQuantScale(std::span<const float> pre_quant_scale, std::span<const float> act_amax,
                                 std::span<float> weight, int64_t rows, int64_t cols, DType dtype);

// One pre_quant_scale for siblings that read one input (ModelOpt's export, preprocess_linear_fusion): the
// mean of theirs, summed in f32 in the given order, divided, rounded to dtype (torch.mean of a stack).
std::vector<float> MeanPreQuantScale(std::span<const std::vector<float>* const> scales, DType dtype);

// A sibling's weight re-smoothed from pre_quant_scale `from` to `to`: W_ij = dtype(W_ij * from_j / to_j).
void ResmoothWeight(std::span<float> weight, int64_t cols, std::span<const float> from, std::span<const float> to,
                    DType dtype);

}  // namespace qforge
