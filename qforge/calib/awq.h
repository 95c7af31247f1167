// AWQ's per-Linear math (spec §6.7), as ModelOpt computes it on a model held in a dtype (bf16 / f16 round
// where torch rounds, f32 rounds nowhere), apart from the algorithm's wiring (algo_awq.cc) so that it can be
// checked against ModelOpt's own values. Weights are [rows = out_features, cols = in_features] row-major;
// activations [tokens, cols].
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "qforge/numerics/quant_spec.h"
#include "qforge/tensor/dtype.h"

namespace qforge {

// awq_lite's alpha grid: the float32 values of torch.arange(0, 1 + step, step), i.e. float(i * step) for
// i < ceil((1 + step) / step). Its last value exceeds 1 when step does not divide 1 (0.3: ..., 0.9, 1.2), as
// in ModelOpt.
std::vector<float> AwqAlphaGrid(double step);

// awq_clip's clip ratios: round(float32(k), 2) for k in torch.arange(min_ratio, 1, step) (float32), then 1.
std::vector<double> AwqClipRatios(double min_ratio, double step);

// The weight's per-column salience w_j = mean_r |W_rj| / (max_{block of (r, j)} |W| + tiny), blocks of
// `block` columns along each row (0: the whole row; a partial last block is zero-padded), in `dtype`: the
// quotient rounded to dtype, the mean over rows accumulated in f32 and rounded to dtype, returned as f32.
// tiny is dtype's smallest normal (2^-126 for bf16 and f32, 2^-14 for f16).
std::vector<float> AwqWeightScale(std::span<const float> w, int64_t rows, int64_t cols, int64_t block, DType dtype);

// Adds one batch's mean |x_j| over its rows, rounded to `dtype` (torch's mean of a dtype tensor), to acc[j].
void AccumulateAwqActScale(std::span<const float> x, int64_t rows, int64_t cols, DType dtype, std::span<float> acc);

// The smoothing factors for `alpha` (f32): s_j = clamp(a_j^alpha / (w_j^(1 - alpha) + 2^-126), 1e-4, 1e4), then
// s / sqrt(max s · min s). The Linear then computes (x / s) · (W · s)ᵀ: its input gets pre_quant_scale 1 / s.
std::vector<float> AwqScale(std::span<const float> act_scale, std::span<const float> weight_scale, float alpha);

// mean over n of dtype(a_i − b_i)² (f32 squares, summed in double, the mean rounded to f32): the loss of one
// batch's output against its reference, as torch's (out − ref).float().pow(2).mean() on dtype tensors.
float AwqMeanSquaredError(std::span<const float> a, std::span<const float> b, DType dtype);

// awq_clip's per-block output error, added into loss [rows, ceil(cols / block)] (row-major): for the tokens of
// x [tokens, cols] (already subsampled) and every block j, o = Σ_{k in block j} x_tk w_rk against the same
// sum with the quantized weight q: loss[r, j] += mean_t (dtype(o_q) − dtype(o))², products and sums rounded
// as torch's (x · w).sum(-1) on dtype tensors (the products to dtype, the sum accumulated in f32 and rounded
// to dtype).
void AccumulateAwqBlockClipLoss(std::span<const float> x, int64_t tokens, std::span<const float> w,
                                std::span<const float> q, int64_t rows, int64_t cols, int64_t block, DType dtype,
                                std::span<float> loss);

// awq_clip's subsampling: the rows 0, k, 2k, ... of n tokens with k = max(1, n / max_tokens) (integer
// division), as inputs[0 :: k].
std::vector<int64_t> AwqClipTokenRows(int64_t n, int64_t max_tokens);

}  // namespace qforge
