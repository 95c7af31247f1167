// The CUDA backend: a caching device allocator, pinned staging for host transfers, cuBLAS GEMMs and the
// kernels of cuda_kernels.h / cuda_quant.h, all on one non-blocking stream of one GPU.
#include "qforge/runtime/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/runtime/cuda/background_upload.h"
#include "qforge/runtime/cuda/cuda_kernels.h"
#include "qforge/runtime/cuda/cuda_quant.h"

namespace qforge {
namespace {

[[noreturn]] void ThrowCuda(std::string_view backend, const char* what, cudaError_t e) {
  QF_FAIL("{}: CUDA error in {}: {} ({})", backend, what, cudaGetErrorName(e), cudaGetErrorString(e));
}

// Size classes of the caching allocator (bytes): multiples of 512 up to 1 MiB, then 8 classes per power of
// two up to 64 MiB (at most 12.5% slack), then multiples of 2 MiB (at most 3%). A freed block is kept
// on its class's free list and handed to the next request of that class.
size_t SizeClass(int64_t bytes) {
  const auto b = static_cast<size_t>(bytes);
  constexpr size_t kMiB = size_t{1} << 20;
  if (b <= kMiB) return (b + 511) / 512 * 512;
  if (b > 64 * kMiB) return (b + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB);
  const size_t step = std::bit_floor(b - 1) / 8;
  return (b + step - 1) / step * step;
}

// Bytes per pinned staging buffer; two of them alternate so that host copies overlap DMA.
constexpr size_t kStagingBytes = size_t{32} << 20;

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, ComputeDType compute_dtype);
  ~CudaBackend() override;

  std::string_view name() const override { return name_; }
  Device device() const override { return Device::kCuda; }
  std::string Describe() const override { return describe_; }

  void Copy(void* dst, const void* src, int64_t bytes) override;
  void AwaitUpload(int64_t ticket) override {
    Activate();
    uploader_->Await(ticket, stream_);
  }
  void AwaitDownload(int64_t ticket) override { downloader_->Await(ticket); }
  void Zero(void* dst, int64_t bytes) override;
  void Synchronize() override;
  std::pair<int64_t, int64_t> MemoryInfo() const override;
  Buffer UploadWeight(const float* host, int64_t numel, std::shared_ptr<const void> owner) override;
  Buffer UploadWeightStored(const void* host, DType dtype, int64_t numel, std::shared_ptr<const void> owner) override;
  // Host-side quantization work (weight amax, weight fake quant on the host, export packing) runs on this
  // machine's CPU: the CPU backend's SIMD kernels (bit-identical to the scalar references).
  const HostQuantKernels* host_kernels() const override { return DefaultCpuBackend().host_kernels(); }

  void Gemm(const float* x, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
            bool accumulate, int64_t ldy = 0) override;
  void GemmShared(const float* x, int64_t m, int64_t k, std::span<const GemmOut> outs) override;
  void GatedMlp(const float* x, int64_t m, int64_t k, WeightRef wg, WeightRef wu, int64_t inter, WeightRef wd,
                int64_t n_out, float* out, bool accumulate, float* gate, float* up, uint32_t* h_amax) override;
  void GatedLinear(const float* x, WeightRef wg, WeightRef wu, float* gate, float* up, int64_t m, int64_t n,
                   int64_t k) override;
  void RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) override;
  void Rope(float* x, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, const float* cos,
            const float* sin) override;
  void RopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                   const float* cos, const float* sin) override;
  void CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch, int64_t heads,
                       int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) override;
  void CausalAttentionProbs(const float* q, const float* k, float* probs, int64_t batch, int64_t heads,
                            int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) override;
  void AttentionApply(const float* probs, const float* v, float* out, int64_t batch, int64_t heads, int64_t kv_heads,
                      int64_t seq, int64_t head_dim) override;
  void Softmax(float* x, int64_t rows, int64_t cols) override;
  void SiluMul(const float* gate, const float* up, float* out, int64_t n) override;
  void Add(float* y, const float* x, int64_t n) override;
  void TrimCache() override { ReleaseCached(); }
  void ToBf16(const float* x, uint16_t* y, int64_t n) override;
  void BlockGram(const float* x, int64_t rows, int64_t cols, int64_t block, float* h) override;
  void FromBf16(const uint16_t* x, float* y, int64_t n) override;
  void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) override;
  void EmbedRows(const void* table, DType table_dtype, const int32_t* ids, float* out, int64_t rows,
                 int64_t dim) override;
  void TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                   int32_t* expert_ids, float* weights) override;
  std::vector<int64_t> GroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t tokens, int top_k,
                                         int64_t experts, int32_t* rows, float* weights) override;
  void SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) override;
  void ScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols) override;
  void GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) override;
  void ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y, int64_t rows,
                      int64_t dim) override;
  void AmaxFold(const float* x, int64_t n, uint32_t* slot) override;
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
                        int32_t* index) override {
    Activate();
    cuda::Nvfp4SweepBlocks(*this, stream_, w, rows, cols, scales, index);
    return true;
  }

 protected:
  void* AllocBytes(int64_t bytes) override;
  void FreeBytes(void* p, int64_t bytes) override;
  void CopyToDevice(void* dst, const void* host, int64_t bytes) override;
  void CopyToHost(void* host, const void* src, int64_t bytes) override;
  std::unique_ptr<Backend> Fork() const override {
    return std::make_unique<CudaBackend>(device_, compute_dtype());
  }
  int64_t CopyToDeviceInBackground(void* dst, const void* host, int64_t bytes,
                                   std::shared_ptr<const void> owner) override {
    Activate();
    return uploader_->Submit(dst, host, bytes, std::move(owner), stream_);
  }
  int64_t CopyToHostInBackground(void* host, const void* src, int64_t bytes) override {
    Activate();
    return downloader_->Submit(host, src, bytes, stream_);
  }

 private:
  bool round_bf16() const { return compute_dtype() == ComputeDType::kBF16; }
  void CheckGemmDims(int64_t m, int64_t n, int64_t k, int64_t ldy) const;
  static int64_t Bf16GemmTmpBytes(WeightRef w, int64_t m, int64_t n, int64_t k);
  void Bf16Gemm(const uint16_t* xs, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                bool accumulate, int64_t ldy, char* tmp);
  // Makes this backend's GPU current for the calling thread (ops may come from any one thread).
  void Activate() const;
  void Check(cudaError_t e, const char* what) const {
    if (e != cudaSuccess) [[unlikely]] ThrowCuda(name_, what, e);
  }
  void CheckBlas(cublasStatus_t s, const char* what) const;
  // Device memory of the allocator, not counted in stats() (internal scratch).
  void* RawAlloc(int64_t bytes);
  void RawFree(void* p);
  void ReleaseCached();
  // At least `bytes` of device scratch, valid until the next call; ops on the one stream are ordered, so
  // reusing it across ops is safe.
  void* Scratch(int64_t bytes);
  void EnsureStaging();
  cublasComputeType_t AttentionCompute() const;

  int device_;
  std::string name_, describe_;
  int64_t smem_optin_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;

  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live_;               // block -> its size class
  int64_t cached_bytes_ = 0;

  void* scratch_ = nullptr;
  int64_t scratch_bytes_ = 0;

  void* staging_[2] = {nullptr, nullptr};          // pinned host buffers of kStagingBytes
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};  // recorded after the last copy that used each

  // Reset first in the destructor: their workers must stop before the streams and the memory go.
  std::unique_ptr<cuda::BackgroundUploader> uploader_ = std::make_unique<cuda::BackgroundUploader>(device_);
  std::unique_ptr<cuda::BackgroundDownloader> downloader_ = std::make_unique<cuda::BackgroundDownloader>(device_);
};

