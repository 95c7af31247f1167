// Reference (scalar) fake quantization of float32 tensors for any QuantSpec, exactly as ModelOpt (spec §5).
//
// These functions are the numeric definition of qforge: every fast path (runtime/cpu, runtime/cuda) must
// equal them bit for bit. Tensors are dense row-major float32 spans with an explicit shape (any rank;
// an empty shape is a 0-d scalar). Nothing here allocates more than the outputs it returns.
//
// Quantization groups. Every spec partitions the tensor into groups that share one amax / scale:
//   per tensor         one group                                         amax shape []
//   axis = [a, ...]    one group per index of the kept dims              amax shape keepdims, e.g. [out, 1]
//   static blocks      block_sizes {axis: size}; blocked dims are split  amax shape: each blocked dim d
//                      into ceil(d/size) blocks (the last one zero-      becomes (ceil(d/size), 1), other
//                      padded), unblocked dims are kept                  dims are kept ("general path")
//   dynamic blocks     one block axis (NVFP4: 16, MX: 32), partial last  NVFP4: per-tensor global amax [];
//                      blocks zero-padded for the amax only              MX: no amax at all
// In every layout the amax values are in row-major order of the group grid, which is also the order of
// ModelOpt's `_amax` buffer (its fast path for last-axis-only blocks stores the same values as [n, 1]).
// block_sizes whose integer keys are all null are converted to the equivalent `axis` first (spec §2.2).
//
// Formulas (all fp32, every division a true IEEE division, spec §13 Q14):
//   integer   max_bound = 2^(b-1+unsigned)-1; amax <= 2^-24 -> 0; s = max_bound/amax;
//             y = clamp(rint(x*s), min_bound, max_bound) / s                               (§5.1)
//   FP8 E4M3  amax <= 2^-24 -> amax = 1; s = 448/amax; y = e4m3_sat(x*s) * (1/s)           (§5.2)
//   NVFP4 dyn ModelOpt's Triton kernel (default on GPUs >= sm89), including its edge cases:
//             g = G/2688 (G = global amax); gs = g > 0 ? g : 1e-12;
//             b = NaN-ignoring max|x| of the block; t = min(b/(6*gs), 448) (NaN -> 448);
//             s = e4m3(t) * g; s = s >= 1e-5 ? s : 1 (NaN -> 1);
//             y = (x >= 0 ? 1 : -1) * E2M1_chain(|x|/s) * s    (NaN x -> -6s, -0.0 -> +0.0)   (§5.3)
//   NVFP4 sta s = fp8_fake_quant(block_amax/6, amax = G*(448/N)/6), N = 448 (256 for four_over_six);
//             s == 0 -> all-zero block; s NaN/inf -> 1 (Triton `nvfp4_scalar_quant`); then as above
//   MX        b = NaN-ignoring max min(|x|, FLT_MAX) incl. padding; b in {0, inf, NaN} -> scale 1;
//             e = ceil(log2(b/fmt_max)) from the fp32 bits, clamped to [-127, 127];
//             y = sign(x) * convert(|x|*2^-e) * 2^e, convert = RNE with saturation    (§5.4)
//             (x == +-0 -> +0; NaN -> NaN: ModelOpt leaves the sign of 0/NaN uninitialised)
// Max calibration (ComputeAmax) rejects NaN/inf like ModelOpt's MaxCalibrator; amax computed inside a
// forward (top-level `type: dynamic`, NVFP4 without calibrated amax) propagates NaN like torch.amax.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "qforge/numerics/format.h"
#include "qforge/numerics/quant_kernels.h"
#include "qforge/numerics/quant_spec.h"

