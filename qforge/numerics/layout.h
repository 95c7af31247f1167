// Element layouts and exact scalar codecs for every <=8-bit format qforge stores (spec §5), host + CUDA.
//
// Plain functions and constexpr sizes only: no STL, no exceptions, so runtime/cuda/ can include this file
// and never redefine a layout (house style rule 3). BF16/FP16 <-> FP32 live in numerics/half.h.
//
// Bit layouts (S = sign, E = exponent, M = mantissa; value = (-1)^S * 2^(E-bias) * 1.M, subnormal when
// E == 0: (-1)^S * 2^(1-bias) * 0.M):
//
//   FP8 E4M3 ("fn", bias 7)   [S|E E E E|M M M]      max 448 = 0x7E, NaN = S.1111.111 (0x7F/0xFF), no inf
//   FP8 E5M2 (IEEE, bias 15)  [S|E E E E E|M M]      max 57344 = 0x7B, inf = 0x7C, NaN = 0x7D..0x7F
//   FP6 E3M2 (bias 3)         [S|E E E|M M]          max 28 = 0x1F, no inf/NaN      (MXFP6)
//   FP6 E2M3 (bias 1)         [S|E E|M M M]          max 7.5 = 0x1F, no inf/NaN     (MXFP6)
//   FP4 E2M1 (bias 1)         [S|E E|M]              {0, .5, 1, 1.5, 2, 3, 4, 6}, no inf/NaN (NVFP4, MXFP4)
//   E8M0 scale (bias 127)     [E E E E E E E E]      2^(E-127), 0xFF = NaN, no sign, no zero (MX scales)
//
// Rounding is round-to-nearest-even everywhere. Overflow (values that round above the largest finite
// value, and +-inf) depends on the caller, so every float encoder takes an Overflow mode:
//   kSaturate  -> +-max finite   (CUDA __NV_SATFINITE casts, ModelOpt fake quant, spec §5.2/§5.4)
//   kNonSat    -> E4M3: NaN, E5M2: inf   (PyTorch `.to(float8_*)`, used by ModelOpt export, spec §13 Q6)
// E2M1/E3M2/E2M3 have no special values: overflow always saturates, and a NaN input encodes to +max
// (ModelOpt's table converter, `convert_to_table_types`). E4M3/E5M2 NaN inputs encode to 0x7F with the
// input's sign in kNonSat mode (PyTorch) and to 0x7F in kSaturate mode (CUDA canonical NaN).
// The sign bit of every code is the sign bit of the input, so -0.0 encodes to a negative zero code.
#pragma once

#include <cstdint>

#include "qforge/numerics/half.h"