CudaBackend::CudaBackend(int device, ComputeDType compute_dtype)
    : Backend(compute_dtype), device_(device), name_("cuda:" + std::to_string(device)) {
  Check(cudaSetDevice(device_), "cudaSetDevice");
  const cudaError_t probe = cuda::ProbeKernelImage();
  QF_CHECK(probe == cudaSuccess,
           "{}: this qforge has no CUDA kernels for this GPU ({}: {}); rebuild with CMAKE_CUDA_ARCHITECTURES "
           "naming its compute capability",
           name_, cudaGetErrorName(probe), cudaGetErrorString(probe));
  cudaDeviceProp prop{};
  Check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  QF_CHECK(prop.major >= 8, "{}: {} is sm_{}{}; the CUDA backend needs sm_80 or newer (bf16 tensor cores)", name_,
           prop.name, prop.major, prop.minor);
  smem_optin_ = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
  describe_ = fmt::format("{} ({}, {:.1f} GiB, sm_{}{})", name_, prop.name,
                          static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor);
  Check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  CheckBlas(cublasCreate(&cublas_), "cublasCreate");
  CheckBlas(cublasSetStream(cublas_, stream_), "cublasSetStream");
  // Default math: no TF32 (fp32 GEMMs stay fp32); bf16 GEMMs use tensor cores by their operand types.
  CheckBlas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
}

CudaBackend::~CudaBackend() {
  // No throwing here: errors of the device at teardown are not actionable.
  uploader_.reset();
  downloader_.reset();
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  for (int i = 0; i < 2; ++i) {
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
    if (staging_done_[i] != nullptr) cudaEventDestroy(staging_done_[i]);
  }
  if (scratch_ != nullptr) {
    live_.erase(scratch_);
    cudaFree(scratch_);
  }
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) cudaFree(p);
  }
  // Blocks still in live_ belong to Buffers that outlived their backend (a caller bug); they are freed with
  // the context.
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CudaBackend::Activate() const {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != device_) Check(cudaSetDevice(device_), "cudaSetDevice");
}

void CudaBackend::CheckBlas(cublasStatus_t s, const char* what) const {
  if (s != CUBLAS_STATUS_SUCCESS) [[unlikely]] {
    QF_FAIL("{}: cuBLAS error in {}: {} ({})", name_, what, cublasGetStatusName(s), cublasGetStatusString(s));
  }
}

// --- memory -----------------------------------------------------------------------------------------

void* CudaBackend::RawAlloc(int64_t bytes) {
  Activate();
  const size_t cls = SizeClass(bytes);
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= static_cast<int64_t>(cls);
    live_.emplace(p, cls);
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, cls);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky; clear it and retry with the cache returned to the device
    const int64_t had_cached = cached_bytes_;
    ReleaseCached();
    e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      QF_FAIL("{}: out of device memory allocating {} bytes ({:.2f} GiB): {:.2f} GiB free of {:.2f} GiB after "
              "returning {:.2f} GiB of qforge's cache to the device",
              name_, bytes, static_cast<double>(bytes) / (1 << 30), static_cast<double>(free_b) / (1 << 30),
              static_cast<double>(total_b) / (1 << 30), static_cast<double>(had_cached) / (1 << 30));
    }
  }
  Check(e, "cudaMalloc");
  live_.emplace(p, cls);
  return p;
}

void CudaBackend::RawFree(void* p) {
  auto it = live_.find(p);
  QF_ASSERT(it != live_.end(), "{}: freeing {} which this backend did not allocate (or freed twice)", name_, p);
  free_[it->second].push_back(p);
  cached_bytes_ += static_cast<int64_t>(it->second);
  live_.erase(it);
}

