// Launchers of the CUDA backend's kernels (the *.cu files beside this one), for cuda_backend.cc.
//
// Plain C++17 so that nvcc compiles it too: raw device pointers, element counts, a stream. Every launcher
// only enqueues work on `stream` (nothing waits) and returns the launch status (cudaGetLastError), which
// the caller turns into an error naming the op. Shapes are the Backend op's (runtime/backend.h); the
// caller has checked them. Arrays are dense row-major fp32 unless stated.
//
// `round_bf16` (ComputeDType::kBF16): every floating output is rounded to bf16 (RNE) as the kernel's
// last step, so it holds a bf16 value in an fp32 slot; all arithmetic before it is fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qforge::cuda {

// cudaSuccess iff this binary holds kernels the current device can run (else, e.g.,
// cudaErrorNoKernelImageForDevice: the build's CMAKE_CUDA_ARCHITECTURES does not cover the GPU).
cudaError_t ProbeKernelImage();

// x[i] = bf16(x[i]) in place, i < n.
cudaError_t LaunchRoundBf16(float* x, int64_t n, cudaStream_t stream);
// y[i] = bf16 bits of x[i] (RNE), i < n: GEMM operands in kBF16 mode.
cudaError_t LaunchF32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] (bf16) widened to f32.
cudaError_t LaunchBf16ToF32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);

// The GEMM epilogue: y[r, j] += bias[j] (bias may be null), then bf16 rounding if round_bf16; r < m,
// j < n, row stride ldy.
cudaError_t LaunchBiasRound(float* y, const float* bias, int64_t m, int64_t n, int64_t ldy, bool round_bf16,
                            cudaStream_t stream);

// Backend::RmsNorm (one block per row; y may equal x).
cudaError_t LaunchRmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
                          bool round_bf16, cudaStream_t stream);
// Backend::Rope on x [rows = batch*heads, seq, head_dim] (head_dim even).
cudaError_t LaunchRope(float* x, int64_t rows, int64_t seq, int64_t head_dim, const float* cos, const float* sin,
                       bool round_bf16, cudaStream_t stream);
// Backend::RopeToHeads: x tokens-major [batch, seq, heads, head_dim] -> y heads-major, RoPE applied.
cudaError_t LaunchRopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                              const float* cos, const float* sin, bool round_bf16, cudaStream_t stream);
// Backend::SiluMul, Add (y += x), SwapMiddleAxes, Softmax, SigmoidScaleRows, GatherRows, ScatterAddRows.
cudaError_t LaunchSiluMul(const float* gate, const float* up, float* out, int64_t n, bool round_bf16,
                          cudaStream_t stream);
// SiluMul in kBF16 mode of bf16 gate / up (bits), exactly SiluMul on their f32 widenings, into f32 out.
cudaError_t LaunchSiluMulBf16(const uint16_t* gate, const uint16_t* up, float* out, int64_t n, cudaStream_t stream);
// Backend::GatedMlp's middle in kBF16 mode: h = SiluMul(gate, up) as bf16 bits, max |h| folded into *amax
// when amax is not null (as LaunchAmaxFold).
cudaError_t LaunchSiluMulToBf16(const uint16_t* gate, const uint16_t* up, uint16_t* h, int64_t n, uint32_t* amax,
                                cudaStream_t stream);
cudaError_t LaunchAdd(float* y, const float* x, int64_t n, bool round_bf16, cudaStream_t stream);
cudaError_t LaunchSwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d,
                                 bool round_bf16, cudaStream_t stream);
cudaError_t LaunchSoftmax(float* x, int64_t rows, int64_t cols, bool round_bf16, cudaStream_t stream);
cudaError_t LaunchSigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols, bool round_bf16,
                                   cudaStream_t stream);
cudaError_t LaunchScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols, bool round_bf16,
                               cudaStream_t stream);
cudaError_t LaunchGatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim,
                             bool round_bf16, cudaStream_t stream);
cudaError_t LaunchScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y,
                                 int64_t rows, int64_t dim, bool round_bf16, cudaStream_t stream);

