// The CPU backend's quantization ops: numerics' entry points and reference kernels with the SIMD kernels
// of quant_kernels.h passed in (bit-identical either way; host memory is backend memory here).
#include <span>

#include "qforge/numerics/amax_search.h"
#include "qforge/numerics/encode.h"
#include "qforge/numerics/error_sums.h"
#include "qforge/numerics/layout.h"
#include "qforge/numerics/qdq.h"
#include "qforge/runtime/cpu/cpu_backend.h"
#include "qforge/runtime/cpu/quant_kernels.h"

namespace qforge {
namespace {

int64_t Numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::vector<float> CpuBackend::QuantAmax(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                                         std::string_view what) {
  const std::span<const float> xs(x, static_cast<size_t>(Numel(shape)));
  return ComputeAmax(spec, xs, shape, what, &cpu::HostKernels());
}

void CpuBackend::FakeQuant(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                           std::span<const float> amax, float* out, std::optional<float> global_amax,
                           std::string_view what) {
  const size_t n = static_cast<size_t>(Numel(shape));
  qforge::FakeQuant(spec, std::span<const float>(x, n), shape, amax, std::span<float>(out, n), global_amax, what,
                    &cpu::HostKernels());
}

bool CpuBackend::PackNvfp4(const float* w, int64_t rows, int64_t cols, float weight_scale_2, uint8_t* packed,
                           uint8_t* scales) {
  const size_t n = static_cast<size_t>(rows * cols);
  const std::span<const float> ws(w, n);
  const std::span<uint8_t> ps(packed, n / 2), ss(scales, n / 16);
  return cpu::PackNvfp4Fast(ws, rows, cols, weight_scale_2, ps, ss) ||
         PackNvfp4Reference(ws, rows, cols, weight_scale_2, ps, ss);
}

bool CpuBackend::EncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes) {
  const size_t un = static_cast<size_t>(n);
  const size_t ngroups = group > 0 ? static_cast<size_t>((n + group - 1) / group) : 0;
  const std::span<const float> ws(w, un), ss(scales, ngroups);
  const std::span<uint8_t> cs(codes, un);
  return cpu::EncodeFp8Fast(ws, ss, group, cs) || EncodeFp8Reference(ws, ss, group, cs);
}

// Error sums over n elements with dq(i) the decode.
template <typename Decode>
ErrorSums SumErrors(const float* w, int64_t n, Decode dq) {
  const auto [sq_err, sq_ref] = EncodingErrorSums(w, n, dq);
  return {sq_err, sq_ref};
}

ErrorSums CpuBackend::Nvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t rows,
                                 int64_t cols, float weight_scale_2) {
  return SumErrors(w, rows * cols, [&](int64_t i) {
    const uint8_t byte = packed[i / 2];
    return DecodeNvfp4Element((i % 2 == 0) ? (byte & 0xF) : (byte >> 4), scales[i / 16], weight_scale_2);
  });
}

bool CpuBackend::Nvfp4SweepBlocks(const float* w, int64_t rows, int64_t cols, std::span<const float> scales,
                                  int32_t* index) {
  Nvfp4SweepRowBlocks(w, rows, cols, scales, index);
  return true;
}

ErrorSums CpuBackend::Fp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group) {
  return SumErrors(w, n, [&](int64_t i) { return DecodeE4M3(codes[i]) * scales[i / group]; });
}

}  // namespace qforge