void CudaBackend::ReleaseCached() {
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) Check(cudaFree(p), "cudaFree");
    blocks.clear();
  }
  cached_bytes_ = 0;
}

void* CudaBackend::AllocBytes(int64_t bytes) { return RawAlloc(bytes); }
void CudaBackend::FreeBytes(void* p, int64_t) { RawFree(p); }

void* CudaBackend::Scratch(int64_t bytes) {
  if (bytes > scratch_bytes_) {
    if (scratch_ != nullptr) RawFree(scratch_);
    scratch_ = nullptr;
    scratch_bytes_ = 0;
    const int64_t want = std::max<int64_t>(bytes, int64_t{1} << 20);
    scratch_ = RawAlloc(want);
    scratch_bytes_ = static_cast<int64_t>(SizeClass(want));
  }
  return scratch_;
}

void CudaBackend::EnsureStaging() {
  if (staging_[0] != nullptr) return;
  for (int i = 0; i < 2; ++i) {
    Check(cudaHostAlloc(&staging_[i], kStagingBytes, cudaHostAllocDefault), "cudaHostAlloc (pinned staging)");
    Check(cudaEventCreateWithFlags(&staging_done_[i], cudaEventDisableTiming), "cudaEventCreate");
  }
}

// Pageable host memory -> pinned buffer (memcpy) -> device (DMA), the two buffers alternating: the memcpy
// of chunk c overlaps the DMA of chunk c - 1. The host array may be reused as soon as this returns.
void CudaBackend::CopyToDevice(void* dst, const void* host, int64_t bytes) {
  Activate();
  EnsureStaging();
  auto* d = static_cast<char*>(dst);
  const auto* h = static_cast<const char*>(host);
  int64_t chunk_index = 0;
  for (int64_t off = 0; off < bytes; off += static_cast<int64_t>(kStagingBytes), ++chunk_index) {
    const size_t len = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kStagingBytes), bytes - off));
    const int i = static_cast<int>(chunk_index & 1);
    Check(cudaEventSynchronize(staging_done_[i]), "cudaEventSynchronize");
    // Several threads fill the pinned buffer: a weight read from the checkpoint's mmap page-faults as it
    // is copied, and one thread alone reached only ~1.4 GB/s on an 8B model.
    constexpr size_t kPiece = size_t{2} << 20;
    const int64_t pieces = static_cast<int64_t>((len + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const size_t o = static_cast<size_t>(p) * kPiece;
      std::memcpy(static_cast<char*>(staging_[i]) + o, h + off + o, std::min(kPiece, len - o));
    }
    Check(cudaMemcpyAsync(d + off, staging_[i], len, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (upload)");
    Check(cudaEventRecord(staging_done_[i], stream_), "cudaEventRecord");
  }
}

// Device -> pinned (DMA, after every op queued before) -> host (memcpy), overlapped the same way.
void CudaBackend::CopyToHost(void* host, const void* src, int64_t bytes) {
  Activate();
  EnsureStaging();
  const auto* s = static_cast<const char*>(src);
  auto* h = static_cast<char*>(host);
  const int64_t chunk = static_cast<int64_t>(kStagingBytes);
  const int64_t chunks = (bytes + chunk - 1) / chunk;
  auto drain = [&](int64_t c) {  // chunk c has been queued: wait for it and copy it out
    const int i = static_cast<int>(c & 1);
    const int64_t off = c * chunk;
    Check(cudaEventSynchronize(staging_done_[i]), "cudaEventSynchronize (download)");
    // Several threads copy out: the destination is often fresh memory (an export's packed weight), whose
    // first touch page-faults, and one thread alone is the slowest part of a large download.
    const size_t len = static_cast<size_t>(std::min(chunk, bytes - off));
    constexpr size_t kPiece = size_t{2} << 20;
    const int64_t pieces = static_cast<int64_t>((len + kPiece - 1) / kPiece);
    const char* stage = static_cast<const char*>(staging_[i]);
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const size_t o = static_cast<size_t>(p) * kPiece;
      std::memcpy(h + off + o, stage + o, std::min(kPiece, len - o));
    }
  };
  for (int64_t c = 0; c < chunks; ++c) {
    const int i = static_cast<int>(c & 1);
    const int64_t off = c * chunk;
    Check(cudaMemcpyAsync(staging_[i], s + off, static_cast<size_t>(std::min(chunk, bytes - off)),
                          cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync (download)");
    Check(cudaEventRecord(staging_done_[i], stream_), "cudaEventRecord");
    if (c > 0) drain(c - 1);
  }
  if (chunks > 0) drain(chunks - 1);
}

void CudaBackend::Copy(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0 || dst == src) return;
  Activate();
  Check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, stream_), "Copy");
}

void CudaBackend::Zero(void* dst, int64_t bytes) {
  if (bytes <= 0) return;
  Activate();
  Check(cudaMemsetAsync(dst, 0, static_cast<size_t>(bytes), stream_), "Zero");
}

void CudaBackend::Synchronize() {
  Activate();
  Check(cudaStreamSynchronize(stream_), "Synchronize");
}

// Free: what the device reports plus the blocks cached here, which the next allocations reuse first.
std::pair<int64_t, int64_t> CudaBackend::MemoryInfo() const {
  Activate();
  size_t free_b = 0, total_b = 0;
  Check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  return {static_cast<int64_t>(free_b) + cached_bytes_, static_cast<int64_t>(total_b)};
}

