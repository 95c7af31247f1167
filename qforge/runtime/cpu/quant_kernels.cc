// SIMD + OpenMP quantization kernels (quant_kernels.h). Highway re-includes this file once per x86 target
// (SSE4, AVX2, AVX-512) and HWY_DYNAMIC_DISPATCH picks the best one at run time.
#include "qforge/runtime/cpu/quant_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "qforge/numerics/encode.h"
#include "qforge/numerics/qdq.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "qforge/runtime/cpu/quant_kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qforge::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One vector of at most 16 floats: an NVFP4 block is 1..4 vectors on every x86 target.
using DF = hn::CappedTag<float, 16>;

// Round-to-nearest-even of a >= 0 (NaN lanes are don't-care) onto a minifloat grid with kMant mantissa
// bits and smallest normal exponent kEmin, saturating at max_finite (exactly layout.h's EncodeMinifloat
// + DecodeMinifloat in kSaturate mode for non-NaN inputs).
template <int kMant, int kEmin, class D, class V>
HWY_INLINE V RoundMinifloat(D d, V a, float max_finite) {
  const hn::RebindToUnsigned<D> du;
  a = hn::Min(a, hn::Set(d, max_finite));
  constexpr int kShift = 23 - kMant;
  auto bits = hn::BitCast(du, a);
  const auto lsb = hn::And(hn::ShiftRight<kShift>(bits), hn::Set(du, 1u));
  bits = hn::Add(bits, hn::Add(hn::Set(du, (1u << (kShift - 1)) - 1u), lsb));
  bits = hn::And(bits, hn::Set(du, ~((1u << kShift) - 1u)));
  const V normal = hn::BitCast(d, bits);
  const V magic = hn::Set(d, Pow2(kEmin - kMant + 23));  // (a + magic) - magic rounds to the subnormal step
  const V sub = hn::Sub(hn::Add(a, magic), magic);
  return hn::IfThenElse(hn::Lt(a, hn::Set(d, Pow2(kEmin))), sub, normal);
}

// E4M3 code (no sign) of an already rounded, in-range magnitude r in [0, 448].
template <class D, class V>
HWY_INLINE auto E4M3CodeOfRounded(D d, V r) {
  const hn::RebindToSigned<D> di;
  const auto norm = hn::Sub(hn::ShiftRight<20>(hn::BitCast(di, r)), hn::Set(di, 120 << 3));
  const auto sub = hn::ConvertTo(di, hn::Mul(r, hn::Set(d, 512.0f)));
  return hn::IfThenElse(hn::RebindMask(di, hn::Lt(r, hn::Set(d, 0x1p-6f))), sub, norm);
}

// Magnitude of the E2M1 comparison chain of ModelOpt's Triton kernel (NaN -> 6).
template <class D, class V>
HWY_INLINE V E2M1Chain(D d, V v) {
  V r = hn::Set(d, 6.0f);
  r = hn::IfThenElse(hn::Le(v, hn::Set(d, 5.0f)), hn::Set(d, 4.0f), r);
  r = hn::IfThenElse(hn::Lt(v, hn::Set(d, 3.5f)), hn::Set(d, 3.0f), r);
  r = hn::IfThenElse(hn::Le(v, hn::Set(d, 2.5f)), hn::Set(d, 2.0f), r);
  r = hn::IfThenElse(hn::Lt(v, hn::Set(d, 1.75f)), hn::Set(d, 1.5f), r);
  r = hn::IfThenElse(hn::Le(v, hn::Set(d, 1.25f)), hn::Set(d, 1.0f), r);
  r = hn::IfThenElse(hn::Lt(v, hn::Set(d, 0.75f)), hn::Set(d, 0.5f), r);
  r = hn::IfThenElse(hn::Le(v, hn::Set(d, 0.25f)), hn::Zero(d), r);
  return r;
}

// fmax-fold of min(|x|, clamp) over `n` (multiple of the lane count) floats: NaN ignored unless all NaN.
HWY_INLINE float BlockAbsMaxIgnoreNan(const float* x, size_t n, float clamp) {
  const DF d;
  const size_t N = hn::Lanes(d);
  auto m = hn::Set(d, -1.0f);
  for (size_t k = 0; k < n; k += N) {
    auto a = hn::Min(hn::Abs(hn::LoadU(d, x + k)), hn::Set(d, clamp));
    const auto v = hn::LoadU(d, x + k);
    a = hn::IfThenElse(hn::IsNaN(v), hn::Set(d, -1.0f), a);
    m = hn::Max(m, a);
  }
  const float r = hn::GetLane(hn::MaxOfLanes(d, m));
  return r < 0.0f ? std::numeric_limits<float>::quiet_NaN() : r;
}