namespace qforge {

// ---------------------------------------------------------------------------------------------------
// Block geometry of the block-scaled formats (spec §5.3-§5.6).
inline constexpr int kNvfp4BlockSize = 16;      // E2M1 elements per E4M3 block scale
inline constexpr int kMxBlockSize = 32;         // elements per E8M0 scale (MXFP4/6/8, MXINT8)
inline constexpr int kFp8BlockSize = 128;       // FP8_PB_WO: 128x128 weight blocks
inline constexpr int kInt4AwqBlockSize = 128;   // INT4_AWQ: 128 input columns per scale
inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;
inline constexpr float kE2M1Max = 6.0f;
inline constexpr float kE3M2Max = 28.0f;
inline constexpr float kE2M3Max = 7.5f;

// Two E2M1 codes per byte: element 2k in the low nibble, element 2k+1 in the high nibble (spec §5.4, §5.5).
struct PackedE2M1x2 {
  uint8_t byte;
};
static_assert(sizeof(PackedE2M1x2) == 1, "two E2M1 codes per byte");
// An NVFP4 block as stored on disk, split over two tensors: 8 packed bytes + 1 E4M3 scale byte.
inline constexpr int kNvfp4PackedBytesPerBlock = kNvfp4BlockSize / 2;
static_assert(kNvfp4PackedBytesPerBlock == 8, "NVFP4 packs 16 E2M1 codes into 8 bytes");
// An MXFP4 block: 16 packed bytes + 1 E8M0 scale byte.
inline constexpr int kMxfp4PackedBytesPerBlock = kMxBlockSize / 2;
static_assert(kMxfp4PackedBytesPerBlock == 16, "MXFP4 packs 32 E2M1 codes into 16 bytes");

// ---------------------------------------------------------------------------------------------------
// Helpers.

// 2^k as an exact fp32 for k in [-149, 127] (subnormals included); 0 below, inf above.
QF_HD inline float Pow2(int k) {
  if (k > 127) return F32FromBits(0x7F800000u);
  if (k >= -126) return F32FromBits(static_cast<uint32_t>(k + 127) << 23);
  if (k >= -149) return F32FromBits(1u << (k + 149));
  return 0.0f;
}

QF_HD inline bool IsNanF32(float x) { return (F32Bits(x) & 0x7FFFFFFFu) > 0x7F800000u; }
QF_HD inline bool IsInfF32(float x) { return (F32Bits(x) & 0x7FFFFFFFu) == 0x7F800000u; }
QF_HD inline bool IsFiniteF32(float x) { return (F32Bits(x) & 0x7F800000u) != 0x7F800000u; }

enum class Overflow : uint8_t { kSaturate, kNonSat };

// Special values of a minifloat.
enum class Specials : uint8_t {
  kNone,   // every code is finite (E2M1, E3M2, E2M3)
  kFnNan,  // only S.1..1.1..1 is NaN, no inf (E4M3 "fn")
  kIeee,   // exponent all ones: mantissa 0 = inf, else NaN (E5M2)
};

// Parameters of a sign + exponent + mantissa minifloat.
struct MinifloatParams {
  int exponent_bits;
  int mantissa_bits;
  int bias;
  uint32_t max_code;  // largest finite magnitude code (sign bit clear)
  Specials specials;
};

// Parameter rows as host+device functions (device code may not ODR-use host globals); the k* constants
// are the same rows for host code and tests.
QF_HD constexpr MinifloatParams E4M3Params() { return {4, 3, 7, 0x7E, Specials::kFnNan}; }
QF_HD constexpr MinifloatParams E5M2Params() { return {5, 2, 15, 0x7B, Specials::kIeee}; }
QF_HD constexpr MinifloatParams E3M2Params() { return {3, 2, 3, 0x1F, Specials::kNone}; }
QF_HD constexpr MinifloatParams E2M3Params() { return {2, 3, 1, 0x1F, Specials::kNone}; }
QF_HD constexpr MinifloatParams E2M1Params() { return {2, 1, 1, 0x7, Specials::kNone}; }
inline constexpr MinifloatParams kE4M3Params = E4M3Params();
inline constexpr MinifloatParams kE5M2Params = E5M2Params();
inline constexpr MinifloatParams kE3M2Params = E3M2Params();
inline constexpr MinifloatParams kE2M3Params = E2M3Params();
inline constexpr MinifloatParams kE2M1Params = E2M1Params();

// Round-to-nearest-even encode of |x| (finite, non-negative bits `a` = F32Bits(|x|)) into a magnitude
// code of `p`, before overflow handling (the result may exceed p.max_code).
QF_HD inline uint32_t MinifloatRoundMagnitude(uint32_t a, MinifloatParams p) {
  const uint32_t e_field = a >> 23;
  if (e_field == 0) return 0;  // fp32 zero/subnormal (< 2^-126): below half the smallest subnormal
  const int e = static_cast<int>(e_field) - 127;
  const int emin = 1 - p.bias;
  const int q = (e < emin ? emin : e) - p.mantissa_bits;  // exponent of one unit in the last place
  const int shift = 23 + q - e;                            // >= 23 - mantissa_bits > 0
  if (shift >= 25) return 0;                               // value < ulp/2
  const uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t m = sig >> shift;
  const uint32_t rem = sig & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (m & 1u))) ++m;
  if (e < emin) return m;  // subnormal; m == 2^mbits is exactly the smallest normal code
  // Normal: exponent field + fraction; a carry out of the fraction bumps the exponent naturally.
  return (static_cast<uint32_t>(e + p.bias) << p.mantissa_bits) + (m - (1u << p.mantissa_bits));
}

