// The CPU implementation of runtime/backend.h: OpenBLAS sgemm for every matrix product (Linear layers
// and the two products inside attention), OpenMP-parallel, vectorizable loops for everything else.
// OpenMP is the only thread pool: OpenBLAS is set to one thread and GEMMs are tiled across OpenMP threads.
//
// It is the reference backend: other backends are checked against it. Its memory is host memory
// (64-byte aligned), so it adopts host weights without copying and its transfer counts stay 0.
// Quantization ops (cpu_backend_quant.cc) run the SIMD kernels of quant_kernels.h, falling back to the
// scalar references of numerics/.
#pragma once

#include "qforge/runtime/backend.h"

namespace qforge {

class CpuBackend final : public Backend {
 public:
  // Makes OpenBLAS single-threaded (process-wide): OpenMP is the only thread pool, GEMMs are split across
  // OpenMP threads by rows or columns.
  CpuBackend();
  std::string_view name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  void Copy(void* dst, const void* src, int64_t bytes) override;
  void Zero(void* dst, int64_t bytes) override;
  std::pair<int64_t, int64_t> MemoryInfo() const override;
  const HostQuantKernels* host_kernels() const override;
  void Gemm(const float* x, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
            bool accumulate, int64_t ldy = 0) override;
  void RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) override;
  void Rope(float* x, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, const float* cos,
            const float* sin) override;
  void CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch, int64_t heads,
                       int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) override;
  void CausalAttentionProbs(const float* q, const float* k, float* probs, int64_t batch, int64_t heads,
                            int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) override;
  void AttentionApply(const float* probs, const float* v, float* out, int64_t batch, int64_t heads, int64_t kv_heads,
                      int64_t seq, int64_t head_dim) override;
  void Softmax(float* x, int64_t rows, int64_t cols) override;
  void SiluMul(const float* gate, const float* up, float* out, int64_t n) override;
  void Add(float* y, const float* x, int64_t n) override;
  void ToBf16(const float* x, uint16_t* y, int64_t n) override;
  void BlockGram(const float* x, int64_t rows, int64_t cols, int64_t block, float* h) override;
  void FromBf16(const uint16_t* x, float* y, int64_t n) override;
  void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) override;
  void EmbedRows(const void* table, DType table_dtype, const int32_t* ids, float* out, int64_t rows,
                 int64_t dim) override;
  std::vector<int64_t> GroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t tokens, int top_k,
                                         int64_t experts, int32_t* rows, float* weights) override;
  void TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                   int32_t* expert_ids, float* weights) override;
  void SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) override;
  void ScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols) override;
  void GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) override;
  void ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y, int64_t rows,
                      int64_t dim) override;
  float Amax(const float* x, int64_t n) override;
  void CrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows, int64_t vocab) override;

  std::vector<float> QuantAmax(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                               std::string_view what) override;
  void FakeQuant(const QuantSpec& spec, const float* x, std::span<const int64_t> shape, std::span<const float> amax,
                 float* out, std::optional<float> global_amax, std::string_view what) override;
  bool PackNvfp4(const float* w, int64_t rows, int64_t cols, float weight_scale_2, uint8_t* packed,
                 uint8_t* scales) override;
  bool EncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes) override;
  ErrorSums Nvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t rows, int64_t cols,
                       float weight_scale_2) override;
  ErrorSums Fp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group) override;
  bool Nvfp4SweepBlocks(const float* w, int64_t rows, int64_t cols, std::span<const float> scales,
                        int32_t* index) override;

 protected:
  void* AllocBytes(int64_t bytes) override;
  void FreeBytes(void* p, int64_t bytes) override;
  void CopyToDevice(void* dst, const void* host, int64_t bytes) override;
  void CopyToHost(void* host, const void* src, int64_t bytes) override;
};

// y[m, n] = x[m, k] · w[n, k]^T by OpenBLAS sgemm with OpenBLAS's own `threads` threads (restored to one
// afterwards): the machine's GEMM rate that benchmarks compare the backend with. Not for use inside the
// backend (which keeps OpenBLAS single-threaded under OpenMP).
void BlasSgemmOwnThreads(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k, int threads);

}  // namespace qforge
