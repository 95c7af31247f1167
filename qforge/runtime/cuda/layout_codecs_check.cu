// Device check of numerics/layout.h: its codecs, compiled for the GPU, against CUDA's own conversions
// (cuda_fp8.h / cuda_fp6.h / cuda_fp4.h, the casts ModelOpt's kernels use) over every fp32 bit pattern.
//
// Build and run (any CUDA >= 12.8 GPU; CMake target qforge_cuda_codecs_check with -DQF_ENABLE_CUDA=ON, or):
//   nvcc -std=c++20 -O2 -arch=native -I. qforge/runtime/cuda/layout_codecs_check.cu -o /tmp/codecs_check
//   /tmp/codecs_check          # exit 0 iff no finite/inf input disagrees; NaN inputs are counted apart
// Compared: E4M3 and E5M2 with __NV_SATFINITE (ModelOpt fake quant), E2M1 / E3M2 / E2M3 with
// round-to-nearest (these formats always saturate), E8M0 with cudaRoundPosInf (ceil, how MX scales are
// derived) for positive finite inputs, and the decoders of every code against CUDA's decoders.
// Built as a shared library (nvcc -shared -Xcompiler -fPIC ...), its qf_* C functions let
// layout_codecs_check_torch.py compare the non-saturating FP8 and the BF16/FP16 encoders with PyTorch's casts.
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "qforge/numerics/layout.h"

namespace {

enum Check { kE4M3, kE5M2, kE2M1, kE3M2, kE2M3, kE8M0, kNumChecks };
const char* kNames[kNumChecks] = {"e4m3 (satfinite)", "e5m2 (satfinite)", "e2m1 (rn)", "e3m2 (rn)", "e2m3 (rn)",
                                  "e8m0 (ceil)"};

struct Counters {
  unsigned long long mismatch[kNumChecks];
  unsigned long long nan_mismatch[kNumChecks];
  unsigned int first_bad[kNumChecks];
};

__device__ void Record(Counters* c, int check, uint32_t bits, bool nan) {
  if (nan) {
    atomicAdd(&c->nan_mismatch[check], 1ull);
  } else if (atomicAdd(&c->mismatch[check], 1ull) == 0) {
    c->first_bad[check] = bits;
  }
}

__global__ void EncodeKernel(uint64_t base, uint64_t count, Counters* c) {
  const uint64_t i = base + blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x;
  if (i >= base + count) return;
  const uint32_t bits = static_cast<uint32_t>(i);
  const float x = __uint_as_float(bits);
  const bool nan = isnan(x);
  {
    const unsigned ref = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    const unsigned mine = qforge::EncodeE4M3(x, qforge::Overflow::kSaturate);
    if (ref != mine) Record(c, kE4M3, bits, nan);
  }
  {
    const unsigned ref = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
    const unsigned mine = qforge::EncodeE5M2(x, qforge::Overflow::kSaturate);
    if (ref != mine) Record(c, kE5M2, bits, nan);
  }
  {
    const unsigned ref = __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest) & 0xFu;
    const unsigned mine = qforge::EncodeE2M1(x);
    if (ref != mine) Record(c, kE2M1, bits, nan);
  }
  {
    const unsigned ref = __nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest) & 0x3Fu;
    const unsigned mine = qforge::EncodeE3M2(x);
    if (ref != mine) Record(c, kE3M2, bits, nan);
  }
  {
    const unsigned ref = __nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest) & 0x3Fu;
    const unsigned mine = qforge::EncodeE2M3(x);
    if (ref != mine) Record(c, kE2M3, bits, nan);
  }
  if (x > 0.0f && isfinite(x)) {
    const unsigned ref = __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf);
    const unsigned mine = qforge::EncodeE8M0Ceil(x);
    if (ref != mine) Record(c, kE8M0, bits, false);
  }
}