// y = e4m3_sat(x*scale) * inv (FP8 fake quant of one group).
void Fp8QdqSpan(const float* x, float* y, size_t n, float scale, float inv) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, scale), vi = hn::Set(d, inv);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::Mul(hn::LoadU(d, x + i), vs);
    const auto q = RoundMinifloat<3, -6>(d, hn::Abs(v), 448.0f);
    const auto r = hn::Mul(hn::CopySign(q, v), vi);
    hn::StoreU(hn::IfThenElse(hn::IsNaN(v), v, r), d, y + i);
  }
  for (; i < n; ++i) y[i] = DecodeE4M3(EncodeE4M3(x[i] * scale)) * inv;
}

// y = clamp(rint(x*scale), minb, maxb) / scale (integer fake quant of one group).
void IntQdqSpan(const float* x, float* y, size_t n, float scale, float maxb, float minb) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, scale), vmax = hn::Set(d, maxb), vmin = hn::Set(d, minb);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    auto q = hn::Round(hn::Mul(hn::LoadU(d, x + i), vs));
    q = hn::IfThenElse(hn::Gt(q, vmax), vmax, q);
    q = hn::IfThenElse(hn::Lt(q, vmin), vmin, q);
    hn::StoreU(hn::Div(q, vs), d, y + i);
  }
  for (; i < n; ++i) {
    float q = std::nearbyint(x[i] * scale);
    q = q > maxb ? maxb : q;
    q = q < minb ? minb : q;
    y[i] = q / scale;
  }
}

// NVFP4 dynamic fake quant of `nblk` consecutive 16-element blocks with g = global_amax / 2688.
void Nvfp4DynQdqBlocks(const float* x, float* y, size_t nblk, float g) {
  const DF d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float bmax[16];
  HWY_ALIGN float scale[16];
  const float gs = g > 0.0f ? g : 1e-12f;
  const auto denom = hn::Set(d, 6.0f * gs), vg = hn::Set(d, g);
  for (size_t b0 = 0; b0 < nblk; b0 += 16) {
    const size_t nb = std::min<size_t>(16, nblk - b0);
    for (size_t b = 0; b < nb; ++b) bmax[b] = BlockAbsMaxIgnoreNan(x + (b0 + b) * 16, 16, HUGE_VALF);
    for (size_t b = nb; b < 16; ++b) bmax[b] = 0.0f;
    for (size_t k = 0; k < 16; k += N) {
      auto t = hn::Div(hn::Load(d, bmax + k), denom);
      t = hn::IfThenElse(hn::Le(t, hn::Set(d, 448.0f)), t, hn::Set(d, 448.0f));
      auto s = hn::Mul(RoundMinifloat<3, -6>(d, t, 448.0f), vg);
      s = hn::IfThenElse(hn::Ge(s, hn::Set(d, 1e-5f)), s, hn::Set(d, 1.0f));
      hn::Store(s, d, scale + k);
    }
    for (size_t b = 0; b < nb; ++b) {
      const auto vs = hn::Set(d, scale[b]);
      const float* xb = x + (b0 + b) * 16;
      float* yb = y + (b0 + b) * 16;
      for (size_t k = 0; k < 16; k += N) {
        const auto xv = hn::LoadU(d, xb + k);
        const auto r = hn::Mul(E2M1Chain(d, hn::Div(hn::Abs(xv), vs)), vs);
        hn::StoreU(hn::IfThenElse(hn::Ge(xv, hn::Zero(d)), r, hn::Neg(r)), d, yb + k);
      }
    }
  }
}

// NVFP4 fake quant of `nblk` consecutive 16-element blocks with precomputed block scales (static NVFP4,
// Triton `nvfp4_scalar_quant`): s == 0 -> zeros; non-finite s -> 1.
void Nvfp4QdqBlocksWithScales(const float* x, float* y, const float* scales, size_t nblk) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t b = 0; b < nblk; ++b) {
    const float* xb = x + b * 16;
    float* yb = y + b * 16;
    const float s = scales[b];
    if (s == 0.0f) {
      for (size_t k = 0; k < 16; k += N) hn::StoreU(hn::Zero(d), d, yb + k);
      continue;
    }
    const auto vs = hn::Set(d, IsFiniteF32(s) ? s : 1.0f);
    for (size_t k = 0; k < 16; k += N) {
      const auto xv = hn::LoadU(d, xb + k);
      const auto r = hn::Mul(E2M1Chain(d, hn::Div(hn::Abs(xv), vs)), vs);
      hn::StoreU(hn::IfThenElse(hn::Ge(xv, hn::Zero(d)), r, hn::Neg(r)), d, yb + k);
    }
  }
}