// Encodes x into a code of `p` (sign bit at position exponent_bits + mantissa_bits).
QF_HD inline uint32_t EncodeMinifloat(float x, MinifloatParams p, Overflow overflow) {
  const uint32_t bits = F32Bits(x);
  const uint32_t sign_shift = static_cast<uint32_t>(p.exponent_bits + p.mantissa_bits);
  const uint32_t sign = (bits >> 31) << sign_shift;
  const uint32_t all_ones = (1u << sign_shift) - 1u;  // S.1..1.1..1 without the sign
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) {  // NaN
    if (p.specials == Specials::kNone) return p.max_code;
    return overflow == Overflow::kNonSat ? (sign | all_ones) : all_ones;
  }
  const uint32_t mag = a == 0x7F800000u ? p.max_code + 1 : MinifloatRoundMagnitude(a, p);
  if (mag <= p.max_code) return sign | mag;
  if (overflow == Overflow::kSaturate || p.specials == Specials::kNone) return sign | p.max_code;
  // Non-saturating: E4M3 -> NaN, E5M2 -> inf.
  return sign | (p.specials == Specials::kFnNan ? all_ones : p.max_code + 1);
}

// Decodes a code of `p` (sign bit at exponent_bits + mantissa_bits) exactly.
QF_HD inline float DecodeMinifloat(uint32_t code, MinifloatParams p) {
  const uint32_t sign_shift = static_cast<uint32_t>(p.exponent_bits + p.mantissa_bits);
  const bool neg = (code >> sign_shift) & 1u;
  const uint32_t mag = code & ((1u << sign_shift) - 1u);
  const uint32_t e_field = mag >> p.mantissa_bits;
  const uint32_t m = mag & ((1u << p.mantissa_bits) - 1u);
  float v;
  if (p.specials == Specials::kIeee && e_field == (1u << p.exponent_bits) - 1u) {
    v = m == 0 ? F32FromBits(0x7F800000u) : F32FromBits(0x7FC00000u);
  } else if (p.specials == Specials::kFnNan && mag == (1u << sign_shift) - 1u) {
    v = F32FromBits(0x7FC00000u);
  } else if (e_field == 0) {
    v = static_cast<float>(m) * Pow2(1 - p.bias - p.mantissa_bits);
  } else {
    v = static_cast<float>(m + (1u << p.mantissa_bits)) *
        Pow2(static_cast<int>(e_field) - p.bias - p.mantissa_bits);
  }
  return neg ? -v : v;
}

// ---------------------------------------------------------------------------------------------------
// Named codecs (8-bit codes for FP8, low 6 bits for FP6, low 4 bits for FP4).

QF_HD inline uint8_t EncodeE4M3(float x, Overflow o = Overflow::kSaturate) {
  return static_cast<uint8_t>(EncodeMinifloat(x, E4M3Params(), o));
}
QF_HD inline float DecodeE4M3(uint8_t c) { return DecodeMinifloat(c, E4M3Params()); }
QF_HD inline uint8_t EncodeE5M2(float x, Overflow o = Overflow::kSaturate) {
  return static_cast<uint8_t>(EncodeMinifloat(x, E5M2Params(), o));
}
QF_HD inline float DecodeE5M2(uint8_t c) { return DecodeMinifloat(c, E5M2Params()); }
QF_HD inline uint8_t EncodeE3M2(float x) {
  return static_cast<uint8_t>(EncodeMinifloat(x, E3M2Params(), Overflow::kSaturate));
}
QF_HD inline float DecodeE3M2(uint8_t c) { return DecodeMinifloat(c & 0x3Fu, E3M2Params()); }
QF_HD inline uint8_t EncodeE2M3(float x) {
  return static_cast<uint8_t>(EncodeMinifloat(x, E2M3Params(), Overflow::kSaturate));
}
QF_HD inline float DecodeE2M3(uint8_t c) { return DecodeMinifloat(c & 0x3Fu, E2M3Params()); }
QF_HD inline uint8_t EncodeE2M1(float x) {
  return static_cast<uint8_t>(EncodeMinifloat(x, E2M1Params(), Overflow::kSaturate));
}
QF_HD inline float DecodeE2M1(uint8_t c) { return DecodeMinifloat(c & 0xFu, E2M1Params()); }

// One NVFP4 export element: E2M1 nibble `code` (low 4 bits) of a block with E4M3 scale byte `scale` and the
// tensor's weight_scale_2, as UnpackWeight (encode.h) decodes it: e2m1 * (e4m3(scale) * ws2).
QF_HD inline float DecodeNvfp4Element(uint8_t code, uint8_t scale, float weight_scale_2) {
  return DecodeE2M1(code) * (DecodeE4M3(scale) * weight_scale_2);
}

