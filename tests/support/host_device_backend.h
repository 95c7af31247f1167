// A backend that behaves like a device for the code above it (device() is kCuda, so it is not host
// accessible: ForwardModel uploads stored weights, ActivationStore uses its device tier, layerwise releases
// the embedding and lm_head, Upload / Download are counted) while its memory is host memory and every op is
// the CPU backend's. It runs the device-only paths of forward/ and calib/ on machines without a GPU, where
// their results must equal the CPU backend's bit for bit.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>

#include "qforge/runtime/backend.h"

namespace qforge::testing_support {

class HostDeviceBackend final : public Backend {
 public:
  HostDeviceBackend() : Backend(ComputeDType::kF32), cpu_(DefaultCpuBackend()) {}
  std::string_view name() const override { return "host-device"; }
  std::unique_ptr<Backend> Fork() const override {
    auto f = std::make_unique<HostDeviceBackend>();
    f->free_bytes = free_bytes;
    return f;
  }
  Device device() const override { return Device::kCuda; }
  void Copy(void* dst, const void* src, int64_t bytes) override { cpu_.Copy(dst, src, bytes); }
  void Zero(void* dst, int64_t bytes) override { cpu_.Zero(dst, bytes); }
  std::pair<int64_t, int64_t> MemoryInfo() const override { return {free_bytes, free_bytes}; }
  const HostQuantKernels* host_kernels() const override { return cpu_.host_kernels(); }

  void Gemm(const float* x, WeightRef w, const float* b, float* y, int64_t m, int64_t n, int64_t k, bool acc,
            int64_t ldy) override {
    cpu_.Gemm(x, w, b, y, m, n, k, acc, ldy);
  }
  void RmsNorm(const float* x, const float* w, float* y, int64_t r, int64_t d, float eps) override {
    cpu_.RmsNorm(x, w, y, r, d, eps);
  }
  void Rope(float* x, int64_t b, int64_t h, int64_t s, int64_t d, const float* c, const float* sn) override {
    cpu_.Rope(x, b, h, s, d, c, sn);
  }
  void CausalAttention(const float* q, const float* k, const float* v, float* o, int64_t b, int64_t h, int64_t g,
                       int64_t s, int64_t d, float scale) override {
    cpu_.CausalAttention(q, k, v, o, b, h, g, s, d, scale);
  }
  void CausalAttentionProbs(const float* q, const float* k, float* p, int64_t b, int64_t h, int64_t g, int64_t s,
                            int64_t d, float scale) override {
    cpu_.CausalAttentionProbs(q, k, p, b, h, g, s, d, scale);
  }
  void AttentionApply(const float* p, const float* v, float* o, int64_t b, int64_t h, int64_t g, int64_t s,
                      int64_t d) override {
    cpu_.AttentionApply(p, v, o, b, h, g, s, d);
  }
  void Softmax(float* x, int64_t r, int64_t c) override { cpu_.Softmax(x, r, c); }
  void SiluMul(const float* g, const float* u, float* o, int64_t n) override { cpu_.SiluMul(g, u, o, n); }
  void Add(float* y, const float* x, int64_t n) override { cpu_.Add(y, x, n); }
  void ToBf16(const float* x, uint16_t* y, int64_t n) override { cpu_.ToBf16(x, y, n); }
  void BlockGram(const float* x, int64_t r, int64_t c, int64_t b, float* h) override { cpu_.BlockGram(x, r, c, b, h); }
  void FromBf16(const uint16_t* x, float* y, int64_t n) override { cpu_.FromBf16(x, y, n); }
  void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) override {
    cpu_.SwapMiddleAxes(x, y, a, b, c, d);
  }
  void EmbedRows(const void* t, DType dt, const int32_t* ids, float* out, int64_t rows, int64_t dim) override {
    cpu_.EmbedRows(t, dt, ids, out, rows, dim);
  }
  void TopKRouting(const float* l, int64_t t, int64_t e, int k, bool r, int32_t* ids, float* w) override {
    cpu_.TopKRouting(l, t, e, k, r, ids, w);
  }
  std::vector<int64_t> GroupRowsByExpert(const int32_t* ids, const float* w, int64_t t, int k, int64_t e,
                                         int32_t* rows, float* weights) override {
    return cpu_.GroupRowsByExpert(ids, w, t, k, e, rows, weights);
  }
  void SigmoidScaleRows(float* x, const float* g, int64_t r, int64_t c) override { cpu_.SigmoidScaleRows(x, g, r, c); }
  void ScaleColumns(float* x, const float* s, int64_t r, int64_t c) override { cpu_.ScaleColumns(x, s, r, c); }
  void GatherRows(const float* x, const int32_t* i, float* o, int64_t r, int64_t d) override {
    cpu_.GatherRows(x, i, o, r, d);
  }
  void ScatterAddRows(const float* x, const int32_t* i, const float* w, float* y, int64_t r, int64_t d) override {
    cpu_.ScatterAddRows(x, i, w, y, r, d);
  }
  float Amax(const float* x, int64_t n) override { return cpu_.Amax(x, n); }
  void CrossEntropy(const float* l, const int32_t* t, double* nll, int64_t r, int64_t v) override {
    cpu_.CrossEntropy(l, t, nll, r, v);
  }
  std::vector<float> QuantAmax(const QuantSpec& s, const float* x, std::span<const int64_t> shape,
                               std::string_view what) override {
    return cpu_.QuantAmax(s, x, shape, what);
  }
  void FakeQuant(const QuantSpec& s, const float* x, std::span<const int64_t> shape, std::span<const float> amax,
                 float* out, std::optional<float> g, std::string_view what) override {
    cpu_.FakeQuant(s, x, shape, amax, out, g, what);
  }
  bool PackNvfp4(const float* w, int64_t r, int64_t c, float ws2, uint8_t* p, uint8_t* s) override {
    return cpu_.PackNvfp4(w, r, c, ws2, p, s);
  }
  ErrorSums Nvfp4Error(const float* w, const uint8_t* p, const uint8_t* s, int64_t r, int64_t c, float ws2) override {
    return cpu_.Nvfp4Error(w, p, s, r, c, ws2);
  }
  bool Nvfp4SweepBlocks(const float* w, int64_t r, int64_t c, std::span<const float> s, int32_t* i) override {
    return cpu_.Nvfp4SweepBlocks(w, r, c, s, i);
  }
  ErrorSums Fp8Error(const float* w, const uint8_t* c, const float* s, int64_t n, int64_t g) override {
    return cpu_.Fp8Error(w, c, s, n, g);
  }
  bool EncodeFp8(const float* w, const float* s, int64_t n, int64_t g, uint8_t* c) override {
    return cpu_.EncodeFp8(w, s, n, g, c);
  }