template <int kElem>
HWY_INLINE hn::Vec<DF> MxConvertV(DF d, hn::Vec<DF> v) {
  if constexpr (kElem == static_cast<int>(Format::kE4M3)) return RoundMinifloat<3, -6>(d, v, 448.0f);
  if constexpr (kElem == static_cast<int>(Format::kE5M2)) return RoundMinifloat<2, -14>(d, v, 57344.0f);
  if constexpr (kElem == static_cast<int>(Format::kE3M2)) return RoundMinifloat<2, -2>(d, v, 28.0f);
  if constexpr (kElem == static_cast<int>(Format::kE2M3)) return RoundMinifloat<3, 0>(d, v, 7.5f);
  if constexpr (kElem == static_cast<int>(Format::kE2M1)) return RoundMinifloat<1, 0>(d, v, 6.0f);
  if constexpr (kElem == static_cast<int>(Format::kInt8)) return hn::Min(hn::Round(v), hn::Set(d, 127.0f));
  return v;
}

template <int kElem>
void MxQdqBlocksT(const float* x, float* y, size_t nblk, float fmt_max) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t b = 0; b < nblk; ++b) {
    const float* xb = x + b * 32;
    float* yb = y + b * 32;
    const int e = MxScaleExponent(BlockAbsMaxIgnoreNan(xb, 32, FLT_MAX), fmt_max);
    const auto sc = hn::Set(d, Pow2(-e)), un = hn::Set(d, Pow2(e));
    for (size_t k = 0; k < 32; k += N) {
      const auto xv = hn::LoadU(d, xb + k);
      auto r = hn::Mul(MxConvertV<kElem>(d, hn::Mul(hn::Abs(xv), sc)), un);
      r = hn::IfThenElse(hn::Lt(xv, hn::Zero(d)), hn::Neg(r), r);
      r = hn::IfThenZeroElse(hn::Eq(xv, hn::Zero(d)), r);
      hn::StoreU(hn::IfThenElse(hn::IsNaN(xv), xv, r), d, yb + k);
    }
  }
}

void MxQdqBlocks(const float* x, float* y, size_t nblk, float fmt_max, int element) {
  switch (static_cast<Format>(element)) {
    case Format::kE4M3: return MxQdqBlocksT<static_cast<int>(Format::kE4M3)>(x, y, nblk, fmt_max);
    case Format::kE5M2: return MxQdqBlocksT<static_cast<int>(Format::kE5M2)>(x, y, nblk, fmt_max);
    case Format::kE3M2: return MxQdqBlocksT<static_cast<int>(Format::kE3M2)>(x, y, nblk, fmt_max);
    case Format::kE2M3: return MxQdqBlocksT<static_cast<int>(Format::kE2M3)>(x, y, nblk, fmt_max);
    case Format::kE2M1: return MxQdqBlocksT<static_cast<int>(Format::kE2M1)>(x, y, nblk, fmt_max);
    case Format::kInt8: return MxQdqBlocksT<static_cast<int>(Format::kInt8)>(x, y, nblk, fmt_max);
    default: return;
  }
}

// max|x| over n floats; *nan = whether any element is NaN.
float AbsMaxSpan(const float* x, size_t n, bool* nan) {
  const DF d;
  const size_t N = hn::Lanes(d);
  auto m = hn::Zero(d);
  auto nan_acc = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(d, x + i);
    const auto isn = hn::IsNaN(v);
    nan_acc = hn::Or(nan_acc, hn::VecFromMask(d, isn));
    m = hn::Max(m, hn::IfThenZeroElse(isn, hn::Abs(v)));
  }
  float r = hn::GetLane(hn::MaxOfLanes(d, m));
  bool any_nan = !hn::AllFalse(d, hn::MaskFromVec(nan_acc));
  for (; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) any_nan = true;
    else r = std::max(r, a);
  }
  *nan = any_nan;
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Export packing: one pass over the weight. The finiteness check rides on values the encoders need
// anyway (the NVFP4 block maxes, a running max of the FP8 inputs' |w| bit patterns); codes are computed
// on fp32 bit patterns and written as bytes straight from the vectors.

using DI = hn::RebindToSigned<DF>;
using DU = hn::RebindToUnsigned<DF>;

// Software prefetch distance of the packing kernels, in floats (4 KiB): the hardware prefetchers alone
// leave these streams stalled on memory (measured 1.4x slower on 64 MiB inputs than with it).
constexpr size_t kPrefetchFloats = 1024;
constexpr size_t kPrefetchBlocks = kPrefetchFloats / 16;