// kBF16: the f32 host values cross in chunks of kStagingBytes (counted uploads into device scratch) and
// are rounded to bf16 (RNE) on the device into the weight's buffer.
Buffer CudaBackend::UploadWeight(const float* host, int64_t numel, std::shared_ptr<const void> owner) {
  if (!round_bf16()) return Backend::UploadWeight(host, numel, std::move(owner));
  Buffer w = Alloc(numel * 2);
  if (numel == 0) return w;
  const int64_t chunk = static_cast<int64_t>(kStagingBytes / sizeof(float));
  auto* stage = static_cast<float*>(Scratch(std::min(numel, chunk) * static_cast<int64_t>(sizeof(float))));
  for (int64_t off = 0; off < numel; off += chunk) {
    const int64_t len = std::min(chunk, numel - off);
    Upload(stage, host + off, len * static_cast<int64_t>(sizeof(float)));
    Check(cuda::LaunchF32ToBf16(stage, w.as<uint16_t>() + off, len, stream_), "UploadWeight (bf16 conversion)");
  }
  return w;
}

// F16 / BF16 checkpoints: the stored 2-byte values cross (counted uploads of kStagingBytes chunks into
// device scratch) and are converted on the device; a BF16 weight in kBF16 mode is its stored bytes. Other
// stored dtypes (F8, F64) convert on the host (Backend's default).
Buffer CudaBackend::UploadWeightStored(const void* host, DType dtype, int64_t numel, std::shared_ptr<const void> owner) {
  if (dtype == DType::kF32) return UploadWeight(static_cast<const float*>(host), numel, std::move(owner));
  if (dtype != DType::kF16 && dtype != DType::kBF16) {
    return Backend::UploadWeightStored(host, dtype, numel, std::move(owner));
  }
  if (dtype == DType::kBF16 && round_bf16()) return AllocCopy(host, numel * 2);
  Buffer w = Alloc(numel * (round_bf16() ? 2 : 4));
  if (numel == 0) return w;
  const int kind = dtype == DType::kF16 ? cuda::kEmbedF16 : cuda::kEmbedBf16;
  const int64_t chunk = static_cast<int64_t>(kStagingBytes / sizeof(uint16_t));
  auto* stage = static_cast<uint16_t*>(Scratch(std::min(numel, chunk) * 2));
  const auto* src = static_cast<const uint16_t*>(host);
  for (int64_t off = 0; off < numel; off += chunk) {
    const int64_t len = std::min(chunk, numel - off);
    Upload(stage, src + off, len * 2);
    float* out_f32 = round_bf16() ? nullptr : w.as<float>() + off;
    uint16_t* out_bf16 = round_bf16() ? w.as<uint16_t>() + off : nullptr;
    Check(cuda::LaunchConvertHalf(stage, kind, len, out_f32, out_bf16, stream_), "UploadWeightStored (conversion)");
  }
  return w;
}

// --- GEMM ---------------------------------------------------------------------------------------------

// Row-major y[m, n] = x[m, k] · w[n, k]^T is column-major y^T[n, m] = w^T · x^T: cuBLAS sees w as a
// k x n column-major matrix (transposed) and x as a k x m one.
void CudaBackend::CheckGemmDims(int64_t m, int64_t n, int64_t k, int64_t ldy) const {
  QF_ASSERT(ldy >= n, "Gemm: ldy {} < n {}", ldy, n);
  QF_ASSERT(m >= 0 && n >= 0 && k >= 0, "Gemm: m {} n {} k {}", m, n, k);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  QF_CHECK(m <= kIntMax && n <= kIntMax && k <= kIntMax && ldy <= kIntMax,
           "{}: GEMM of m {} n {} k {} exceeds cuBLAS's int dimensions", name_, m, n, k);
}

namespace {
int64_t Align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }
}  // namespace

int64_t CudaBackend::Bf16GemmTmpBytes(WeightRef w, int64_t m, int64_t n, int64_t k) {
  return Align256(w.dtype == DType::kF32 ? n * k * 2 : 0) + m * n * 2;
}

// kBF16: xs [m, k] holds x's bf16 bits; `tmp` has Bf16GemmTmpBytes(w, m, n, k) bytes of device scratch
// (f32 weights rounded to bf16 there, then room for a bf16 product).
void CudaBackend::Bf16Gemm(const uint16_t* xs, WeightRef w, const float* bias, float* y, int64_t m, int64_t n,
                           int64_t k, bool accumulate, int64_t ldy, char* tmp) {
  QF_ASSERT(w.dtype == DType::kBF16 || w.dtype == DType::kF32, "{} Gemm in bf16: weights must be BF16 or F32, got {}",
            name_, DTypeName(w.dtype));
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k), LDY = static_cast<int>(ldy);
  const void* wp = w.data;
  if (w.dtype == DType::kF32) {
    Check(cuda::LaunchF32ToBf16(static_cast<const float*>(w.data), reinterpret_cast<uint16_t*>(tmp), n * k, stream_),
          "Gemm (w to bf16)");
    wp = tmp;
    tmp += Align256(n * k * 2);
  }
  if (!accumulate && bias == nullptr && ldy == n) {
    // The product straight to bf16 (cuBLAS rounds its fp32 sum once, to nearest even), widened exactly:
    // 8 bytes of traffic per output element instead of 12 for an f32 product and a rounding pass.
    auto* ys = reinterpret_cast<uint16_t*>(tmp);
    CheckBlas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wp, CUDA_R_16BF, K, xs, CUDA_R_16BF, K,
                           &beta, ys, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx (bf16 out)");
    Check(cuda::LaunchBf16ToF32(ys, y, m * n, stream_), "Gemm (bf16 product to f32)");
    return;
  }
  CheckBlas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wp, CUDA_R_16BF, K, xs, CUDA_R_16BF, K,
                         &beta, y, CUDA_R_32F, LDY, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx (bf16)");
  // Bias after the product (and the old y), then the one rounding of the whole sum.
  Check(cuda::LaunchBiasRound(y, bias, m, n, ldy, true, stream_), "Gemm (bias / bf16 epilogue)");
}

