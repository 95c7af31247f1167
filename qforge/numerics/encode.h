// Real (exported) weight encodings exactly as ModelOpt's HF export writes them, and their decoders.
//
// Spec §5.4 (MX export), §5.5 (NVFP4), §5.6 (FP8, INT8, INT4), runtime-contract §5. One table row per
// export format (kPackFormatTable) holds its name, element/scale formats, block geometry and the
// fake-quant QuantSpec it corresponds to. Weights are float32 spans of shape [..., out, in] (row-major);
// leading dims (MoE experts) are carried through.
//
//   format     weight (dtype, shape)              weight_scale (dtype, shape)        weight_scale_2
//   fp8        E4M3 [.., out, in]                 f32 []          amax/448           -
//   fp8_pc     E4M3 [out, in]                     f32 [out]       row amax/448       -
//   fp8_pb     E4M3 [.., out, in]                 f32 [.., ceil(out/128), 1, ceil(in/128), 1]
//                                                                 block amax/448     -
//   nvfp4      u8 [.., out, in/2] (2 x E2M1,      E4M3 [.., out, in/16]              f32 [] G/(6*N)
//              element 2k in the low nibble)
//   mxfp8      E4M3 [.., out, in]                 u8 E8M0 [.., out, in/32]           -
//   mxfp4      u8 [.., out, in/2]                 u8 E8M0 [.., out, in/32]           -
//   int8       i8 [out, in]                       f32 [out]       row amax/127       -
//   int4_awq   u8 [.., out/2, in] (rows 2i/2i+1   f32 [.., out, in/128] amax/7       -
//              in the low/high nibble)
// Dequantization (UnpackWeight): fp8*/int*: code * weight_scale; nvfp4: E2M1 * (float(weight_scale) *
// weight_scale_2); mx*: element * 2^(scale - 127).
//
// Where export and fake quant differ in ModelOpt, each side here follows ModelOpt (docs/formats.md):
//   * FP8/INT8/INT4 scale arithmetic: export divides by amax/max_bound, fake quant multiplies by
//     max_bound/amax and 1/(max_bound/amax): equal up to one ulp of the scale (spec §13 Q14).
//   * FP8 export casts without clamping: |w/scale| > 464 becomes NaN (spec §13 Q6).
//   * amax <= 2^-24 (fake quant: zero output / amax 1) vs export_amax (tiny amax kept).
//   * NVFP4 block scale clamp [2^-9, 448] and zero -> 1.0 (export, §5.5) vs the Triton kernel's
//     s < 1e-5 -> 1 rule (fake quant, §5.3); static NVFP4 scale formulas differ in rounding order.
//   * MXFP4 export rounds E2M1 ties toward the smaller magnitude and writes exact zeros with the sign bit
//     set (§13 Q5); MX export computes ceil(log2(amax/max)) with a float log2 (torch.log2), fake quant
//     from the bit pattern; zero blocks get scale 2^-127 in export, 1 in fake quant.
// Non-finite weights are rejected by every encoder (the export formulas give NaN scales).
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "qforge/numerics/format.h"
#include "qforge/numerics/quant_kernels.h"
#include "qforge/numerics/quant_spec.h"