// E4M3 code (sign included) of the PyTorch non-saturating cast of v (encode.h EncodeFp8Reference) for
// non-NaN v: RNE onto the E4M3 grid without clamping, so whatever rounds above 448 (code 0x7E, inf
// included) becomes 0x7F, the NaN code. Lanes are i32 codes in [0, 255].
HWY_INLINE hn::Vec<DI> Fp8NonSatCode(DF d, hn::Vec<DF> v) {
  const DI di;
  const DU du;
  const auto a = hn::Abs(v);
  const auto ab = hn::BitCast(di, a);
  // |v| >= 2^-6: round the fp32 bits at bit 20 (3 mantissa bits kept, ties to even); the E4M3 code is the
  // rounded exponent|mantissa field minus the bias difference 120 << 3, folded into the rounding constant.
  const auto lsb = hn::And(hn::ShiftRight<20>(ab), hn::Set(di, 1));
  const auto normal = hn::Min(hn::ShiftRight<20>(hn::Add(hn::Add(ab, hn::Set(di, 0x7FFFF - (960 << 20))), lsb)),
                              hn::Set(di, 0x7F));
  // |v| < 2^-6: subnormal steps of 2^-9, the ulp of 2^14, so a + 2^14 rounds (ties to even) and its low
  // mantissa bits are the code.
  const auto sub = hn::Sub(hn::BitCast(di, hn::Add(a, hn::Set(d, 16384.0f))), hn::Set(di, 0x46800000));
  const auto code = hn::IfThenElse(hn::RebindMask(di, hn::Lt(a, hn::Set(d, 0x1p-6f))), sub, normal);
  // The sign bit of v (so -0 -> 0x80, as PyTorch casts it).
  return hn::OrAnd(code, hn::BitCast(di, hn::ShiftRight<24>(hn::BitCast(du, v))), hn::Set(di, 0x80));
}

// codes[i] = e4m3_nonsat(w[i] / scale) (PyTorch cast: > 464 -> NaN code, sign kept), for a positive
// finite scale. Returns false if some w[i] is not finite (the codes are then incomplete).
bool EncodeFp8Span(const float* w, uint8_t* codes, size_t n, float scale) {
  const DF d;
  const DI di;
  const DU du;
  const hn::Rebind<uint8_t, DU> d8;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, scale);
  auto maxbits = hn::Zero(di);  // max fp32 bit pattern of |w|: >= 0x7F800000 iff a non-finite input
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {  // one 64-byte line of w per iteration
    if (i + kPrefetchFloats < n) hwy::Prefetch(w + i + kPrefetchFloats);
    for (size_t k = 0; k < 16; k += N) {
      const auto wv = hn::LoadU(d, w + i + k);
      maxbits = hn::Max(maxbits, hn::BitCast(di, hn::Abs(wv)));
      hn::StoreU(hn::TruncateTo(d8, hn::BitCast(du, Fp8NonSatCode(d, hn::Div(wv, vs)))), d8, codes + i + k);
    }
  }
  bool finite = hn::GetLane(hn::MaxOfLanes(di, maxbits)) < 0x7F800000;
  for (; i < n; ++i) {
    finite &= std::isfinite(w[i]);
    codes[i] = EncodeE4M3(w[i] / scale, Overflow::kNonSat);
  }
  return finite;
}

#if HWY_TARGET != HWY_SCALAR
// One merge of TransposedMax: a and b each hold partial maxima of some sources in every lane; the
// result holds those of a in the lower and those of b in the upper kBits-wide piece of each 2*kBits.
template <int kBits, class D, class V>
HWY_INLINE V MergeMax(D d, V a, V b) {
  if constexpr (kBits == 32) {
    return hn::Max(hn::InterleaveLower(d, a, b), hn::InterleaveUpper(d, a, b));
  } else if constexpr (kBits == 64) {
    const hn::Repartition<uint64_t, D> d64;
    const auto a64 = hn::BitCast(d64, a), b64 = hn::BitCast(d64, b);
    return hn::Max(hn::BitCast(d, hn::InterleaveLower(d64, a64, b64)),
                   hn::BitCast(d, hn::InterleaveUpper(d64, a64, b64)));
  } else if constexpr (kBits == 128) {  // [a0 b0 a2 b2] vs [a1 b1 a3 b3] (128-bit blocks)
    return hn::Max(hn::OddEvenBlocks(hn::SwapAdjacentBlocks(b), a), hn::OddEvenBlocks(b, hn::SwapAdjacentBlocks(a)));
  } else {  // halves: [a.lo b.lo] vs [a.hi b.hi]
    return hn::Max(hn::ConcatLowerLower(d, b, a), hn::ConcatUpperUpper(d, b, a));
  }
}

