// The compute interface the forward pass, calibration and export packing run on: the memory a backend
// owns, the ops a decoder LLM needs, and the quantization ops (amax, fake quant, packing).
//
// Memory. Every array an op reads or writes lives in the backend's memory: host memory for the CPU
// backend, device memory for CUDA. The backend allocates it (Alloc -> Buffer), and data crosses between
// host and backend only through Upload / Download, which are counted (stats()). Pointers passed to ops are
// backend pointers; host pointers appear only where a parameter says "host".
//
// Numerics. Arrays are dense, row-major fp32 (`float`), whatever the compute dtype:
//   ComputeDType::kF32   every op computes and stores in fp32 (the CPU reference; --compute-dtype f32).
//   ComputeDType::kBF16  what torch does with a bf16 model: Linear weights are stored in bf16, a GEMM
//                        multiplies bf16 inputs with fp32 accumulation, and every op's floating output is
//                        rounded to bf16 (RNE) as its last step, so arrays hold bf16 values in fp32 slots.
//                        Norms, softmax, RoPE, routing and amax compute in fp32, as transformers does.
// Quantization ops (QuantAmax, FakeQuant, PackNvfp4, EncodeFp8) are bit-identical to the scalar references
// of numerics/ on every backend and in every compute dtype.
//
// Ops are stream-ordered: they may run asynchronously on the device, in call order; Download and
// Synchronize wait for every op before them. Shapes are given explicitly in elements. Unless stated,
// outputs must not alias inputs. A backend is used from one thread at a time (ops parallelize internally).
//
// Layout names used below:
//   tokens-major  [batch, seq, heads, head_dim] == [batch*seq, heads*head_dim]: what a Linear produces.
//   heads-major   [batch, heads, seq, head_dim]: what RoPE, the KV-cache quantizers and attention use.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qforge/numerics/quant_spec.h"
#include "qforge/tensor/dtype.h"