void CudaBackend::Gemm(const float* x, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                       bool accumulate, int64_t ldy) {
  if (ldy == 0) ldy = n;
  CheckGemmDims(m, n, k, ldy);
  if (m == 0 || n == 0) return;
  Activate();
  if (k == 0) {
    if (!accumulate) {
      Check(cudaMemset2DAsync(y, static_cast<size_t>(ldy) * 4, 0, static_cast<size_t>(n) * 4,
                              static_cast<size_t>(m), stream_),
            "Gemm (k = 0)");
    }
    Check(cuda::LaunchBiasRound(y, bias, m, n, ldy, round_bf16(), stream_), "Gemm (bias / bf16 epilogue)");
    return;
  }
  if (!round_bf16()) {
    QF_ASSERT(w.dtype == DType::kF32, "{} Gemm in f32: weights must be F32, got {}", name_, DTypeName(w.dtype));
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    CheckBlas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                           static_cast<int>(k), &alpha, w.data, CUDA_R_32F, static_cast<int>(k), x, CUDA_R_32F,
                           static_cast<int>(k), &beta, y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx (f32)");
    Check(cuda::LaunchBiasRound(y, bias, m, n, ldy, false, stream_), "Gemm (bias)");
    return;
  }
  // x rounded to bf16 in scratch; tensor cores multiply, fp32 accumulates.
  const int64_t xb = Align256(m * k * 2);
  char* scratch = static_cast<char*>(Scratch(xb + Bf16GemmTmpBytes(w, m, n, k)));
  auto* xs = reinterpret_cast<uint16_t*>(scratch);
  Check(cuda::LaunchF32ToBf16(x, xs, m * k, stream_), "Gemm (x to bf16)");
  Bf16Gemm(xs, w, bias, y, m, n, k, accumulate, ldy, scratch + xb);
}

void CudaBackend::GemmShared(const float* x, int64_t m, int64_t k, std::span<const GemmOut> outs) {
  if (!round_bf16() || m == 0 || k == 0) return Backend::GemmShared(x, m, k, outs);
  int64_t tmp = 0;
  for (const GemmOut& o : outs) {
    CheckGemmDims(m, o.n, k, o.n);
    tmp = std::max(tmp, Bf16GemmTmpBytes(o.w, m, o.n, k));
  }
  Activate();
  // x converted once for every output.
  const int64_t xb = Align256(m * k * 2);
  char* scratch = static_cast<char*>(Scratch(xb + tmp));
  auto* xs = reinterpret_cast<uint16_t*>(scratch);
  Check(cuda::LaunchF32ToBf16(x, xs, m * k, stream_), "GemmShared (x to bf16)");
  for (const GemmOut& o : outs) {
    if (o.n > 0) Bf16Gemm(xs, o.w, o.bias, o.y, m, o.n, k, false, o.n, scratch + xb);
  }
}

void CudaBackend::GatedLinear(const float* x, WeightRef wg, WeightRef wu, float* gate, float* up, int64_t m, int64_t n,
                              int64_t k) {
  if (!round_bf16() || m == 0 || n == 0 || k == 0) return Backend::GatedLinear(x, wg, wu, gate, up, m, n, k);
  CheckGemmDims(m, n, k, n);
  Activate();
  const int64_t xb = Align256(m * k * 2);
  const int64_t wb = std::max(wg.dtype == DType::kF32 ? n * k * 2 : 0, wu.dtype == DType::kF32 ? n * k * 2 : 0);
  char* scratch = static_cast<char*>(Scratch(xb + wb));
  auto* xs = reinterpret_cast<uint16_t*>(scratch);
  Check(cuda::LaunchF32ToBf16(x, xs, m * k, stream_), "GatedLinear (x to bf16)");
  // Both bf16 products in up's [m, n] f32 slots (2 x m*n bf16), then silu(g)·u in one pass into gate.
  auto* g16 = reinterpret_cast<uint16_t*>(up);
  uint16_t* u16 = g16 + m * n;
  const float alpha = 1.f, beta = 0.f;
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  for (auto [w, out] : {std::pair{wg, g16}, std::pair{wu, u16}}) {
    QF_ASSERT(w.dtype == DType::kBF16 || w.dtype == DType::kF32, "{} GatedLinear: weights must be BF16 or F32, got {}",
              name_, DTypeName(w.dtype));
    const void* wp = w.data;
    if (w.dtype == DType::kF32) {
      auto* ws = reinterpret_cast<uint16_t*>(scratch + xb);
      Check(cuda::LaunchF32ToBf16(static_cast<const float*>(w.data), ws, n * k, stream_), "GatedLinear (w to bf16)");
      wp = ws;
    }
    CheckBlas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wp, CUDA_R_16BF, K, xs, CUDA_R_16BF, K,
                           &beta, out, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx (GatedLinear)");
  }
  Check(cuda::LaunchSiluMulBf16(g16, u16, gate, m * n, stream_), "GatedLinear (silu * up)");
}

