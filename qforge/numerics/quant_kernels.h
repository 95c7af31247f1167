// Optional fast host kernels for the scalar references of numerics/, passed explicitly by the caller.
//
// numerics/ is the reference and depends on no backend. A caller that wants the SIMD / multi-threaded
// kernels of runtime/cpu hands `&cpu::HostKernels()` to FakeQuant, ComputeAmax, PackWeight (and export's
// options); nullptr, the default everywhere, runs the scalar reference. There is no process-wide table:
// what runs is visible at the call site.
//
// Contract of every member (tinyBLAS style, house style rule 6): return false for "not mine" without
// having produced a result, and the caller runs the reference. A member that returns true must have
// produced exactly the reference's result, bit for bit (NaN payloads excepted: a NaN output is some NaN);
// runtime/cpu/quant_kernels_test.cc checks it. The default implementation declines everything, so an
// implementation overrides only what it covers. Implementations must be thread-safe (const, no shared
// mutable state); spans are host memory.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace qforge {

struct QdqPlan;

class HostQuantKernels {
 public:
  virtual ~HostQuantKernels() = default;

  // Fake quant of a fully resolved plan (qdq.h): x and out hold plan.numel floats (out may alias x).
  // `amax` holds one value per group (kInt, kFp8, kNvfp4Static), or the 1-element global amax
  // (kNvfp4Dynamic), or nothing (kMx); `global_amax` is set for kNvfp4Static only.
  virtual bool FakeQuant(const QdqPlan& /*plan*/, std::span<const float> /*x*/, std::span<const float> /*amax*/,
                         std::optional<float> /*global_amax*/, std::span<float> /*out*/) const {
    return false;
  }

  // *result = max|x| over the whole span (0 for an empty span). `propagate_nan`: true -> NaN if any
  // element is NaN (torch.amax); false -> NaN elements are skipped (the caller uses the result only when
  // every value is finite).
  virtual bool AbsMax(std::span<const float> /*x*/, bool /*propagate_nan*/, float* /*result*/) const { return false; }

  // NVFP4 export packing (encode.h PackNvfp4Reference) of w [rows, cols] with the given weight_scale_2:
  // packed [rows, cols/2] bytes (element 2k in the low nibble), scales [rows, cols/16] E4M3 bytes.
  // Returning false also covers "some weight is not finite": the caller's reference path reports it.
  virtual bool PackNvfp4(std::span<const float> /*w*/, int64_t /*rows*/, int64_t /*cols*/, float /*weight_scale_2*/,
                         std::span<uint8_t> /*packed*/, std::span<uint8_t> /*scales*/) const {
    return false;
  }

  // FP8 E4M3 export cast (encode.h EncodeFp8Reference): codes[i] = e4m3_nonsat(w[i] / scales[i / group]).
  // Returning false also covers "some w[i] is not finite".
  virtual bool EncodeFp8(std::span<const float> /*w*/, std::span<const float> /*scales*/, int64_t /*group*/,
                         std::span<uint8_t> /*codes*/) const {
    return false;
  }
};

}  // namespace qforge