// r[j] = max over the lanes of v[j], for the N = Lanes(d) vectors v[0..N-1] (N in {4, 8, 16}; v is
// clobbered): N-1 merges of three ops instead of N horizontal reductions. After the 32- and 64-bit
// merges every 128-bit block holds sources 4k..4k+3 in order; the 128-bit and half merges then put the
// four-source groups side by side, so lane j ends up with source j.
template <class D, class V>
HWY_INLINE V TransposedMax(D d, V* v) {
  constexpr size_t N = hn::MaxLanes(D());
  static_assert(N == 4 || N == 8 || N == 16, "TransposedMax needs 4, 8 or 16 lanes");
  for (size_t k = 0; k < N / 2; ++k) v[k] = MergeMax<32>(d, v[2 * k], v[2 * k + 1]);
  for (size_t k = 0; k < N / 4; ++k) v[k] = MergeMax<64>(d, v[2 * k], v[2 * k + 1]);
  if constexpr (N == 16) {
    for (size_t k = 0; k < 2; ++k) v[k] = MergeMax<128>(d, v[2 * k], v[2 * k + 1]);
  }
  if constexpr (N >= 8) v[0] = MergeMax<256>(d, v[0], v[1]);
  return v[0];
}

// E2M1 code (sign included) of NVFP4 export (encode.h Nvfp4ExportCode) for non-NaN v: sign = (v < 0),
// magnitude = RNE onto {0, 0.5, 1, 1.5, 2, 3, 4, 6}, saturating (= searchsorted plus the odd-tie rule).
HWY_INLINE hn::Vec<DI> Nvfp4Code(DF d, hn::Vec<DF> v) {
  const DI di;
  const auto a = hn::Abs(v);
  const auto ab = hn::BitCast(di, a);
  // a >= 1: round the fp32 bits at bit 22 (one mantissa bit, ties to even); code = 2*(exponent - 127) +
  // mantissa + 2, the bias folded into the rounding constant; inf and everything above 5 saturate to 7.
  const auto lsb = hn::And(hn::ShiftRight<22>(ab), hn::Set(di, 1));
  const auto big = hn::Min(hn::ShiftRight<22>(hn::Add(hn::Add(ab, hn::Set(di, 0x1FFFFF - (252 << 22))), lsb)),
                           hn::Set(di, 7));
  // a < 1: steps of 0.5, the ulp of 2^22, so a + 2^22 rounds (ties to even) and its low bits are 2a.
  const auto small = hn::Sub(hn::BitCast(di, hn::Add(a, hn::Set(d, 0x1p22f))), hn::Set(di, 0x4A800000));
  const auto code = hn::IfThenElse(hn::RebindMask(di, hn::Lt(a, hn::Set(d, 1.0f))), small, big);
  return hn::IfThenElse(hn::RebindMask(di, hn::Lt(v, hn::Zero(d))), hn::Or(code, hn::Set(di, 8)), code);
}

// Two vectors of codes (N i32 lanes each, in element order) -> N bytes, element 2k in the low nibble of
// byte k: in each 64-bit lane c_even | c_odd << 32 becomes c_even | c_odd << 4 in its low 32 bits.
HWY_INLINE void StoreNibblePairs(hn::Vec<DI> c0, hn::Vec<DI> c1, uint8_t* out) {
  const DU du;
  const hn::Repartition<uint64_t, DU> d64;
  const hn::Rebind<uint8_t, DU> d8;
  const auto x0 = hn::BitCast(d64, c0), x1 = hn::BitCast(d64, c1);
  const auto y0 = hn::BitCast(du, hn::Or(x0, hn::ShiftRight<28>(x0)));
  const auto y1 = hn::BitCast(du, hn::Or(x1, hn::ShiftRight<28>(x1)));
  hn::StoreU(hn::TruncateTo(d8, hn::ConcatEven(du, y1, y0)), d8, out);
}

// Block maxes, finiteness check and block scales of one group of 16 blocks at wg (Nvfp4ExportBlockScale:
// t = max / (6 ws2); 0 -> 1; clamp [2^-9, 448]; E4M3 RNE): scale bytes to sc[16], denominators
// e4m3(scale) * ws2 to den[16]. Returns false if the group holds a non-finite weight.
HWY_INLINE bool Nvfp4GroupScales(const float* wg, float ws2, uint8_t* sc, float* den) {
  const DF d;
  const DI di;
  const DU du;
  const hn::Rebind<uint8_t, DU> d8;
  constexpr size_t N = hn::MaxLanes(DF());
  constexpr size_t kVecs = 16 / N;  // vectors per block
  for (size_t s = 0; s < 16; s += N) {
    hn::Vec<DI> m[N];
    for (size_t b = 0; b < N; ++b) {
      const float* wb = wg + (s + b) * 16;
      auto mb = hn::BitCast(di, hn::Abs(hn::LoadU(d, wb)));
      for (size_t k = 1; k < kVecs; ++k) mb = hn::Max(mb, hn::BitCast(di, hn::Abs(hn::LoadU(d, wb + k * N))));
      m[b] = mb;
    }
    // fp32 bits of max|w| per block (integer order = float order for non-negative values): above the
    // largest finite value's bits iff the block holds inf or NaN.
    const auto bits = TransposedMax(di, m);
    if (!hn::AllFalse(di, hn::Gt(bits, hn::Set(di, 0x7F7FFFFF)))) return false;
    auto t = hn::Div(hn::BitCast(d, bits), hn::Set(d, 6.0f * ws2));
    t = hn::IfThenElse(hn::Eq(t, hn::Zero(d)), hn::Set(d, 1.0f), t);
    t = hn::Min(hn::Max(t, hn::Set(d, 0x1p-9f)), hn::Set(d, 448.0f));
    const auto r = RoundMinifloat<3, -6>(d, t, 448.0f);
    hn::StoreU(hn::TruncateTo(d8, hn::BitCast(du, E4M3CodeOfRounded(d, r))), d8, sc + s);
    hn::Store(hn::Mul(r, hn::Set(d, ws2)), d, den + s);
  }
  return true;
}
#endif  // HWY_TARGET != HWY_SCALAR