void CudaBackend::GatedMlp(const float* x, int64_t m, int64_t k, WeightRef wg, WeightRef wu, int64_t inter,
                           WeightRef wd, int64_t n_out, float* out, bool accumulate, float* gate, float* up,
                           uint32_t* h_amax) {
  if (!round_bf16() || m == 0 || inter == 0 || k == 0 || n_out == 0) {
    return Backend::GatedMlp(x, m, k, wg, wu, inter, wd, n_out, out, accumulate, gate, up, h_amax);
  }
  CheckGemmDims(m, inter, k, inter);
  CheckGemmDims(m, n_out, inter, n_out);
  Activate();
  // Scratch: x as bf16 and an f32 gate/up weight's bf16 copy for the first GEMMs, then (x no longer needed)
  // the down GEMM's room from the start.
  const int64_t xb = Align256(m * k * 2);
  const int64_t wb = std::max(wg.dtype == DType::kF32 ? inter * k * 2 : 0, wu.dtype == DType::kF32 ? inter * k * 2 : 0);
  char* scratch = static_cast<char*>(Scratch(std::max(xb + wb, Bf16GemmTmpBytes(wd, m, n_out, inter))));
  auto* xs = reinterpret_cast<uint16_t*>(scratch);
  Check(cuda::LaunchF32ToBf16(x, xs, m * k, stream_), "GatedMlp (x to bf16)");
  // Both bf16 products in up's [m, inter] f32 slots; h as bf16 in gate's.
  auto* g16 = reinterpret_cast<uint16_t*>(up);
  uint16_t* u16 = g16 + m * inter;
  auto* h16 = reinterpret_cast<uint16_t*>(gate);
  const float alpha = 1.f, beta = 0.f;
  const int M = static_cast<int>(m), N = static_cast<int>(inter), K = static_cast<int>(k);
  for (auto [w, prod] : {std::pair{wg, g16}, std::pair{wu, u16}}) {
    QF_ASSERT(w.dtype == DType::kBF16 || w.dtype == DType::kF32, "{} GatedMlp: weights must be BF16 or F32, got {}",
              name_, DTypeName(w.dtype));
    const void* wp = w.data;
    if (w.dtype == DType::kF32) {
      auto* ws = reinterpret_cast<uint16_t*>(scratch + xb);
      Check(cuda::LaunchF32ToBf16(static_cast<const float*>(w.data), ws, inter * k, stream_), "GatedMlp (w to bf16)");
      wp = ws;
    }
    CheckBlas(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wp, CUDA_R_16BF, K, xs, CUDA_R_16BF, K,
                           &beta, prod, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx (GatedMlp gate/up)");
  }
  Check(cuda::LaunchSiluMulToBf16(g16, u16, h16, m * inter, h_amax, stream_), "GatedMlp (silu * up)");
  Bf16Gemm(h16, wd, nullptr, out, m, n_out, inter, accumulate, n_out, scratch);
}

// --- fused ops ----------------------------------------------------------------------------------------

void CudaBackend::RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
  Activate();
  Check(cuda::LaunchRmsNorm(x, weight, y, rows, dim, eps, round_bf16(), stream_), "RmsNorm");
}

void CudaBackend::Rope(float* x, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, const float* cos,
                       const float* sin) {
  QF_ASSERT(head_dim % 2 == 0, "Rope: odd head_dim {}", head_dim);
  Activate();
  Check(cuda::LaunchRope(x, batch * heads, seq, head_dim, cos, sin, round_bf16(), stream_), "Rope");
}

void CudaBackend::RopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                              const float* cos, const float* sin) {
  QF_ASSERT(head_dim % 2 == 0, "RopeToHeads: odd head_dim {}", head_dim);
  Activate();
  Check(cuda::LaunchRopeToHeads(x, y, batch, heads, seq, head_dim, cos, sin, round_bf16(), stream_), "RopeToHeads");
}

void CudaBackend::CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch,
                                  int64_t heads, int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "CausalAttention: heads {} kv_heads {}", heads, kv_heads);
  if (batch == 0 || heads == 0 || seq == 0) return;
  QF_CHECK(head_dim <= cuda::kMaxAttentionHeadDim && cuda::AttentionSmemBytes(head_dim) <= smem_optin_,
           "{}: CausalAttention supports head_dim up to {} (got {})", name_, cuda::kMaxAttentionHeadDim, head_dim);
  QF_CHECK(batch <= 65535 && heads <= 65535 && seq <= std::numeric_limits<int>::max(),
           "{}: CausalAttention of batch {} heads {} seq {} exceeds the kernel's grid", name_, batch, heads, seq);
  Activate();
  Check(cuda::LaunchCausalAttention(q, k, v, out, batch, heads, kv_heads, seq, head_dim, scale, round_bf16(),
                                    round_bf16(), stream_),
        "CausalAttention");
}

// fp32 compute in both modes: in bf16 the operands hold bf16 values, whose products fp32 holds exactly, so
// this is the bf16 product with fp32 accumulation. (TF32 tensor cores would be exact too, but measured
// 3x slower than fp32 on these shapes on an H200: 2.4 against 0.8 ms for Llama-8B, 4 x 512 tokens.)
cublasComputeType_t CudaBackend::AttentionCompute() const { return CUBLAS_COMPUTE_32F; }

// Query heads h = g*group .. g*group+group-1 share kv head g and are contiguous in q ([group*seq, d]) and in
// probs ([group*seq, seq]), so one strided-batched GEMM over (batch, kv head) covers them all.
void CudaBackend::CausalAttentionProbs(const float* q, const float* k, float* probs, int64_t batch, int64_t heads,
                                       int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "CausalAttentionProbs: heads {} kv_heads {}", heads, kv_heads);
  if (batch == 0 || heads == 0 || seq == 0) return;
  const int64_t group = heads / kv_heads, d = head_dim;
  QF_CHECK(group * seq <= std::numeric_limits<int>::max() && d <= std::numeric_limits<int>::max() &&
               batch * kv_heads <= std::numeric_limits<int>::max(),
           "{}: CausalAttentionProbs of seq {} heads {} exceeds cuBLAS's int dimensions", name_, seq, heads);
  Activate();
  if (d == 0) {
    Zero(probs, batch * heads * seq * seq * 4);
  } else {
    const float alpha = scale, beta = 0.f;
    CheckBlas(cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(seq),
                                         static_cast<int>(group * seq), static_cast<int>(d), &alpha, k, CUDA_R_32F,
                                         static_cast<int>(d), seq * d, q, CUDA_R_32F, static_cast<int>(d),
                                         group * seq * d, &beta, probs, CUDA_R_32F, static_cast<int>(seq),
                                         group * seq * seq, static_cast<int>(batch * kv_heads), AttentionCompute(),
                                         CUBLAS_GEMM_DEFAULT),
              "cublasGemmStridedBatchedEx (attention scores)");
  }
  Check(cuda::LaunchCausalSoftmax(probs, batch * heads * seq, seq, round_bf16(), stream_), "CausalAttentionProbs");
}

