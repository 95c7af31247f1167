// Backend memory bookkeeping (Buffer, counted copies) and the backend factory.
#include "qforge/runtime/backend.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "qforge/base/error.h"
#include "qforge/base/strings.h"
#include "qforge/tensor/tensor.h"

#ifdef QF_HAVE_CUDA
#include "qforge/runtime/cuda/cuda_backend.h"
#endif

namespace qforge {

std::string_view ComputeDTypeName(ComputeDType d) { return d == ComputeDType::kBF16 ? "bf16" : "f32"; }

std::optional<ComputeDType> ParseComputeDType(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32") return ComputeDType::kF32;
  if (name == "bf16" || name == "bfloat16") return ComputeDType::kBF16;
  return std::nullopt;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    Reset();
    owner_ = o.owner_;
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    adopted_ = std::move(o.adopted_);
    o.owner_ = nullptr;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Buffer::Reset() {
  if (ptr_ != nullptr && owner_ != nullptr) owner_->Release(*this);
  owner_ = nullptr;
  ptr_ = nullptr;
  bytes_ = 0;
  adopted_.reset();
}

void Backend::Release(Buffer& b) {
  if (b.adopted_) return;  // a view: the owner frees the host memory
  FreeBytes(b.ptr_, b.bytes_);
  stats_.allocated_bytes -= b.bytes_;
}

Buffer Backend::Alloc(int64_t bytes) {
  QF_ASSERT(bytes >= 0, "Alloc({})", bytes);
  Buffer b;
  if (bytes == 0) return b;
  b.ptr_ = AllocBytes(bytes);
  b.owner_ = this;
  b.bytes_ = bytes;
  stats_.allocated_bytes += bytes;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return b;
}

Buffer Backend::AllocCopy(const void* host, int64_t bytes) {
  Buffer b = Alloc(bytes);
  if (bytes > 0) Upload(b.data(), host, bytes);
  return b;
}

Buffer Backend::Adopt(const void* host, int64_t bytes, std::shared_ptr<const void> owner) {
  QF_ASSERT(host_accessible(), "Adopt on {}: backend memory is not host memory", name());
  Buffer b;
  b.owner_ = this;
  b.ptr_ = const_cast<void*>(host);  // read-only by contract (ops only read adopted weights)
  b.bytes_ = bytes;
  b.adopted_ = owner ? std::move(owner) : std::shared_ptr<const void>(host, [](const void*) {});
  return b;
}

int64_t Backend::UploadInBackground(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner) {
  if (bytes <= 0) return 0;
  if (!host_accessible()) {
    stats_.h2d_bytes += bytes;
    ++stats_.h2d_copies;
  }
  return CopyToDeviceInBackground(dst, host, bytes, std::move(owner));
}

int64_t Backend::DownloadInBackground(void* host, const void* src, int64_t bytes) {
  if (bytes <= 0) return 0;
  if (!host_accessible()) {
    stats_.d2h_bytes += bytes;
    ++stats_.d2h_copies;
  }
  return CopyToHostInBackground(host, src, bytes);
}

void Backend::Upload(void* dst, const void* host, int64_t bytes) {
  if (bytes <= 0) return;
  CopyToDevice(dst, host, bytes);
  if (!host_accessible()) {
    stats_.h2d_bytes += bytes;
    ++stats_.h2d_copies;
  }
}

void Backend::Download(void* host, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  CopyToHost(host, src, bytes);
  if (!host_accessible()) {
    stats_.d2h_bytes += bytes;
    ++stats_.d2h_copies;
  }
}

Buffer Backend::UploadWeight(const float* host, int64_t numel, std::shared_ptr<const void> owner) {
  QF_ASSERT(compute_dtype_ == ComputeDType::kF32, "{}: UploadWeight in {} needs a backend override", name(),
            ComputeDTypeName(compute_dtype_));
  if (host_accessible()) return Adopt(host, numel * 4, std::move(owner));
  return AllocCopy(host, numel * 4);
}

Buffer Backend::UploadWeightStored(const void* host, DType dtype, int64_t numel, std::shared_ptr<const void> owner) {
  if (dtype == DType::kF32) return UploadWeight(static_cast<const float*>(host), numel, std::move(owner));
  auto f32 = std::make_shared<std::vector<float>>(static_cast<size_t>(numel));
  ConvertToF32(dtype, host, f32->data(), numel);
  return UploadWeight(f32->data(), numel, f32);
}

void Backend::AmaxFold(const float* x, int64_t n, uint32_t* slot) {
  if (n <= 0) return;
  const float a = Amax(x, n);
  const uint32_t bits = std::isnan(a) ? 0x7FC00000u : std::bit_cast<uint32_t>(a);
  uint32_t old = 0;
  Download(&old, slot, sizeof old);
  if (bits > old) Upload(slot, &bits, sizeof bits);
}

void Backend::RopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                          const float* cos, const float* sin) {
  SwapMiddleAxes(x, y, batch, seq, heads, head_dim);
  Rope(y, batch, heads, seq, head_dim, cos, sin);
}

void Backend::GemmShared(const float* x, int64_t m, int64_t k, std::span<const GemmOut> outs) {
  for (const GemmOut& o : outs) Gemm(x, o.w, o.bias, o.y, m, o.n, k, false);
}

void Backend::GatedMlp(const float* x, int64_t m, int64_t k, WeightRef wg, WeightRef wu, int64_t inter, WeightRef wd,
                       int64_t n_out, float* out, bool accumulate, float* gate, float* up, uint32_t* h_amax) {
  GatedLinear(x, wg, wu, gate, up, m, inter, k);
  if (h_amax != nullptr) AmaxFold(gate, m * inter, h_amax);
  Gemm(gate, wd, nullptr, out, m, n_out, inter, accumulate);
}

void Backend::GatedLinear(const float* x, WeightRef wg, WeightRef wu, float* gate, float* up, int64_t m, int64_t n,
                          int64_t k) {
  Gemm(x, wg, nullptr, gate, m, n, k, false);
  Gemm(x, wu, nullptr, up, m, n, k, false);
  SiluMul(gate, up, gate, m * n);
}

ComputeDType DefaultComputeDType(std::string_view name) {
  return StartsWith(name, "cuda") ? ComputeDType::kBF16 : ComputeDType::kF32;
}

std::unique_ptr<Backend> CreateCpuBackend(ComputeDType compute_dtype);  // runtime/cpu/cpu_backend.cc

std::unique_ptr<Backend> CreateBackend(std::string_view name, ComputeDType compute_dtype) {
  if (name == "cpu") {
    QF_CHECK(compute_dtype == ComputeDType::kF32,
             "--compute-dtype {}: the CPU backend computes in f32 only (use --device cuda for bf16)",
             ComputeDTypeName(compute_dtype));
    return CreateCpuBackend(compute_dtype);
  }
  if (name == "cuda" || StartsWith(name, "cuda:")) {
    int index = 0;
    if (name.size() > 5) {
      const std::string digits(name.substr(5));
      QF_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 4,
               "--device '{}': expected cuda or cuda:N with N a GPU index", name);
      index = std::stoi(digits);
    }
#ifdef QF_HAVE_CUDA
    return CreateCudaBackend(index, compute_dtype);
#else
    (void)index;
    QF_CHECK(false, "--device {}: this qforge was built without CUDA; build it with scripts/build_cuda.sh "
             "(cmake -DQF_ENABLE_CUDA=ON)", name);
#endif
  }
  QF_CHECK(false, "--device '{}': unknown backend (choices: cpu, cuda, cuda:N)", name);
  return nullptr;
}

std::vector<std::string> AvailableBackends() {
  std::vector<std::string> out = {"cpu"};
#ifdef QF_HAVE_CUDA
  for (int i = 0; i < CudaDeviceCount(); ++i) out.push_back("cuda:" + std::to_string(i));
#endif
  return out;
}

}  // namespace qforge