// E8M0: code c means 2^(c-127) (c = 0 -> 2^-127, an fp32 subnormal); 0xFF is NaN.
QF_HD inline float DecodeE8M0(uint8_t c) { return c == 0xFF ? F32FromBits(0x7FC00000u) : Pow2(c - 127); }
// Code of the power of two 2^e, e clamped to [-127, 127].
QF_HD inline uint8_t E8M0FromExponent(int e) {
  return static_cast<uint8_t>((e < -127 ? -127 : (e > 127 ? 127 : e)) + 127);
}
// Reference E8M0 encoder: the smallest power of two >= x, i.e. code = clamp(ceil(log2 x)) + 127 (exact
// powers of two encode exactly; this is how every MX scale is derived, spec §5.4). x <= 0, NaN and inf
// give 0xFF (NaN): E8M0 has neither zero nor sign nor inf.
QF_HD inline uint8_t EncodeE8M0Ceil(float x) {
  const uint32_t b = F32Bits(x);
  if ((b >> 31) || (b & 0x7FFFFFFFu) >= 0x7F800000u || b == 0) return 0xFF;
  const uint32_t e_field = b >> 23, m = b & 0x7FFFFFu;
  int e;
  if (e_field == 0) {  // fp32 subnormal: x = m * 2^-149, ceil(log2 x) = ceil(log2 m) - 149
    int lg = 0;
    while ((1u << lg) < m) ++lg;
    e = lg - 149;
  } else {
    e = static_cast<int>(e_field) - 127 + (m != 0 ? 1 : 0);
  }
  return E8M0FromExponent(e);
}

// ceil(log2(r)) for a finite r > 0, exactly, from the fp32 bit pattern (ModelOpt's MX fake-quant kernel,
// `compute_scale_e8m0_NV`, spec §5.4), clamped to [-127, 127]. r == 0 gives -127.
QF_HD inline int CeilLog2Clamped(float r) {
  const uint32_t b = F32Bits(r) & 0x7FFFFFFFu;
  const uint32_t e_field = b >> 23, m = b & 0x7FFFFFu;
  int e;
  if (e_field == 0) {
    // r <= 2^-127 (m <= 2^22) gives -127 after the clamp; (2^-127, 2^-126) gives -126.
    e = m > 0x400000u ? -126 : -127;
  } else if (e_field == 0xFE) {
    e = 127;  // the kernel's upper clamp: exponent 127 is kept even with a non-zero significand
  } else {
    e = static_cast<int>(e_field) - 127 + (m != 0 ? 1 : 0);
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------
// E2M1 value table (index = 3-bit magnitude code) and ModelOpt's decision boundaries (spec §5.3).
QF_HD inline float E2M1Magnitude(uint32_t idx) {
  // 0, 0.5, 1, 1.5, 2, 3, 4, 6
  return idx < 4 ? 0.5f * static_cast<float>(idx) : (idx < 6 ? static_cast<float>(idx - 2) : (idx == 6 ? 4.0f : 6.0f));
}

// RNE magnitude index of v = |x|/s as ModelOpt's Triton `fp4_round_magnitude` computes it: a chain of
// comparisons (<=0.25, <0.75, <=1.25, <1.75, <=2.5, <3.5, <=5), so NaN falls through to 6 (index 7).
QF_HD inline uint32_t E2M1RoundIndexChain(float v) {
  return v <= 0.25f ? 0u
       : v < 0.75f  ? 1u
       : v <= 1.25f ? 2u
       : v < 1.75f  ? 3u
       : v <= 2.5f  ? 4u
       : v < 3.5f   ? 5u
       : v <= 5.0f  ? 6u
                    : 7u;
}

// Index with ties toward the smaller magnitude: the number of boundaries strictly below v (ModelOpt's
// MXFP4 export, `cast_fp4`, spec §5.4 / §13 Q5).
QF_HD inline uint32_t E2M1RoundIndexTiesDown(float v) {
  return (v > 0.25f) + (v > 0.75f) + (v > 1.25f) + (v > 1.75f) + (v > 2.5f) + (v > 3.5f) + (v > 5.0f);
}

}  // namespace qforge