// out is tokens-major, so the output of query head h has row stride heads*d: one strided-batched GEMM
// over the kv heads per (sequence, head within the group).
void CudaBackend::AttentionApply(const float* probs, const float* v, float* out, int64_t batch, int64_t heads,
                                 int64_t kv_heads, int64_t seq, int64_t head_dim) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "AttentionApply: heads {} kv_heads {}", heads, kv_heads);
  const int64_t group = heads / kv_heads, d = head_dim;
  if (batch == 0 || heads == 0 || seq == 0 || d == 0) return;
  QF_CHECK(seq <= std::numeric_limits<int>::max() && heads * d <= std::numeric_limits<int>::max(),
           "{}: AttentionApply of seq {} heads {} head_dim {} exceeds cuBLAS's int dimensions", name_, seq, heads, d);
  Activate();
  const float alpha = 1.f, beta = 0.f;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t hh = 0; hh < group; ++hh) {
      CheckBlas(cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d),
                                           static_cast<int>(seq), static_cast<int>(seq), &alpha,
                                           v + b * kv_heads * seq * d, CUDA_R_32F, static_cast<int>(d), seq * d,
                                           probs + (b * heads + hh) * seq * seq, CUDA_R_32F, static_cast<int>(seq),
                                           group * seq * seq, &beta, out + b * seq * heads * d + hh * d, CUDA_R_32F,
                                           static_cast<int>(heads * d), group * d, static_cast<int>(kv_heads),
                                           AttentionCompute(), CUBLAS_GEMM_DEFAULT),
                "cublasGemmStridedBatchedEx (attention apply)");
    }
  }
  if (round_bf16()) Check(cuda::LaunchRoundBf16(out, batch * seq * heads * d, stream_), "AttentionApply (bf16)");
}

void CudaBackend::Softmax(float* x, int64_t rows, int64_t cols) {
  Activate();
  Check(cuda::LaunchSoftmax(x, rows, cols, round_bf16(), stream_), "Softmax");
}

void CudaBackend::SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  Activate();
  Check(cuda::LaunchSiluMul(gate, up, out, n, round_bf16(), stream_), "SiluMul");
}

void CudaBackend::Add(float* y, const float* x, int64_t n) {
  Activate();
  Check(cuda::LaunchAdd(y, x, n, round_bf16(), stream_), "Add");
}

void CudaBackend::BlockGram(const float* x, int64_t rows, int64_t cols, int64_t block, float* h) {
  QF_ASSERT(block > 0 && cols % block == 0, "BlockGram: {} columns are not a multiple of the block {}", cols, block);
  QF_CHECK(rows <= std::numeric_limits<int>::max() && cols <= std::numeric_limits<int>::max(),
           "{}: BlockGram of {} x {} exceeds cuBLAS's int dimensions", name_, rows, cols);
  if (rows == 0 || cols == 0) return;
  Activate();
  // Column-major, x is [cols, rows] with ld cols; block j is the [block, rows] slice at row j·block, and
  // H_j = B_j·B_jᵀ ([block, block], symmetric, so its layout does not matter): one strided-batched GEMM.
  const float alpha = 1.f, beta = 1.f;
  const int b = static_cast<int>(block);
  CheckBlas(cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, b, b, static_cast<int>(rows), &alpha, x,
                                       CUDA_R_32F, static_cast<int>(cols), block, x, CUDA_R_32F,
                                       static_cast<int>(cols), block, &beta, h, CUDA_R_32F, b, block * block,
                                       static_cast<int>(cols / block), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmStridedBatchedEx (BlockGram)");
}

void CudaBackend::ToBf16(const float* x, uint16_t* y, int64_t n) {
  Activate();
  Check(cuda::LaunchF32ToBf16(x, y, n, stream_), "ToBf16");
}

void CudaBackend::FromBf16(const uint16_t* x, float* y, int64_t n) {
  Activate();
  Check(cuda::LaunchBf16ToF32(x, y, n, stream_), "FromBf16");
}

void CudaBackend::SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) {
  Activate();
  Check(cuda::LaunchSwapMiddleAxes(x, y, a, b, c, d, round_bf16(), stream_), "SwapMiddleAxes");
}

void CudaBackend::EmbedRows(const void* table, DType table_dtype, const int32_t* ids, float* out, int64_t rows,
                            int64_t dim) {
  int kind = cuda::kEmbedF32;
  if (table_dtype == DType::kF16) {
    kind = cuda::kEmbedF16;
  } else if (table_dtype == DType::kBF16) {
    kind = cuda::kEmbedBf16;
  } else {
    QF_CHECK(table_dtype == DType::kF32, "{}: EmbedRows reads F32, F16 or BF16 tables, not {}", name_,
             DTypeName(table_dtype));
  }
  Activate();
  Check(cuda::LaunchEmbedRows(table, kind, ids, out, rows, dim, round_bf16(), stream_), "EmbedRows");
}