namespace qforge {

class Backend;
class HostQuantKernels;  // numerics/quant_kernels.h

enum class Device : uint8_t { kCpu, kCuda };
enum class ComputeDType : uint8_t { kF32, kBF16 };

// "f32" / "bf16", and back (nullopt for anything else).
std::string_view ComputeDTypeName(ComputeDType d);
std::optional<ComputeDType> ParseComputeDType(std::string_view name);

// What crossed between host and backend, and how much backend memory is in use (bytes). The CPU backend
// never copies (its memory is the host's), so its transfer counts stay 0.
struct MemoryStats {
  int64_t h2d_bytes = 0, h2d_copies = 0;  // Upload
  int64_t d2h_bytes = 0, d2h_copies = 0;  // Download
  int64_t allocated_bytes = 0;            // live Buffers from Alloc
  int64_t peak_allocated_bytes = 0;       // high-water mark of allocated_bytes since ResetPeak
};

// Sums of an encoding's squared error and of the squared reference (Backend::Nvfp4Error / Fp8Error).
struct ErrorSums {
  double sq_err = 0;
  double sq_ref = 0;
};

// Move-only ownership of `bytes()` bytes of one backend's memory, freed through that backend. Also a
// read-only view of host memory that a host-accessible backend adopted without copying (Backend::Adopt).
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { Reset(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  int64_t bytes() const { return bytes_; }
  bool empty() const { return ptr_ == nullptr; }
  Backend* backend() const { return owner_; }
  void Reset();  // frees (or drops the adopted view)

 private:
  friend class Backend;
  Backend* owner_ = nullptr;
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
  std::shared_ptr<const void> adopted_;  // set for Adopt views: the host storage kept alive, not freed
};

// A Linear weight as the backend stores it: [n, k] row-major in `dtype` (weight_dtype()).
struct WeightRef {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  WeightRef() = default;
  WeightRef(const float* p) : data(p), dtype(DType::kF32) {}  // NOLINT: implicit (f32 weights, tests)
  WeightRef(const void* p, DType d) : data(p), dtype(d) {}
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu", "cuda:0".
  virtual std::string_view name() const = 0;
  virtual Device device() const = 0;
  ComputeDType compute_dtype() const { return compute_dtype_; }
  // True if host code may read and write backend memory directly (CPU): then Adopt works and Upload /
  // Download are plain copies.
  bool host_accessible() const { return device() == Device::kCpu; }
  // One line for logs: "cuda:0 (NVIDIA H200, 139.8 GiB, sm_90)".
  virtual std::string Describe() const { return std::string(name()); }
  // Another backend on the same device with its own op stream, memory pool, staging and stats, so that its
  // ops run beside this one's, driven from another host thread (the export's encoding during the
  // calibration forward). Either one's ops may read the other's buffers once the writes to them have
  // finished (Synchronize the writer first); neither may free or write what the other is reading. nullptr
  // where this has no meaning (the CPU: its ops already use every core).
  virtual std::unique_ptr<Backend> Fork() const { return nullptr; }

  // --- memory ---------------------------------------------------------------------------------------
  // `bytes` of backend memory, contents undefined. Throws qforge::Error naming the size and what is free
  // when the device is out of memory.
  Buffer Alloc(int64_t bytes);
  // Alloc + Upload of `bytes` host bytes.
  Buffer AllocCopy(const void* host, int64_t bytes);
  // Host-accessible backends only: a Buffer viewing `host` (kept alive by `owner`) without copying.
  Buffer Adopt(const void* host, int64_t bytes, std::shared_ptr<const void> owner);
  // Host -> backend, backend -> host, backend -> backend copies of `bytes` bytes. Download waits for the
  // ops before it.
  void Upload(void* dst, const void* host, int64_t bytes);
  void Download(void* host, const void* src, int64_t bytes);
  virtual void Copy(void* dst, const void* src, int64_t bytes) = 0;
  // Background upload (prefetch): copies `bytes` host bytes into backend memory `dst` off the calling
  // thread and beside the ops, which go on running; `owner` keeps the host bytes alive until they have
  // been read. The copy starts after every op issued before this call (dst may be memory those ops freed).
  // Counted in stats() now. Returns a ticket for AwaitUpload; 0 if it copied synchronously already (the
  // default, and every host-accessible backend).
  int64_t UploadInBackground(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner);
  // Every op issued after this call sees background uploads up to `ticket` (a device orders its op stream
  // after the copies; the host does not wait for the device). Returns once those host bytes have been read.
  // Throws the error of a failed background copy. Ticket 0: nothing to wait for.
  virtual void AwaitUpload(int64_t ticket) {}
  // Background download (write-back): copies `bytes` backend bytes at `src` into host memory `host` off the
  // calling thread and beside the ops, after every op issued before this call (those that write src). The
  // host bytes are valid once AwaitDownload(ticket) returns; until then src must not be freed or written and
  // host must not be read. Counted in stats() now. Returns a ticket; 0 if it copied synchronously already
  // (the default, and every host-accessible backend).
  int64_t DownloadInBackground(void* host, const void* src, int64_t bytes);
  // Returns once background downloads up to `ticket` are in host memory (the host waits for them, not for
  // ops issued after them). Throws the error of a failed background copy. Ticket 0: nothing to wait for.
  virtual void AwaitDownload(int64_t ticket) {}
  // dst[0, bytes) = 0.
  virtual void Zero(void* dst, int64_t bytes) = 0;
  // Waits until every op issued so far has finished.
  virtual void Synchronize() {}
  // Hands memory the backend's allocator keeps for reuse (freed buffers) back to the device, after a large
  // buffer that will not come back was freed (the embedding table, lm_head). No-op on the CPU.
  virtual void TrimCache() {}
  // Backend memory free now and in total, bytes (CPU: the machine's available / total RAM).
  virtual std::pair<int64_t, int64_t> MemoryInfo() const = 0;
  const MemoryStats& stats() const { return stats_; }
  void ResetPeak() { stats_.peak_allocated_bytes = stats_.allocated_bytes; }

  // The dtype Linear weights are stored in (UploadWeight): kF32, or kBF16 with ComputeDType::kBF16.
  DType weight_dtype() const { return compute_dtype_ == ComputeDType::kBF16 ? DType::kBF16 : DType::kF32; }
  // A weight of `numel` f32 host values (`owner` keeps them alive) in weight_dtype(); the CPU backend in
  // f32 adopts the host array without copying.
  virtual Buffer UploadWeight(const float* host, int64_t numel, std::shared_ptr<const void> owner);
  // The same from `numel` host values stored as `dtype` (F32 / F16 / BF16, e.g. an mmap view of the
  // checkpoint): a device backend copies the stored bytes and converts on the device (half the bytes of
  // an f32 upload for a bf16 checkpoint, no host conversion); the default converts on the host.
  virtual Buffer UploadWeightStored(const void* host, DType dtype, int64_t numel, std::shared_ptr<const void> owner);

  // The SIMD host kernels for quantization work on host arrays (weight amax and weight fake quant on the
  // host, export packing), or nullptr (the scalar references). Every backend runs its host side on the CPU.
  virtual const HostQuantKernels* host_kernels() const { return nullptr; }

  // --- forward ops ----------------------------------------------------------------------------------
  // y[m, n] = x[m, k] · w[n, k]^T (+ bias[n] if bias != nullptr), plus the old y when `accumulate`.
  // `w` is a Linear's weight as stored by HF ([out_features, in_features]). `ldy` is the row stride of y
  // in elements (0 = n), so a GEMM may write into a column slice of a wider matrix. In bf16, x is rounded
  // to bf16 and the sum (bias and the old y included) rounded once at the end.
  virtual void Gemm(const float* x, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                    bool accumulate, int64_t ldy = 0) = 0;

  // The Linears that read one input (q/k/v, gate/up): for each out, y[m, n] = x[m, k] · w[n, k]^T (+ bias),
  // exactly what Gemm(x, w, bias, y, m, n, k, false) computes. A device backend converts x to its GEMM
  // operand dtype once for all of them. The default calls Gemm per output.
  struct GemmOut {
    WeightRef w;
    const float* bias = nullptr;
    float* y = nullptr;
    int64_t n = 0;
  };
  virtual void GemmShared(const float* x, int64_t m, int64_t k, std::span<const GemmOut> outs);

  // The first half of a gated MLP, x [m, k] -> gate [m, n]: gate = silu(x · wg^T) · (x · wu^T), equal to
  // Gemm(x, wg, -> gate), Gemm(x, wu, -> up), SiluMul(gate, up, gate). `up` [m, n] is scratch whose
  // contents are undefined afterwards: a device backend keeps both products in it as bf16 and writes gate
  // in one fused pass, so neither product is stored in f32. The default runs the three ops.
  virtual void GatedLinear(const float* x, WeightRef wg, WeightRef wu, float* gate, float* up, int64_t m, int64_t n,
                           int64_t k);

  // A whole gated MLP, x [m, k] -> out [m, n_out] (+= the old out when `accumulate`):
  // h = silu(x · wg^T) · (x · wu^T) [m, inter], out = h · wd^T; with `h_amax` (not null) max |h| is folded
  // into that slot as AmaxFold does. Equal to GatedLinear(x, wg, wu, gate, up, ...), AmaxFold(gate, ...),
  // Gemm(gate, wd, ..., accumulate). `gate` and `up` [m, inter] are scratch with undefined contents
  // afterwards: a device backend keeps h only as the bf16 operand of the down GEMM (never f32, and never
  // read again for its amax). The default runs those ops.
  virtual void GatedMlp(const float* x, int64_t m, int64_t k, WeightRef wg, WeightRef wu, int64_t inter, WeightRef wd,
                        int64_t n_out, float* out, bool accumulate, float* gate, float* up, uint32_t* h_amax);

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

  // RoPE into heads-major order: y [batch, heads, seq, head_dim] = Rope of x tokens-major [batch, seq, heads,
  // head_dim], exactly SwapMiddleAxes(x, y, batch, seq, heads, head_dim) then Rope(y, ...), in one pass on a
  // device. The default runs those two.
  virtual void RopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                           const float* cos, const float* sin);

  // Causal grouped-query attention. q: heads-major [batch, heads, seq, head_dim]; k, v: heads-major
  // [batch, kv_heads, seq, head_dim], heads % kv_heads == 0, query head h reads kv head
  // h / (heads / kv_heads). out: tokens-major [batch, seq, heads, head_dim], ready for o_proj.
  // out[b, i, h] = Σ_{j ≤ i} softmax_j(scale · q[b,h,i]·k[b,g,j]) · v[b,g,j], softmax in fp32. Never
  // materializes [seq, seq] scores per head in backend memory.
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

  // y[i] = x[i] rounded to bf16 (RNE; a NaN stays a quiet NaN), i < n: the bf16 copy of f32 data. In bf16
  // compute every op's output already holds bf16 values, so the copy is exact there (activations kept
  // between decoder layers in half the memory).
  virtual void ToBf16(const float* x, uint16_t* y, int64_t n) = 0;
  // y[i] = x[i] widened to f32 (exact), i < n.
  virtual void FromBf16(const uint16_t* x, float* y, int64_t n) = 0;

  // Transposes the two middle axes: x [a, b, c, d] -> y [a, c, b, d] (tokens-major <-> heads-major).
  virtual void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) = 0;