// NVFP4 export (encode.h PackNvfp4Reference) of `nblk` consecutive 16-element blocks with weight_scale_2
// ws2 >= 2^-140 (so every denominator e4m3(scale) * ws2 >= 2^-149 is nonzero and no quotient is NaN):
// scale bytes [nblk] and packed codes [nblk * 8]. Groups of 16 blocks: block maxes by one transposed
// reduction per N blocks, 16 block scales as vectors, then the elements; a partial last group runs the
// reference. The scales of group g+1 are computed before the elements of group g: their chain of
// dependent ops (a division among them) then overlaps with independent work instead of stalling the
// next group's divisions (measured: 19% of the time before). Returns false (outputs incomplete) at a
// group that holds a non-finite weight.
bool PackNvfp4Blocks(const float* w, size_t nblk, float ws2, uint8_t* packed, uint8_t* scales) {
#if HWY_TARGET == HWY_SCALAR
  return PackNvfp4Reference({w, nblk * 16}, static_cast<int64_t>(nblk), 16, ws2, {packed, nblk * 8}, {scales, nblk});
#else
  const DF d;
  constexpr size_t N = hn::MaxLanes(DF());
  constexpr size_t kVecs = 16 / N;  // vectors per block
  HWY_ALIGN float denom[2][16];     // denominators of the group in hand and of the next one
  const size_t ngroups = nblk / 16;
  if (ngroups > 0 && !Nvfp4GroupScales(w, ws2, scales, denom[0])) return false;
  for (size_t g = 0; g < ngroups; ++g) {
    const float* wg = w + g * 256;
    if ((g + 1) * 16 + kPrefetchBlocks <= nblk) {
      for (size_t b = 0; b < 16; ++b) hwy::Prefetch(wg + (kPrefetchBlocks + b) * 16);  // one 64-byte line each
    }
    if (g + 1 < ngroups && !Nvfp4GroupScales(wg + 256, ws2, scales + (g + 1) * 16, denom[(g + 1) & 1])) return false;
    // Elements, two vectors (2N codes = N bytes) at a time, in element order across the group.
    const float* den = denom[g & 1];
    uint8_t* pg = packed + g * 128;
    for (size_t i = 0; i < 16 * kVecs; i += 2) {
      const float* x = wg + i * N;
      const auto c0 = Nvfp4Code(d, hn::Div(hn::LoadU(d, x), hn::Set(d, den[i / kVecs])));
      const auto c1 = Nvfp4Code(d, hn::Div(hn::LoadU(d, x + N), hn::Set(d, den[(i + 1) / kVecs])));
      StoreNibblePairs(c0, c1, pg + i * N / 2);
    }
  }
  const size_t b0 = ngroups * 16, rest = nblk - b0;
  if (rest == 0) return true;
  return PackNvfp4Reference({w + b0 * 16, rest * 16}, static_cast<int64_t>(rest), 16, ws2,
                            {packed + b0 * 8, rest * 8}, {scales + b0, rest});
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace qforge::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qforge::cpu {

HWY_EXPORT(Fp8QdqSpan);
HWY_EXPORT(IntQdqSpan);
HWY_EXPORT(Nvfp4DynQdqBlocks);
HWY_EXPORT(Nvfp4QdqBlocksWithScales);
HWY_EXPORT(MxQdqBlocks);
HWY_EXPORT(AbsMaxSpan);
HWY_EXPORT(EncodeFp8Span);
HWY_EXPORT(PackNvfp4Blocks);

namespace {

constexpr int64_t kChunk = 16384;  // elements per OpenMP work item (a multiple of every block size)
constexpr int64_t kStreamGrain = 65536;  // elements per piece of the packing kernels' streams (256 KiB)

// Runs f(begin, end) over [0, n) in chunks of `chunk`, in parallel when there is more than one chunk.
template <typename F>
void ParallelChunks(int64_t n, int64_t chunk, F&& f) {
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
}

// Runs f(begin, end) over [0, n) in pieces of `grain` elements handed to the OpenMP threads as they
// become free (one piece when n <= grain). The packing kernels stream their input with software
// prefetch: large pieces keep the streams long (the prefetch restarts once per piece), dynamic hand-out
// keeps both threads busy when another process slows one of them down.
template <typename F>
void ParallelStreams(int64_t n, int64_t grain, F&& f) {
  const int64_t pieces = (n + grain - 1) / grain;
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
  for (int64_t c = 0; c < pieces; ++c) f(c * grain, std::min(n, (c + 1) * grain));
}

// Group-wise FP8 / INT fake quant: groups are runs of `extent.back()` elements along the last dim.
bool SegmentedQdq(const QdqPlan& p, const float* x, float* y, std::span<const float> amax) {
  const int rank = static_cast<int>(p.shape.size());
  const int64_t cols = p.shape.back();
  auto apply = [&](const float* xs, float* ys, int64_t n, float a) {
    if (p.kind == QdqKind::kFp8) {
      const float aa = a <= 0x1p-24f ? 1.0f : a;
      const float scale = 448.0f / aa;
      HWY_DYNAMIC_DISPATCH(Fp8QdqSpan)(xs, ys, static_cast<size_t>(n), scale, 1.0f / scale);
    } else if (a <= 0x1p-24f) {
      std::fill(ys, ys + n, 0.0f);
    } else {
      HWY_DYNAMIC_DISPATCH(IntQdqSpan)(xs, ys, static_cast<size_t>(n), p.max_bound / a, p.max_bound, p.min_bound);
    }
  };
  if (p.num_groups == 1) {
    ParallelChunks(p.numel, kChunk, [&](int64_t lo, int64_t hi) { apply(x + lo, y + lo, hi - lo, amax[0]); });
    return true;
  }
  std::vector<int64_t> gstride(rank, 1);
  for (int d = rank - 2; d >= 0; --d) gstride[d] = gstride[d + 1] * p.groups[d + 1];
  const int64_t rows = p.numel / cols, ext = p.extent.back(), segs = p.groups.back();
#pragma omp parallel for schedule(static) if (p.numel > kChunk)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, base = 0;
    for (int d = rank - 2; d >= 0; --d) {
      base += ((rem % p.shape[d]) / p.extent[d]) * gstride[d];
      rem /= p.shape[d];
    }
    for (int64_t s = 0; s < segs; ++s) {
      const int64_t lo = s * ext, hi = std::min(cols, lo + ext);
      apply(x + r * cols + lo, y + r * cols + lo, hi - lo, amax[base + s]);
    }
  }
  return true;
}

// The kernels of this file behind numerics' HostQuantKernels interface.
class CpuHostKernels final : public HostQuantKernels {
 public:
  bool FakeQuant(const QdqPlan& plan, std::span<const float> x, std::span<const float> amax,
                 std::optional<float> global_amax, std::span<float> out) const override {
    return FakeQuantFast(plan, x, amax, global_amax, out);
  }
  bool AbsMax(std::span<const float> x, bool propagate_nan, float* result) const override {
    return AbsMaxFast(x, propagate_nan, result);
  }
  bool PackNvfp4(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                 std::span<uint8_t> packed, std::span<uint8_t> scales) const override {
    return PackNvfp4Fast(w, rows, cols, weight_scale_2, packed, scales);
  }
  bool EncodeFp8(std::span<const float> w, std::span<const float> scales, int64_t group,
                 std::span<uint8_t> codes) const override {
    return EncodeFp8Fast(w, scales, group, codes);
  }
};

}  // namespace

bool FakeQuantFast(const QdqPlan& p, std::span<const float> x, std::span<const float> amax,
                   std::optional<float> global_amax, std::span<float> out) {
  const int rank = static_cast<int>(p.shape.size());
  if (rank == 0 || p.numel == 0) return false;
  const int64_t cols = p.shape.back();
  switch (p.kind) {
    case QdqKind::kFp8:
    case QdqKind::kInt:
      return SegmentedQdq(p, x.data(), out.data(), amax);
    case QdqKind::kNvfp4Dynamic: {
      if (p.block_axis != rank - 1 || p.block_size != 16 || cols % 16 != 0) return false;
      const float g = amax[0] / 2688.0f;
      ParallelChunks(p.numel / 16, kChunk / 16, [&](int64_t lo, int64_t hi) {
        HWY_DYNAMIC_DISPATCH(Nvfp4DynQdqBlocks)(x.data() + lo * 16, out.data() + lo * 16, hi - lo, g);
      });
      return true;
    }
    case QdqKind::kMx: {
      if (p.block_axis != rank - 1 || p.block_size != 32 || cols % 32 != 0) return false;
      const int element = static_cast<int>(p.element);
      ParallelChunks(p.numel / 32, kChunk / 32, [&](int64_t lo, int64_t hi) {
        HWY_DYNAMIC_DISPATCH(MxQdqBlocks)(x.data() + lo * 32, out.data() + lo * 32, hi - lo, p.max_bound, element);
      });
      return true;
    }
    case QdqKind::kNvfp4Static: {
      // Only blocks of 16 along the last dim (the layout ModelOpt's kernel supports).
      for (int dd = 0; dd < rank - 1; ++dd)
        if (p.extent[dd] != 1) return false;
      if (p.extent[rank - 1] != 16 || cols % 16 != 0 || !global_amax) return false;
      const int64_t nblk = p.numel / 16;
      const float fp8_norm = p.spec.block->four_over_six ? 256.0f : 448.0f;
      std::vector<float> scales(static_cast<size_t>(nblk));
      ParallelChunks(nblk, kChunk, [&](int64_t lo, int64_t hi) {
        for (int64_t b = lo; b < hi; ++b) scales[b] = Nvfp4StaticBlockScale(amax[b], *global_amax, fp8_norm);
      });
      ParallelChunks(nblk, kChunk / 16, [&](int64_t lo, int64_t hi) {
        HWY_DYNAMIC_DISPATCH(Nvfp4QdqBlocksWithScales)(x.data() + lo * 16, out.data() + lo * 16, scales.data() + lo,
                                                       static_cast<size_t>(hi - lo));
      });
      return true;
    }
  }
  return false;
}

bool AbsMaxFast(std::span<const float> x, bool propagate_nan, float* result) {
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<float> maxes(std::max<int64_t>(nchunks, 1), 0.0f);
  std::vector<char> nans(maxes.size(), 0);
  ParallelChunks(n, kChunk, [&](int64_t lo, int64_t hi) {
    bool nan = false;
    maxes[lo / kChunk] = HWY_DYNAMIC_DISPATCH(AbsMaxSpan)(x.data() + lo, static_cast<size_t>(hi - lo), &nan);
    nans[lo / kChunk] = nan;
  });
  float m = 0.0f;
  bool nan = false;
  for (size_t i = 0; i < maxes.size(); ++i) {
    m = std::max(m, maxes[i]);
    nan |= nans[i] != 0;
  }
  *result = (nan && propagate_nan) ? std::numeric_limits<float>::quiet_NaN() : m;
  return true;
}

bool PackNvfp4Fast(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                   std::span<uint8_t> packed, std::span<uint8_t> scales) {
  // Below 2^-140 a block denominator e4m3(scale) * ws2 can underflow to 0 (0/0: the reference's NaN rule).
  if (cols % 16 != 0 || !(weight_scale_2 >= 0x1p-140f && weight_scale_2 <= FLT_MAX)) return false;
  const int64_t nblk = rows * cols / 16;
  bool ok = true;
  ParallelStreams(nblk, kStreamGrain / 16, [&](int64_t lo, int64_t hi) {
    if (!HWY_DYNAMIC_DISPATCH(PackNvfp4Blocks)(w.data() + lo * 16, static_cast<size_t>(hi - lo), weight_scale_2,
                                               packed.data() + lo * 8, scales.data() + lo)) {
#pragma omp atomic write
      ok = false;
    }
  });
  return ok;  // false: a non-finite weight; the caller's reference path reports it
}

bool EncodeFp8Fast(std::span<const float> w, std::span<const float> scales, int64_t group,
                   std::span<uint8_t> codes) {
  if (group <= 0) return false;
  // The kernel's code arithmetic assumes positive finite scales (no NaN quotient); others are the reference's.
  for (float s : scales.first(static_cast<size_t>((static_cast<int64_t>(w.size()) + group - 1) / group)))
    if (!(s > 0.0f && s <= FLT_MAX)) return false;
  bool ok = true;
  ParallelStreams(static_cast<int64_t>(w.size()), kStreamGrain, [&](int64_t lo, int64_t hi) {
    int64_t i = lo;
    bool finite = true;
    while (i < hi) {
      const int64_t g = i / group;
      const int64_t end = std::min(hi, (g + 1) * group);
      finite &= HWY_DYNAMIC_DISPATCH(EncodeFp8Span)(w.data() + i, codes.data() + i, static_cast<size_t>(end - i),
                                                    scales[g]);
      i = end;
    }
    if (!finite) {
#pragma omp atomic write
      ok = false;
    }
  });
  return ok;
}

const HostQuantKernels& HostKernels() {
  static const CpuHostKernels kernels;
  return kernels;
}

}  // namespace qforge::cpu
#endif  // HWY_ONCE
