// The CUDA backend's quantization ops (Backend::QuantAmax / FakeQuant / PackNvfp4 / EncodeFp8 on device
// memory), bit-identical to the scalar references of numerics/qdq.h and numerics/encode.h.
//
// Each function validates on the host exactly as the reference does (MakeQdqPlan, the amax span rules) and
// then runs kernels (cuda_quant.cu) on `stream`. What crosses to the host is a few scalars only: the amax
// values QuantAmax returns, the 32-byte statistics of a reduction, a flag of the encoders. Activations
// never do on the calibration paths (per-tensor amax, FP8 / INT per-tensor or per-channel QDQ, NVFP4
// dynamic and MX QDQ, KV-cache per-tensor). They do only
//   * on an error path: after the device found a non-finite or (unsigned specs) negative value, or the amax
//     span is invalid, the input is downloaded and the reference run on it, so that the same qforge::Error
//     with the same text (first offending index, value) is thrown;
//   * for a group layout of more than quant::kMaxRank dims after merging (a rank > 8 tensor with
//     alternating kept and blocked dims): download -> reference -> upload, counted by HostFallbackCount().
//
// Layouts on the device: one group (per tensor, constant amax, a broadcast amax), any per-axis layout,
// static blocks on any axes, NVFP4 dynamic / MX blocks along any axis (a fused kernel for 16- and 32-blocks
// along the last dim, partial last blocks included). Element formats: INT 2..16 bits (signed, unsigned,
// narrow range), FP8 E4M3, NVFP4 dynamic and static (incl. four_over_six), MX with E4M3 / E5M2 / E3M2 /
// E2M3 / E2M1 / INT8 elements.
//
// Memory: scratch comes from be.Alloc (one allocation per call, released when the call returns; the ops
// queued on `stream` before the release are ordered before any later use of that memory because the backend
// uses this one stream). Transfers go through be.Upload / be.Download, so they are counted in be.stats().
// Thread-compatible: one backend (and stream) per thread, as Backend requires.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "qforge/numerics/quant_spec.h"
#include "qforge/runtime/backend.h"

namespace qforge::cuda {

// numerics ComputeAmax of x (device, `shape`): the same values in the same order, the same errors (naming
// `what`). Synchronizes the stream (the amax values come back to the host).
std::vector<float> QuantAmax(Backend& be, cudaStream_t stream, const QuantSpec& spec, const float* x,
                             std::span<const int64_t> shape, std::string_view what);

// numerics FakeQuant of x into out (both device, `shape`; out may equal x) with the host `amax` and
// `global_amax` of that contract. round_bf16: the backend computes in bf16 (ComputeDType::kBF16), so every
// output is rounded to bf16 (RNE) after the QDQ, as ModelOpt casts the QDQ result back to the input dtype.
// Asynchronous (stream-ordered) except for unsigned integer specs, whose negative-input check waits for a
// flag, and the error paths.
void FakeQuant(Backend& be, cudaStream_t stream, const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
               std::span<const float> amax, float* out, std::optional<float> global_amax, std::string_view what,
               bool round_bf16);

// NVFP4 export packing of w [rows, cols] (device; cols % 16 == 0, else qforge::Error) with weight_scale_2:
// packed [rows, cols/2] (element 2k in the low nibble), scales [rows, cols/16] E4M3 bytes, both device.
// Returns false if some weight is not finite (packed / scales then hold nothing useful). Synchronizes.
bool PackNvfp4(Backend& be, cudaStream_t stream, const float* w, int64_t rows, int64_t cols, float weight_scale_2,
               uint8_t* packed, uint8_t* scales);

// FP8 export cast codes[i] = e4m3_nonsat(w[i] / scales[i / group]), i < n (all device; group > 0, else
// qforge::Error). Returns false if some w[i] is not finite. Synchronizes.
bool EncodeFp8(Backend& be, cudaStream_t stream, const float* w, const float* scales, int64_t n, int64_t group,
               uint8_t* codes);

// Backend::Nvfp4Error / Fp8Error on device (all pointers device). Synchronizes (the sums come back).
ErrorSums Nvfp4Error(Backend& be, cudaStream_t stream, const float* w, const uint8_t* packed, const uint8_t* scales,
                     int64_t rows, int64_t cols, float weight_scale_2);
ErrorSums Fp8Error(Backend& be, cudaStream_t stream, const float* w, const uint8_t* codes, const float* scales,
                   int64_t n, int64_t group);
// Backend::Nvfp4SweepBlocks on device (w, index device; scales host, uploaded).
void Nvfp4SweepBlocks(Backend& be, cudaStream_t stream, const float* w, int64_t rows, int64_t cols,
                      std::span<const float> scales, int32_t* index);

// Calls of QuantAmax / FakeQuant in this process that ran on the host because their group layout has more
// than quant::kMaxRank dims after merging (see above). Error paths are not counted. Thread-safe.
int64_t HostFallbackCount();

}  // namespace qforge::cuda