  // out[r, :] = table[ids[r], :] converted to f32, r < rows; table: [*, dim] stored as `table_dtype`
  // (F32 / F16 / BF16), ids: [rows] in backend memory, already checked to be in range.
  virtual void EmbedRows(const void* table, DType table_dtype, const int32_t* ids, float* out, int64_t rows,
                         int64_t dim) = 0;

  // MoE routing, one row per token. logits: [tokens, experts] router outputs. Softmax over the experts,
  // then the top_k largest probabilities (ties to the lower expert index, like torch.topk), renormalized
  // to sum to 1 when `renormalize`. expert_ids, weights: [tokens, top_k], in decreasing probability.
  virtual void TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                           int32_t* expert_ids, float* weights) = 0;

  // MoE dispatch: the tokens*top_k (token, slot) pairs of expert_ids / topk_w [tokens, top_k] grouped by
  // expert, tokens increasing within an expert: rows[i] = the token of grouped pair i, weights[i] its
  // routing weight (both [tokens*top_k], backend memory). Returns, on the host, offsets [experts + 1]:
  // expert e owns grouped pairs offsets[e] .. offsets[e+1] (the only values that cross to the host).
  virtual std::vector<int64_t> GroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t tokens,
                                                 int top_k, int64_t experts, int32_t* rows, float* weights) = 0;

  // x[r, :] *= sigmoid(gate_logits[r]) for r < rows; x: [rows, cols], gate_logits: [rows] (Qwen2-MoE
  // shared_expert_gate).
  virtual void SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) = 0;

  // x[r, c] *= scale[c]; x: [rows, cols], scale: [cols] (a Linear input's pre_quant_scale: SmoothQuant,
  // AWQ). The f32 product, rounded to the compute dtype (bf16: torch's product of two bf16 tensors).
  virtual void ScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols) = 0;

  // out[r, :] = x[rows_idx[r], :] for r < rows; x: [*, dim], out: [rows, dim].
  virtual void GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) = 0;

  // y[rows_idx[r], :] += row_weights[r] · x[r, :] for r < rows; x: [rows, dim]. Rows in rows_idx must be
  // distinct within one call.
  virtual void ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y, int64_t rows,
                              int64_t dim) = 0;

  // Gram matrices of x's column blocks, accumulated: h[j] += X_jᵀ·X_j for j < cols / block, where X_j is
  // x[:, j·block, (j+1)·block) ([rows, block]) and h is [cols / block, block, block] row-major (symmetric);
  // fp32 products and sums, no TF32. x: [rows, cols], cols % block == 0. local_hessian calibration's
  // per-input-block Hessian H_j = Σ_tokens x_j x_jᵀ.
  virtual void BlockGram(const float* x, int64_t rows, int64_t cols, int64_t block, float* h) = 0;

  // max |x[i]| over i < n (0 for n == 0; NaN if any element is NaN), returned on the host.
  virtual float Amax(const float* x, int64_t n) = 0;
  // Folds max |x[i]| (i < n) into *slot, a uint32 in backend memory (0 to start): the largest IEEE bit
  // pattern of |x| seen so far, which is the float max |x| while every value was finite; above
  // 0x7F800000 once a NaN was seen, 0x7F800000 for an infinity. Nothing crosses to the host, so max
  // calibration of per-tensor amax reads its slots once at the end instead of once per call. The default
  // goes through Amax and a round trip of the slot.
  virtual void AmaxFold(const float* x, int64_t n, uint32_t* slot);

  // Per-row cross entropy: nll[r] = logsumexp(logits[r, :]) − logits[r, targets[r]], r < rows;
  // logits: [rows, vocab], targets in [0, vocab) (backend memory), nll: host [rows]. Accumulated in double.
  virtual void CrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows, int64_t vocab) = 0;

  // --- quantization ops (bit-identical to numerics/qdq.h and encode.h) -------------------------------
  // Max calibration of x (backend memory, `shape`): numerics ComputeAmax's values, order and errors; the
  // few amax values come back on the host.
  virtual std::vector<float> QuantAmax(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                                       std::string_view what) = 0;
  // numerics FakeQuant of x into out (backend memory, may alias); amax on the host (a few values).
  virtual void FakeQuant(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                         std::span<const float> amax, float* out, std::optional<float> global_amax,
                         std::string_view what) = 0;
  // NVFP4 export packing of w [rows, cols] (cols % 16 == 0) with `weight_scale_2` (encode.h PackWeight's
  // dynamic path): packed [rows, cols/2] bytes, scales [rows, cols/16] E4M3 bytes, all backend memory.
  // Returns false, writing nothing useful, if some weight is not finite (the caller reports it); a device
  // backend may also decline a degenerate weight_scale_2 (0, non-finite, below 2^-100): the caller then
  // runs the host reference (numerics PackNvfp4Reference).
  virtual bool PackNvfp4(const float* w, int64_t rows, int64_t cols, float weight_scale_2, uint8_t* packed,
                         uint8_t* scales) = 0;
  // FP8 export cast codes[i] = e4m3_nonsat(w[i] / scales[i / group]), i < n (encode.h); all backend memory.
  // Returns false if some w[i] is not finite.
  virtual bool EncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes) = 0;
  // The error an export encoding introduces, against its weight w (backend memory): sums in double of
  // (w[i] - dq[i])^2 and w[i]^2, dq[i] being numerics UnpackWeight's decode, bit for bit. The summation
  // order is the backend's, so the sums match the host's to double rounding, not bit for bit.
  //   Nvfp4Error: packed [rows, cols/2] and E4M3 scales [rows, cols/16] (PackNvfp4's outputs);
  //   Fp8Error:   codes[i] * scales[i / group], i < n (EncodeFp8's).
  virtual ErrorSums Nvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t rows,
                               int64_t cols, float weight_scale_2) = 0;
  virtual ErrorSums Fp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group) = 0;

  // mse's FP8 scale sweep of a static NVFP4 weight w [rows, cols] (numerics Nvfp4SweepRowBlocks, whose choices
  // it must equal exactly): index [rows, ceil(cols / 16)] int32 in backend memory gets each 16-element row
  // block's best candidate among `scales` (host, one block scale per candidate). False: not implemented on
  // this backend (the caller sweeps the host weight).
  virtual bool Nvfp4SweepBlocks(const float* w, int64_t rows, int64_t cols, std::span<const float> scales,
                                int32_t* index) {
    return false;
  }

 protected:
  explicit Backend(ComputeDType compute_dtype) : compute_dtype_(compute_dtype) {}
  // Raw memory primitives behind Alloc / Upload / Download (counted by the callers above).
  virtual void* AllocBytes(int64_t bytes) = 0;
  virtual void FreeBytes(void* p, int64_t bytes) = 0;
  virtual void CopyToDevice(void* dst, const void* host, int64_t bytes) = 0;
  virtual void CopyToHost(void* host, const void* src, int64_t bytes) = 0;
  // Behind UploadInBackground: the default copies now (CopyToDevice) and returns ticket 0.
  virtual int64_t CopyToDeviceInBackground(void* dst, const void* host, int64_t bytes,
                                           std::shared_ptr<const void> owner) {
    CopyToDevice(dst, host, bytes);
    return 0;
  }
  // Behind DownloadInBackground: the default copies now (CopyToHost) and returns ticket 0.
  virtual int64_t CopyToHostInBackground(void* host, const void* src, int64_t bytes) {
    CopyToHost(host, src, bytes);
    return 0;
  }

 private:
  friend class Buffer;
  void Release(Buffer& b);
  ComputeDType compute_dtype_;
  MemoryStats stats_;
};

// A backend by name: "cpu", "cuda" (= "cuda:0") or "cuda:N". Throws qforge::Error naming the choices for
// an unknown name, saying how to build with CUDA when it is not compiled in, and naming the problem when
// no GPU or driver is found. The CPU backend computes in f32 only.
std::unique_ptr<Backend> CreateBackend(std::string_view name, ComputeDType compute_dtype = ComputeDType::kF32);
// The default compute dtype of a backend name: bf16 on CUDA, f32 on the CPU.
ComputeDType DefaultComputeDType(std::string_view name);
// Names of the backends this binary can create now ("cpu", and "cuda:0".. when a GPU is usable).
std::vector<std::string> AvailableBackends();

// The process-wide CPU backend (runtime/cpu/cpu_backend.h: OpenBLAS sgemm, OpenMP loops); thread count
// follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS.
Backend& DefaultCpuBackend();
// The kernel set the CPU backend's OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...; base/blas_core.h).
const char* CpuBlasCoreName();

}  // namespace qforge