namespace qforge {

enum class PackFormat : uint8_t { kFp8, kFp8PerChannel, kFp8Block, kNvfp4, kMxfp8, kMxfp4, kInt8, kInt4Awq };
inline constexpr int kNumPackFormats = 8;

// How a stored tensor's bytes are typed (mapped to safetensors dtypes by the tensor-level wrapper).
enum class StoredType : uint8_t { kF32, kE4M3, kU8, kI8 };

struct PackFormatTraits {
  PackFormat format;
  std::string_view name;         // CLI name: "fp8", "fp8_pc", "fp8_pb", "nvfp4", "mxfp8", "mxfp4", "int8", "int4_awq"
  std::string_view quant_algo;   // hf_quant_config quant_algo for a weight-only/W-A export of this format
  Format element;                // element format of `weight`
  StoredType weight_type;        // storage of `weight`
  StoredType scale_type;         // storage of `weight_scale`
  int block_in;                  // block size along `in` (0: none)
  int block_out;                 // block size along `out` (0: none)
  bool has_scale_2;              // writes `weight_scale_2`
  int min_rank;                  // weights must have at least this rank
};

inline constexpr PackFormatTraits kPackFormatTable[kNumPackFormats] = {
    {PackFormat::kFp8, "fp8", "FP8", Format::kE4M3, StoredType::kE4M3, StoredType::kF32, 0, 0, false, 1},
    {PackFormat::kFp8PerChannel, "fp8_pc", "FP8_PER_CHANNEL_PER_TOKEN", Format::kE4M3, StoredType::kE4M3,
     StoredType::kF32, 0, 0, false, 2},
    {PackFormat::kFp8Block, "fp8_pb", "FP8_PB_WO", Format::kE4M3, StoredType::kE4M3, StoredType::kF32, 128, 128,
     false, 2},
    {PackFormat::kNvfp4, "nvfp4", "NVFP4", Format::kE2M1, StoredType::kU8, StoredType::kE4M3, 16, 0, true, 1},
    {PackFormat::kMxfp8, "mxfp8", "MXFP8", Format::kE4M3, StoredType::kE4M3, StoredType::kU8, 32, 0, false, 1},
    {PackFormat::kMxfp4, "mxfp4", "MXFP4", Format::kE2M1, StoredType::kU8, StoredType::kU8, 32, 0, false, 1},
    {PackFormat::kInt8, "int8", "W8A16", Format::kInt8, StoredType::kI8, StoredType::kF32, 0, 0, false, 2},
    {PackFormat::kInt4Awq, "int4_awq", "W4A16_AWQ", Format::kInt4, StoredType::kU8, StoredType::kF32, 128, 0, false, 2},
};

constexpr const PackFormatTraits& GetTraits(PackFormat f) { return kPackFormatTable[static_cast<int>(f)]; }
// "nvfp4" -> kNvfp4; nullopt if unknown.
std::optional<PackFormat> PackFormatFromName(std::string_view name);
// "fp8, fp8_pc, ..." for help texts and errors.
std::string_view AllPackFormatNames();

// The weight quantizer config whose fake quant the format exports (spec §3 presets / §10.2 detection):
// fp8: (4,3) per tensor; fp8_pc: (4,3) axis 0; fp8_pb: (4,3) blocks {-1:128, -2:128}; nvfp4: (2,1)
// dynamic {-1:16, scale (4,3)}; mxfp8/mxfp4: dynamic {-1:32, scale (8,0)}; int8: 8 bits axis 0;
// int4_awq: 4 bits static blocks {-1:128}.
QuantSpec WeightSpecFor(PackFormat format);

// std::allocator, except that a value-less construct() default-initializes: resize() leaves new bytes
// indeterminate instead of zeroing them. Every encoder writes all of its output bytes, and zeroing the
// packed weight first (1/8 to 1/4 of the input's bytes, on one thread) cost 10-30% of packing time with
// two threads.
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
// Encoded bytes; resize() does not zero (see DefaultInitAllocator).
using ByteBuffer = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;

// A packed weight: the tensors ModelOpt writes for one `P.weight` (see the table above).
struct PackedWeight {
  PackFormat format = PackFormat::kFp8;
  std::vector<int64_t> shape;          // the original weight shape
  ByteBuffer weight;                   // E4M3 / packed E2M1 / int8 / packed int4 bytes
  std::vector<int64_t> weight_shape;
  std::vector<float> scale_f32;        // weight_scale when stored as f32
  ByteBuffer scale_bytes;              // weight_scale when stored as E4M3 or E8M0 bytes
  std::vector<int64_t> scale_shape;    // [] for a 0-d scalar
  std::optional<float> weight_scale_2; // NVFP4 only, a 0-d f32
};

// Calibrated quantizer state to export from. Empty fields are computed from the weight itself by max
// calibration (what `weight_only_quantize` does before export, spec §6.1).
struct PackInputs {
  std::vector<float> amax;            // the weight quantizer's `_amax` (AmaxShape order of WeightSpecFor;
                                      // static NVFP4: per 16-block amax)
  std::optional<float> global_amax;   // NVFP4: dynamic `_amax` (per tensor) or static `_global_amax`
  bool nvfp4_static = false;          // NVFP4: use the static-quantizer path of §5.5 (needs `amax`)
  bool four_over_six = false;         // static NVFP4: FP8_NORM = 256
};

// The dtypes and shapes of the tensors `format` stores for a weight of `shape` (the table above), known
// before anything is encoded: the export lays out its safetensors shards up front. Equal to what
// PackWeight returns for that shape; shapes a format cannot hold throw as PackWeight does.
struct PackedLayout {
  StoredType weight_type = StoredType::kU8;
  std::vector<int64_t> weight_shape;
  StoredType scale_type = StoredType::kF32;
  std::vector<int64_t> scale_shape;  // [] for a 0-d scalar
  bool has_scale_2 = false;          // a 0-d f32 weight_scale_2
};
PackedLayout PackedLayoutOf(PackFormat format, std::span<const int64_t> shape, std::string_view what = "weight");

// The scale formulas of the elementwise export encodings, from calibrated amax alone (the host encoders
// use them, and so does any device encoder that runs the elementwise kernels itself):
//   fp8 / fp8_pc weight_scale = export_amax(amax, 448) / 448 (per tensor / per output row);
//   nvfp4 (dynamic path) weight_scale_2 = export_amax(G, 6) / 2688, G the weight's global amax.
float Fp8ExportScale(float amax);
float Nvfp4DynamicScale2(float global_amax);

// Encodes one weight. Throws qforge::Error naming `what` for non-finite values, shapes a format cannot
// hold (e.g. nvfp4 needs in % 16 == 0, mx* in % 32, int4_awq in % 128 and even out) and amax of the
// wrong size. `kernels` (quant_kernels.h; nullptr = scalar reference only) may take the abs-max /
// finiteness pass, the NVFP4 dynamic-path packing and the FP8 / FP8-per-channel casts; the bytes are the
// same either way. Thread-compatible.
PackedWeight PackWeight(PackFormat format, std::span<const float> w, std::span<const int64_t> shape,
                        const PackInputs& inputs = {}, std::string_view what = "weight",
                        const HostQuantKernels* kernels = nullptr);

// Decodes a packed weight to float32 (shape `packed.shape`). Throws on inconsistent sizes.
std::vector<float> UnpackWeight(const PackedWeight& packed, std::string_view what = "weight");
// The same into `out` (numel of packed.shape values): lets a caller reuse one buffer for many weights.
void UnpackWeightInto(const PackedWeight& packed, std::span<float> out, std::string_view what = "weight");

// Reference scalar pieces, shared with the fast paths (exact definitions of the export formulas).
// E2M1 code of v = w/scale as NVFP4 export writes it: sign = (v < 0), magnitude by searchsorted over the
// boundaries plus one at the odd ties 0.75/1.75/3.5 (= RNE).
inline uint8_t Nvfp4ExportCode(float v) {
  const float a = v < 0.0f ? -v : v;
  const uint32_t idx = (a > 0.25f) + (a > 0.75f) + (a > 1.25f) + (a > 1.75f) + (a > 2.5f) + (a > 3.5f) +
                       (a > 5.0f) + (a == 0.75f || a == 1.75f || a == 3.5f);
  return static_cast<uint8_t>(((v < 0.0f) ? 8u : 0u) | idx);
}
// NVFP4 dynamic-path block scale byte (§5.5): t = b / (6 * ws2); 0 -> 1; clamp [2^-9, 448]; E4M3 RNE.
inline uint8_t Nvfp4ExportBlockScale(float block_max, float weight_scale_2) {
  float t = block_max / (6.0f * weight_scale_2);
  if (t == 0.0f) t = 1.0f;
  t = t < 0x1p-9f ? 0x1p-9f : (t > 448.0f ? 448.0f : t);
  return EncodeE4M3(t, Overflow::kNonSat);
}
// float(log2(x)) correctly rounded to fp32, then ceil: torch.log2 + torch.ceil of ModelOpt's MX export.
int CeilOfFloatLog2(float x);

// The scalar reference kernels behind PackWeight, with the signatures of HostQuantKernels (what a fast
// kernel must equal bit for bit, and the fallback when it declines). Both return false, with the outputs
// incomplete, as soon as they meet a non-finite weight (PackWeight then names it).
//
// NVFP4 dynamic-path export (§5.5) of w [rows, cols] (cols % 16 == 0) with weight_scale_2 `ws2`:
// scales[b] = Nvfp4ExportBlockScale(max|w of block b|, ws2) ([rows, cols/16] E4M3 bytes) and
// packed [rows, cols/2] with element 2k in the low nibble of byte k: Nvfp4ExportCode(w / (e4m3(scale)*ws2)).
bool PackNvfp4Reference(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                        std::span<uint8_t> packed, std::span<uint8_t> scales);
// FP8 export cast (§5.6): codes[i] = e4m3_nonsat(w[i] / scales[i / group]) (group > 0), PyTorch's
// non-saturating cast (|w/scale| > 464 -> the NaN code, sign kept).
bool EncodeFp8Reference(std::span<const float> w, std::span<const float> scales, int64_t group,
                        std::span<uint8_t> codes);

}  // namespace qforge
