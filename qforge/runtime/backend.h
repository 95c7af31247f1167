// The compute interface the forward pass and calibration run on: only the ops a decoder LLM needs.
//
// Every op works on dense, row-major fp32 arrays that the backend can address (host memory for the CPU
// backend; device memory for a future CUDA backend). Shapes are given explicitly in elements; no op
// allocates or keeps a pointer after it returns. Ops are synchronous. Unless stated, outputs must not
// alias inputs. A backend object is stateless between calls and may be used from one thread at a time
// (ops parallelize internally).
//
// Layout names used below:
//   tokens-major  [batch, seq, heads, head_dim] == [batch*seq, heads*head_dim]: what a Linear produces.
//   heads-major   [batch, heads, seq, head_dim]: what RoPE, the KV-cache quantizers and attention use.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

namespace qforge {

class Backend {
 public:
  virtual ~Backend() = default;

  // Short name for logs and benchmarks ("cpu").
  virtual std::string_view name() const = 0;

  // y[m, n] = x[m, k] · w[n, k]^T (+ bias[n] if bias != nullptr), plus the old y when `accumulate`.
  // `w` is a Linear's weight as stored by HF ([out_features, in_features]). `ldy` is the row stride of y
  // in elements (0 = n), so a GEMM may write into a column slice of a wider matrix.
  virtual void Gemm(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                    bool accumulate, int64_t ldy = 0) = 0;

  // y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:] for r < rows; x, y: [rows, dim],
  // weight: [dim]. y may equal x (in place). Matches HF LlamaRMSNorm in fp32.
  virtual void RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) = 0;

  // Rotary position embedding, in place, on heads-major x [batch, heads, seq, head_dim] (head_dim even),
  // HF "rotate_half" convention: element i pairs with i + head_dim/2. cos, sin: [seq, head_dim/2], the
  // table for positions 0..seq-1 (every sequence of the batch starts at position 0), already multiplied
  // by the rope attention factor. For i < d/2: x'[i] = x[i]·cos[i] − x[i+d/2]·sin[i],
  // x'[i+d/2] = x[i+d/2]·cos[i] + x[i]·sin[i].
  virtual void Rope(float* x, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, const float* cos,
                    const float* sin) = 0;

  // Causal grouped-query attention. q: heads-major [batch, heads, seq, head_dim]; k, v: heads-major
  // [batch, kv_heads, seq, head_dim], heads % kv_heads == 0, query head h reads kv head
  // h / (heads / kv_heads). out: tokens-major [batch, seq, heads, head_dim], ready for o_proj.
  // out[b, i, h] = Σ_{j ≤ i} softmax_j(scale · q[b,h,i]·k[b,g,j]) · v[b,g,j], softmax in fp32.
  virtual void CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch, int64_t heads,
                               int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) = 0;

  // The two halves of CausalAttention, for callers that must see or change the probabilities (the
  // softmax-P / p_bmm quantizer). probs: [batch, heads, seq, seq]; probs[b,h,i,j] =
  // softmax_{j ≤ i}(scale · q[b,h,i]·k[b,g,j]) and 0 for j > i. Same q, k layouts as CausalAttention.
  virtual void CausalAttentionProbs(const float* q, const float* k, float* probs, int64_t batch, int64_t heads,
                                    int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) = 0;
  // out[b, i, h] = Σ_j probs[b,h,i,j] · v[b,g,j]; v heads-major [batch, kv_heads, seq, head_dim], out
  // tokens-major [batch, seq, heads, head_dim]. Apply(Probs(q, k), v) equals CausalAttention(q, k, v).
  virtual void AttentionApply(const float* probs, const float* v, float* out, int64_t batch, int64_t heads,
                              int64_t kv_heads, int64_t seq, int64_t head_dim) = 0;

  // Row softmax in place on x [rows, cols].
  virtual void Softmax(float* x, int64_t rows, int64_t cols) = 0;

  // out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(−gate[i])) · up[i], i < n (gated MLP). out may
  // equal gate or up.
  virtual void SiluMul(const float* gate, const float* up, float* out, int64_t n) = 0;

  // y[i] += x[i], i < n.
  virtual void Add(float* y, const float* x, int64_t n) = 0;

  // Transposes the two middle axes: x [a, b, c, d] -> y [a, c, b, d] (tokens-major <-> heads-major).
  virtual void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) = 0;

  // MoE routing, one row per token. logits: [tokens, experts] router outputs. Softmax over the experts,
  // then the top_k largest probabilities (ties to the lower expert index, like torch.topk), renormalized
  // to sum to 1 when `renormalize`. expert_ids, weights: [tokens, top_k], in decreasing probability.
  virtual void TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                           int32_t* expert_ids, float* weights) = 0;

  // x[r, :] *= sigmoid(gate_logits[r]) for r < rows; x: [rows, cols], gate_logits: [rows] (Qwen2-MoE
  // shared_expert_gate).
  virtual void SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) = 0;

  // out[r, :] = x[rows_idx[r], :] for r < rows; x: [*, dim], out: [rows, dim].
  virtual void GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) = 0;

  // y[rows_idx[r], :] += row_weights[r] · x[r, :] for r < rows; x: [rows, dim]. Rows in rows_idx must be
  // distinct within one call.
  virtual void ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y, int64_t rows,
                              int64_t dim) = 0;

  // max |x[i]| over i < n (0 for n == 0; NaN if any element is NaN).
  virtual float Amax(const float* x, int64_t n) = 0;

  // Per-row cross entropy: nll[r] = logsumexp(logits[r, :]) − logits[r, targets[r]], r < rows;
  // logits: [rows, vocab], targets in [0, vocab). Accumulated in double.
  virtual void CrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows, int64_t vocab) = 0;
};

// The process-wide CPU backend (runtime/cpu/cpu_backend.h: OpenBLAS sgemm, OpenMP loops); thread count
// follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS.
Backend& DefaultCpuBackend();

}  // namespace qforge