// Decoders: every code, device-side layout.h vs CUDA's conversions back to float.
__global__ void DecodeKernel(unsigned int* bad) {
  const unsigned code = threadIdx.x;  // 0..255
  auto same = [](float a, float b) { return __float_as_uint(a) == __float_as_uint(b) || (isnan(a) && isnan(b)); };
  const float e4 = __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E4M3)));
  if (!same(e4, qforge::DecodeE4M3(static_cast<uint8_t>(code)))) atomicAdd(&bad[0], 1u);
  const float e5 = __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code), __NV_E5M2)));
  if (!same(e5, qforge::DecodeE5M2(static_cast<uint8_t>(code)))) atomicAdd(&bad[1], 1u);
  if (code < 16) {
    const float f4 = __half2float(__half(__nv_cvt_fp4_to_halfraw(static_cast<__nv_fp4_storage_t>(code), __NV_E2M1)));
    if (!same(f4, qforge::DecodeE2M1(static_cast<uint8_t>(code)))) atomicAdd(&bad[2], 1u);
  }
  if (code < 64) {
    const float a = __half2float(__half(__nv_cvt_fp6_to_halfraw(static_cast<__nv_fp6_storage_t>(code), __NV_E3M2)));
    if (!same(a, qforge::DecodeE3M2(static_cast<uint8_t>(code)))) atomicAdd(&bad[3], 1u);
    const float b = __half2float(__half(__nv_cvt_fp6_to_halfraw(static_cast<__nv_fp6_storage_t>(code), __NV_E2M3)));
    if (!same(b, qforge::DecodeE2M3(static_cast<uint8_t>(code)))) atomicAdd(&bad[4], 1u);
  }
}

}  // namespace

extern "C" {
void qf_encode_e4m3_nonsat(const float* x, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = qforge::EncodeE4M3(x[i], qforge::Overflow::kNonSat);
}
void qf_encode_e5m2_nonsat(const float* x, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = qforge::EncodeE5M2(x[i], qforge::Overflow::kNonSat);
}
void qf_encode_bf16(const float* x, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = qforge::F32ToBf16Rne(x[i]);
}
void qf_encode_f16(const float* x, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = qforge::F32ToF16Rne(x[i]);
}
}

int main() {
  Counters* c = nullptr;
  unsigned int* dbad = nullptr;
  if (cudaMallocManaged(&c, sizeof(Counters)) != cudaSuccess || cudaMallocManaged(&dbad, 5 * sizeof(unsigned)) != cudaSuccess) {
    std::fprintf(stderr, "no CUDA device\n");
    return 2;
  }
  *c = Counters{};
  for (int i = 0; i < 5; ++i) dbad[i] = 0;
  const uint64_t total = uint64_t{1} << 32, batch = uint64_t{1} << 30;
  for (uint64_t base = 0; base < total; base += batch) {
    EncodeKernel<<<static_cast<unsigned>(batch / 256), 256>>>(base, batch, c);
  }
  DecodeKernel<<<1, 256>>>(dbad);
  if (cudaDeviceSynchronize() != cudaSuccess) {
    std::fprintf(stderr, "kernel failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 2;
  }
  int status = 0;
  for (int k = 0; k < kNumChecks; ++k) {
    std::printf("%-18s all 2^32 inputs: %llu mismatches", kNames[k], c->mismatch[k]);
    if (c->mismatch[k]) {
      const uint32_t b = c->first_bad[k];
      float x;
      std::memcpy(&x, &b, 4);
      std::printf(" (first: bits 0x%08x = %g)", b, x);
      status = 1;
    }
    std::printf(", NaN inputs encoded differently: %llu\n", c->nan_mismatch[k]);
  }
  const char* dnames[5] = {"e4m3", "e5m2", "e2m1", "e3m2", "e2m3"};
  for (int k = 0; k < 5; ++k) {
    std::printf("decode %-5s every code: %u mismatches\n", dnames[k], dbad[k]);
    if (dbad[k]) status = 1;
  }
  return status;
}
