// Optional fast paths for the reference QDQ / encoders, installed by a lower-level backend at startup.
//
// numerics/ cannot depend on runtime/ (layer rule), and export/ must not either, yet both should run the
// SIMD/multi-threaded kernels of runtime/cpu when they are linked. runtime/cpu therefore registers a table
// of plain function pointers here (runtime::cpu::RegisterQuantKernels()); numerics calls them first and
// runs its scalar reference when a pointer is null or returns false ("not mine", house style rule 6).
// Every installed function must equal the scalar reference bit for bit (runtime/cpu tests check it).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace qforge {

struct QdqPlan;

struct QuantFastPaths {
  // Fake quant of a fully resolved plan: `amax` has one value per group (kInt/kFp8/kNvfp4Static), or is
  // the 1-element global amax (kNvfp4Dynamic), or empty (kMx). `global_amax` is set for kNvfp4Static.
  // out may alias x. Optional.
  bool (*fake_quant)(const QdqPlan& plan, std::span<const float> x, std::span<const float> amax,
                     std::optional<float> global_amax, std::span<float> out) = nullptr;
  // max|x| over the whole span. `propagate_nan`: true -> NaN if any NaN (torch.amax); false -> the
  // caller only uses the result when every value is finite. Optional.
  bool (*abs_max)(std::span<const float> x, bool propagate_nan, float* result) = nullptr;
  // NVFP4 packing of rows of `cols` values (cols % 16 == 0): packed [rows, cols/2] bytes, E4M3 block
  // scales [rows, cols/16], given weight_scale_2 (the dynamic export path of spec §5.5). Returns false if
  // some weight is not finite. Optional.
  bool (*pack_nvfp4)(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                     std::span<uint8_t> packed, std::span<uint8_t> scales) = nullptr;
  // FP8 E4M3 export cast: code[i] = e4m3_nonsat(w[i] / scale[i / group]) (PyTorch cast, spec §5.6).
  // `scales` holds one scale per `group` consecutive elements. Returns false if some w[i] is not finite
  // (the caller's reference path reports it). Optional.
  bool (*encode_fp8)(std::span<const float> w, std::span<const float> scales, int64_t group,
                     std::span<uint8_t> codes) = nullptr;
};

// Installs `paths` (which must outlive the process; nullptr uninstalls). Thread-safe.
void RegisterQuantFastPaths(const QuantFastPaths* paths);
// The installed table, or nullptr. Thread-safe.
const QuantFastPaths* GetQuantFastPaths();

}  // namespace qforge
