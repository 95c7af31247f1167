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

// The searches' losses from Gram matrices of the inputs instead of the outputs: a batch's squared output error
// of a weight change D (its Linear then computes x · (W + D)ᵀ) is ‖X Dᵀ‖² = Σ_r D_r (XᵀX) D_rᵀ, so the sum over
// batches of each batch's mean (ModelOpt's losses, over its n_b tokens and `rows` outputs) is
// Σ_r D_r G D_rᵀ / rows with G = Σ_b X_bᵀ X_b / n_b, accumulated once, whatever the candidate: each candidate
// then costs rows · cols² instead of a pass over the tokens. (ModelOpt rounds the outputs to the model's dtype
// before it subtracts them; with f32 compute the two agree to fp32 noise.)

// g += weight · xᵀ x for x [rows, cols]; g [cols, cols] row-major, its upper triangle kept (f32, BLAS).
void AccumulateGram(std::span<const float> x, int64_t rows, int64_t cols, float weight, std::span<float> g);
// The same for each column block of `block` (the last one partial): g [nb, block, block], block j's upper triangle.
void AccumulateBlockGram(std::span<const float> x, int64_t rows, int64_t cols, int64_t block, float weight,
                         std::span<float> g);
// Σ_r d_r G d_rᵀ (double) for d [rows, cols] and G from AccumulateGram.
double AwqGramLoss(std::span<const float> d, int64_t rows, int64_t cols, std::span<const float> g);
// loss[r, j] += d_{r, j} G_j d_{r, j}ᵀ for each row r and column block j of d [rows, cols], G from
// AccumulateBlockGram: awq_clip's per-block partial-output error (loss [rows, nb]).
void AccumulateAwqBlockGramLoss(std::span<const float> d, int64_t rows, int64_t cols, int64_t block,
                                std::span<const float> g, std::span<float> loss);

// awq_clip's subsampling: the rows 0, k, 2k, ... of n tokens with k = max(1, n / max_tokens) (integer
// division), as inputs[0 :: k].
std::vector<int64_t> AwqClipTokenRows(int64_t n, int64_t max_tokens);

}  // namespace qforge
