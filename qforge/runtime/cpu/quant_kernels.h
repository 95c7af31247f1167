// SIMD (Highway, dynamic dispatch) + OpenMP fast paths for fake quantization, amax and weight packing.
//
// Every function here equals the scalar reference of numerics/ (qdq.h, encode.h) bit for bit (NaN
// payloads excepted: a NaN output is some NaN). Each returns false ("not mine") for a case it does not
// handle, and the caller then runs the reference. HostKernels() bundles them as numerics'
// HostQuantKernels (numerics/quant_kernels.h), which host callers pass explicitly to FakeQuant,
// ComputeAmax, PackWeight and export (numerics/ and export/ never depend on runtime/).
//
// Covered: FP8 E4M3 and integer QDQ (per tensor, per axis, static blocks: any group layout whose groups
// are runs along the last dim), NVFP4 dynamic and static QDQ (block 16 along the last dim, last dim % 16
// == 0), MX QDQ (block 32 along the last dim, last dim % 32 == 0; E4M3, E5M2, E3M2, E2M3, E2M1, INT8
// elements), NVFP4 packing (dynamic export path), FP8 export casts, and abs-max reductions.
// Threads: OpenMP over independent chunks (OMP_NUM_THREADS / omp_set_num_threads); results do not depend
// on the thread count. All functions are thread-safe (no shared mutable state).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "qforge/numerics/quant_kernels.h"

namespace qforge::cpu {

// The functions below as a HostQuantKernels (a static instance: lives for the whole process; const and
// thread-safe). Pass `&cpu::HostKernels()` where numerics/export take `const HostQuantKernels*`.
const HostQuantKernels& HostKernels();

// Fake quant of a resolved plan (HostQuantKernels::FakeQuant in numerics/quant_kernels.h).
bool FakeQuantFast(const QdqPlan& plan, std::span<const float> x, std::span<const float> amax,
                   std::optional<float> global_amax, std::span<float> out);

// max|x|; with propagate_nan, NaN if any element is NaN. Always handles the input (returns true).
bool AbsMaxFast(std::span<const float> x, bool propagate_nan, float* result);

// NVFP4 packing of [rows, cols] (cols % 16 == 0) with a given weight_scale_2 (encode.h
// PackNvfp4Reference, PackWeight's dynamic path): packed [rows, cols/2], scales [rows, cols/16] E4M3
// bytes. One pass over w, in 256 KiB pieces shared out among the OpenMP threads. Returns false for
// cols % 16 != 0, for weight_scale_2 outside [2^-140, FLT_MAX] and for non-finite weights (the reference
// then handles or reports them).
bool PackNvfp4Fast(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                   std::span<uint8_t> packed, std::span<uint8_t> scales);

// codes[i] = e4m3_nonsat(w[i] / scales[i / group]) (PyTorch cast, encode.h EncodeFp8Reference). One
// pass over w, in 256 KiB pieces shared out among the OpenMP threads. Returns false for group <= 0, for a
// scale that is not positive and finite, and when some w[i] is not finite.
bool EncodeFp8Fast(std::span<const float> w, std::span<const float> scales, int64_t group,
                   std::span<uint8_t> codes);

}  // namespace qforge::cpu