namespace qforge {

// The arithmetic family a QuantSpec selects.
enum class QdqKind : uint8_t { kInt, kFp8, kNvfp4Dynamic, kNvfp4Static, kMx };

// A QuantSpec resolved against a tensor shape: validated, axes normalised, groups laid out.
struct QdqPlan {
  QdqKind kind = QdqKind::kInt;
  QuantSpec spec;                   // with all-null block_sizes converted to axis
  std::vector<int64_t> shape;       // tensor shape
  std::vector<int64_t> extent;      // per dim: group extent (1 = kept dim; d = reduced; b = blocked)
  std::vector<int64_t> groups;      // per dim: ceil(shape / extent)
  int64_t num_groups = 1;
  int64_t numel = 1;
  Format element = Format::kInt8;   // element format (floats), kInt8 for all integer widths
  float max_bound = 127.0f;         // maxbound of spec §2.5 (MX: the element format's max)
  float min_bound = -128.0f;        // integers only
  int block_axis = -1;              // dynamic blocks: the (non-negative) block axis
  int64_t block_size = 0;           // dynamic blocks: its size
};

// Validates `spec` for a tensor of `shape` and lays out its groups. Throws qforge::Error naming the
// offending key (`block_sizes`, `axis`, `num_bits`, `unsigned`, ...) and value; `what` names the tensor.
QdqPlan MakeQdqPlan(const QuantSpec& spec, std::span<const int64_t> shape, std::string_view what = "tensor");

// maxbound of spec §2.5: 448 for (4,3), 6 for (2,1) with (4,3) scales, else 2^(b-1+unsigned)-1; for
// other float formats the element format's largest finite value.
float MaxBound(const QuantSpec& spec);

// The calibrated `_amax` shape (see the table above): [] per tensor, keepdims per axis, [..,nb,1,..] per
// static block, [] for NVFP4 dynamic (global amax); nullopt for MX formats (no amax).
std::optional<std::vector<int64_t>> AmaxShape(const QuantSpec& spec, std::span<const int64_t> shape);

// Max calibration over one tensor: max|x| per group, in AmaxShape order (empty for MX). With
// `use_constant_amax` returns {448}; with `constant_amax` returns {constant}. Throws (naming `what` and
// the index) on NaN/inf like MaxCalibrator. Unsigned specs throw on negative values.
// `kernels` (quant_kernels.h; nullptr = scalar reference only) may supply the whole-tensor abs max.
std::vector<float> ComputeAmax(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
                               std::string_view what = "tensor", const HostQuantKernels* kernels = nullptr);

// Fake quantization (quantize + dequantize) of x into out (same size; may alias x).
// `amax`: the quantizer's `_amax` in AmaxShape order, or a single value broadcast to every group.
//   Required for static int/FP8/NVFP4-static specs; for NVFP4 dynamic it is the optional global amax
//   (empty -> max|x| of this tensor); ignored for MX and for top-level `type: dynamic` (amax is then
//   recomputed from x) and replaced by 448 / constant_amax for constant-amax specs.
// `global_amax`: static NVFP4 only; nullopt -> max of the per-block amax (spec §6.2 promotion).
// `kernels` (quant_kernels.h): offered the resolved plan first; nullptr (the default) runs the scalar
// reference only, which is what every fast path is tested against. Thread-compatible; no shared state.
void FakeQuant(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
               std::span<const float> amax, std::span<float> out, std::optional<float> global_amax = std::nullopt,
               std::string_view what = "tensor", const HostQuantKernels* kernels = nullptr);

// Output precision of a QDQ'd tensor: ModelOpt casts the fp32 result back to the input dtype (RNE).
enum class RoundTo : uint8_t { kF32, kBF16, kF16 };

// `qforge qdq`: QDQ a whole tensor with amax from max calibration over that same tensor (ComputeAmax;
// static NVFP4 global amax = max of its block amaxes), then round every output to `round_to` (the values
// stay float32 but are exactly representable in bf16/f16). x holds the input already widened to fp32.
// `kernels` as for FakeQuant (used for both the calibration and the fake quant).
void FakeQuantWithOwnAmax(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
                          std::span<float> out, RoundTo round_to = RoundTo::kF32, std::string_view what = "tensor",
                          const HostQuantKernels* kernels = nullptr);

// ModelOpt's `export_amax`: zero and NaN amax -> maxbound, then clamp to [FLT_MIN, FLT_MAX].
float ExportAmax(float amax, float maxbound);

// ---------------------------------------------------------------------------------------------------
// Scalar building blocks shared with the encoders and fast paths (exact definitions of spec §5).

// FP8 E4M3 fake quant of one value with per-group amax (spec §5.2).
inline float Fp8FakeQuantScalar(float x, float amax) {
  const float a = amax <= 0x1p-24f ? 1.0f : amax;
  const float scale = 448.0f / a;
  const float inv = 1.0f / scale;
  return DecodeE4M3(EncodeE4M3(x * scale, Overflow::kSaturate)) * inv;
}

// NVFP4 dynamic block scale from the block max b and g = global_amax/2688 (Triton kernel, spec §5.3).
inline float Nvfp4DynamicBlockScale(float b, float g) {
  const float gs = g > 0.0f ? g : 1e-12f;
  float t = b / (6.0f * gs);
  if (!(t <= 448.0f)) t = 448.0f;  // tl.minimum: NaN-ignoring
  const float s = DecodeE4M3(EncodeE4M3(t, Overflow::kSaturate)) * g;
  return s >= 1e-5f ? s : 1.0f;
}

// NVFP4 static block scale (spec §5.3) from the per-block amax and the global amax; N = FP8_NORM.
float Nvfp4StaticBlockScale(float block_amax, float global_amax, float fp8_norm);

// One E2M1 element quantized with scale s (Triton `nvfp4_scalar_quant` without the zero-scale rule).
inline float Nvfp4QdqElement(float x, float s) {
  const float v = (x < 0.0f ? -x : x) / s;
  const float r = E2M1Magnitude(E2M1RoundIndexChain(v)) * s;
  return x >= 0.0f ? r : -r;
}

// MX unscale exponent for a block max b (b in {0, inf, NaN} -> 0) and element max fmt_max (spec §5.4).
inline int MxScaleExponent(float b, float fmt_max) {
  if (b == 0.0f || !IsFiniteF32(b)) return 0;
  return CeilLog2Clamped(b / fmt_max);
}

}  // namespace qforge