void CudaBackend::TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                              int32_t* expert_ids, float* weights) {
  QF_ASSERT(top_k >= 1 && top_k <= experts, "TopKRouting: top_k {} of {} experts", top_k, experts);
  QF_CHECK(experts <= cuda::kMaxRoutingExperts, "{}: TopKRouting supports up to {} experts (got {})", name_,
           cuda::kMaxRoutingExperts, experts);
  Activate();
  Check(cuda::LaunchTopKRouting(logits, tokens, experts, top_k, renormalize, expert_ids, weights, round_bf16(),
                                stream_),
        "TopKRouting");
}

std::vector<int64_t> CudaBackend::GroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t tokens,
                                                    int top_k, int64_t experts, int32_t* rows, float* weights) {
  const int64_t n = tokens * top_k;
  QF_CHECK(experts <= cuda::kMaxGroupExperts && n <= std::numeric_limits<int32_t>::max(),
           "{}: GroupRowsByExpert supports up to {} experts and 2^31 pairs (got {} experts, {} pairs)", name_,
           cuda::kMaxGroupExperts, experts, n);
  Activate();
  const int64_t count_ints = cuda::GroupRowsScratchInts(n, experts);
  auto* scratch = static_cast<int32_t*>(Scratch((count_ints + experts + 2) * 4));
  int32_t* offsets_dev = scratch + count_ints;
  Check(cuda::LaunchGroupRowsByExpert(expert_ids, topk_w, n, top_k, experts, rows, weights, scratch, offsets_dev,
                                      round_bf16(), stream_),
        "GroupRowsByExpert");
  std::vector<int32_t> host(static_cast<size_t>(experts) + 2);
  Download(host.data(), offsets_dev, (experts + 2) * 4);
  QF_ASSERT(host[static_cast<size_t>(experts) + 1] == 0, "GroupRowsByExpert: an expert id outside [0, {})", experts);
  return std::vector<int64_t>(host.begin(), host.end() - 1);
}

void CudaBackend::ScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols) {
  Activate();
  Check(cuda::LaunchScaleColumns(x, scale, rows, cols, round_bf16(), stream_), "ScaleColumns");
}

void CudaBackend::SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) {
  Activate();
  Check(cuda::LaunchSigmoidScaleRows(x, gate_logits, rows, cols, round_bf16(), stream_), "SigmoidScaleRows");
}

void CudaBackend::GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) {
  Activate();
  Check(cuda::LaunchGatherRows(x, rows_idx, out, rows, dim, round_bf16(), stream_), "GatherRows");
}

void CudaBackend::ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y,
                                 int64_t rows, int64_t dim) {
  Activate();
  Check(cuda::LaunchScatterAddRows(x, rows_idx, row_weights, y, rows, dim, round_bf16(), stream_), "ScatterAddRows");
}

void CudaBackend::AmaxFold(const float* x, int64_t n, uint32_t* slot) {
  Activate();
  Check(cuda::LaunchAmaxFold(x, n, slot, stream_), "AmaxFold");
}

float CudaBackend::Amax(const float* x, int64_t n) {
  Activate();
  auto* bits_dev = static_cast<uint32_t*>(Scratch(4));
  Check(cuda::LaunchAmax(x, n, bits_dev, stream_), "Amax");
  uint32_t bits = 0;
  Download(&bits, bits_dev, 4);
  if (bits > 0x7F800000u) return std::numeric_limits<float>::quiet_NaN();
  return std::bit_cast<float>(bits);
}

void CudaBackend::CrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows, int64_t vocab) {
  if (rows <= 0) return;
  Activate();
  auto* nll_dev = static_cast<double*>(Scratch(rows * 8));
  Check(cuda::LaunchCrossEntropy(logits, targets, nll_dev, rows, vocab, stream_), "CrossEntropy");
  Download(nll, nll_dev, rows * 8);
}

// --- quantization ops (cuda_quant.h) -----------------------------------------------------------------------

std::vector<float> CudaBackend::QuantAmax(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                                          std::string_view what) {
  Activate();
  return cuda::QuantAmax(*this, stream_, spec, x, shape, what);
}

void CudaBackend::FakeQuant(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                            std::span<const float> amax, float* out, std::optional<float> global_amax,
                            std::string_view what) {
  Activate();
  cuda::FakeQuant(*this, stream_, spec, x, shape, amax, out, global_amax, what, round_bf16());
}

bool CudaBackend::PackNvfp4(const float* w, int64_t rows, int64_t cols, float weight_scale_2, uint8_t* packed,
                            uint8_t* scales) {
  Activate();
  return cuda::PackNvfp4(*this, stream_, w, rows, cols, weight_scale_2, packed, scales);
}

bool CudaBackend::EncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes) {
  Activate();
  return cuda::EncodeFp8(*this, stream_, w, scales, n, group, codes);
}

ErrorSums CudaBackend::Nvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t rows,
                                  int64_t cols, float weight_scale_2) {
  Activate();
  return cuda::Nvfp4Error(*this, stream_, w, packed, scales, rows, cols, weight_scale_2);
}

ErrorSums CudaBackend::Fp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group) {
  Activate();
  return cuda::Fp8Error(*this, stream_, w, codes, scales, n, group);
}

}  // namespace

std::unique_ptr<Backend> CreateCudaBackend(int device, ComputeDType compute_dtype) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) cudaGetLastError();
  QF_CHECK(e == cudaSuccess, "--device cuda:{}: no usable CUDA driver or GPU ({}: {})", device, cudaGetErrorName(e),
           cudaGetErrorString(e));
  QF_CHECK(count > 0, "--device cuda:{}: the CUDA driver reports no GPU", device);
  QF_CHECK(device >= 0 && device < count, "--device cuda:{}: this machine has {} GPU{} (cuda:0 .. cuda:{})", device,
           count, count == 1 ? "" : "s", count - 1);
  return std::make_unique<CudaBackend>(device, compute_dtype);
}

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace qforge