  int64_t free_bytes = int64_t{1} << 34;  // what MemoryInfo reports (sets the layerwise device budget)

  // Background uploads copy nothing until they are awaited, and their destination holds NaN until then: a
  // caller that uses the data without AwaitUpload computes NaN, deterministically.
  void AwaitUpload(int64_t ticket) override {
    while (!pending_.empty() && pending_.front().ticket <= ticket) {
      const Pending& p = pending_.front();
      std::memcpy(p.dst, p.host, static_cast<size_t>(p.bytes));
      pending_.pop_front();
      ++awaited_uploads;
    }
  }
  // Background downloads likewise copy nothing until they are awaited, and the host bytes hold 0xFF (NaN in
  // f32 and bf16) until then: a caller that reads them without AwaitDownload reads NaN, and one that frees
  // the source before it has the copy read freed memory (which AddressSanitizer reports).
  void AwaitDownload(int64_t ticket) override {
    while (!pending_downloads_.empty() && pending_downloads_.front().ticket <= ticket) {
      const Pending& p = pending_downloads_.front();
      std::memcpy(const_cast<void*>(p.host), p.dst, static_cast<size_t>(p.bytes));
      pending_downloads_.pop_front();
      ++awaited_downloads;
    }
  }
  int64_t background_downloads = 0;  // submitted
  int64_t awaited_downloads = 0;     // copied by an AwaitDownload
  int64_t pending_download_count() const { return static_cast<int64_t>(pending_downloads_.size()); }
  int64_t background_uploads = 0;  // submitted
  int64_t awaited_uploads = 0;     // copied by an AwaitUpload
  int64_t pending_uploads() const { return static_cast<int64_t>(pending_.size()); }

 protected:
  void* AllocBytes(int64_t bytes) override {
    return std::aligned_alloc(64, (static_cast<size_t>(bytes) + 63) & ~size_t{63});
  }
  void FreeBytes(void* p, int64_t) override { std::free(p); }
  void CopyToDevice(void* dst, const void* host, int64_t bytes) override { std::memcpy(dst, host, bytes); }
  void CopyToHost(void* host, const void* src, int64_t bytes) override { std::memcpy(host, src, bytes); }
  int64_t CopyToDeviceInBackground(void* dst, const void* host, int64_t bytes,
                                   std::shared_ptr<const void> owner) override {
    auto* f = static_cast<float*>(dst);
    for (int64_t i = 0; i < bytes / 4; ++i) f[i] = std::numeric_limits<float>::quiet_NaN();
    pending_.push_back(Pending{dst, host, bytes, std::move(owner), ++last_ticket_});
    ++background_uploads;
    return last_ticket_;
  }
  int64_t CopyToHostInBackground(void* host, const void* src, int64_t bytes) override {
    std::memset(host, 0xFF, static_cast<size_t>(bytes));
    // (dst: the backend bytes, read when awaited; host: where they go)
    pending_downloads_.push_back(Pending{const_cast<void*>(src), host, bytes, nullptr, ++last_download_ticket_});
    ++background_downloads;
    return last_download_ticket_;
  }

 private:
  Backend& cpu_;
  struct Pending {
    void* dst;
    const void* host;
    int64_t bytes;
    std::shared_ptr<const void> owner;
    int64_t ticket;
  };
  std::deque<Pending> pending_;
  int64_t last_ticket_ = 0;
  std::deque<Pending> pending_downloads_;
  int64_t last_download_ticket_ = 0;
};

}  // namespace qforge::testing_support