// Backend::EmbedRows; table_kind: 0 = F32, 1 = F16, 2 = BF16 elements.
enum EmbedTableKind : int { kEmbedF32 = 0, kEmbedF16 = 1, kEmbedBf16 = 2 };
cudaError_t LaunchEmbedRows(const void* table, int table_kind, const int32_t* ids, float* out, int64_t rows,
                            int64_t dim, bool round_bf16, cudaStream_t stream);

// Stored 16-bit weights (UploadWeightStored) to the compute dtype: x[i] holds F16 or BF16 bits (kind
// kEmbedF16 / kEmbedBf16), converted exactly to f32 into out_f32[i], or, when out_f32 is null, rounded
// from that f32 to bf16 bits (RNE) into out_bf16[i]; i < n.
cudaError_t LaunchConvertHalf(const uint16_t* x, int kind, int64_t n, float* out_f32, uint16_t* out_bf16,
                              cudaStream_t stream);

// Backend::TopKRouting: one warp per token, the expert probabilities in shared memory. experts <=
// kMaxRoutingExperts.
inline constexpr int64_t kMaxRoutingExperts = 8192;
cudaError_t LaunchTopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                              int32_t* expert_ids, float* weights, bool round_bf16, cudaStream_t stream);

// Backend::GroupRowsByExpert as a device counting sort over n = tokens*top_k pairs, stable in pair order
// (= token order, an expert appears at most once per token). `scratch` holds GroupRowsScratchInts(n,
// experts) int32; `offsets` (device) receives experts + 2 int32: the experts + 1 offsets, then an error
// flag that is nonzero if some expert id was outside [0, experts). experts <= kMaxGroupExperts.
inline constexpr int64_t kMaxGroupExperts = 8192;
int64_t GroupRowsScratchInts(int64_t n, int64_t experts);
cudaError_t LaunchGroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t n, int top_k,
                                    int64_t experts, int32_t* rows, float* weights, int32_t* scratch,
                                    int32_t* offsets, bool round_bf16, cudaStream_t stream);

// Backend::Amax: *result (device, one uint32) = the largest bit pattern of |x[i]| (0 for n == 0), which is
// the float max |x| and above 0x7F800000 iff some x[i] is NaN.
cudaError_t LaunchAmax(const float* x, int64_t n, uint32_t* result, cudaStream_t stream);
// Backend::AmaxFold: LaunchAmax without zeroing *result first (its old value takes part in the max).
cudaError_t LaunchAmaxFold(const float* x, int64_t n, uint32_t* result, cudaStream_t stream);

// Backend::CrossEntropy into nll (device, rows doubles); sums of exponentials in double.
cudaError_t LaunchCrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows,
                               int64_t vocab, cudaStream_t stream);

// The softmax half of CausalAttentionProbs: probs [rows, seq] holds scaled scores, row r is query
// i = r % seq; in place, softmax over columns j <= i and 0 for j > i.
cudaError_t LaunchCausalSoftmax(float* probs, int64_t rows, int64_t seq, bool round_bf16, cudaStream_t stream);

// Backend::CausalAttention, flash style: online softmax in fp32, K/V tiles in shared memory, no scores
// in global memory. With use_bf16_mma (kBF16 mode: q, k, v hold bf16 values) and head_dim 64/128/256,
// the products run on bf16 tensor cores (fp32 accumulation, probabilities rounded to bf16 for P·V, as
// torch's bf16 attention does); otherwise, for any head_dim <= kMaxAttentionHeadDim, in fp32 FMAs.
// `smem_optin` is the device's largest dynamic shared memory per block (bytes).
inline constexpr int64_t kMaxAttentionHeadDim = 512;
// Dynamic shared memory the fp32 kernel needs for head_dim (bytes), for the caller's check.
int64_t AttentionSmemBytes(int64_t head_dim);
cudaError_t LaunchCausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch,
                                  int64_t heads, int64_t kv_heads, int64_t seq, int64_t head_dim, float scale,
                                  bool use_bf16_mma, bool round_bf16, cudaStream_t stream);

}  // namespace qforge::cuda
