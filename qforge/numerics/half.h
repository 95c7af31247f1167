// BF16 and FP16 <-> FP32 conversions, exact with round-to-nearest-even (as PyTorch's casts).
//
// BF16: [s:1][e:8][m:7]  = the top 16 bits of an fp32.
// FP16: [s:1][e:5][m:10] IEEE binary16, bias 15, subnormals, max 65504, overflow -> inf.
// NaN inputs stay NaN (quiet) in both directions. Header-only and CUDA-includable (no STL).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QF_HD __host__ __device__
#else
#define QF_HD
#endif

namespace qforge {

QF_HD inline uint32_t F32Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
QF_HD inline float F32FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

QF_HD inline float Bf16ToF32(uint16_t h) { return F32FromBits(static_cast<uint32_t>(h) << 16); }

QF_HD inline uint16_t F32ToBf16Rne(float f) {
  uint32_t u = F32Bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

QF_HD inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1F) return F32FromBits(sign | 0x7F800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    if (man == 0) return F32FromBits(sign);
    // subnormal: man * 2^-24, exact in fp32
    float v = static_cast<float>(man) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return F32FromBits(sign | ((exp + 112u) << 23) | (man << 13));
}

QF_HD inline uint16_t F32ToF16Rne(float f) {
  const uint32_t u = F32Bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {                                              // normal half (>= 2^-14)
    uint32_t r = a - (112u << 23);                                     // rebias exponent
    r += 0xFFFu + ((r >> 13) & 1u);                                    // RNE on the 13 dropped bits
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to even = 0)
  // subnormal half: value = m * 2^-24 with m in [0, 1024]
  const uint32_t exp = a >> 23;  // 102..112
  const uint32_t man = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // bits to drop so that the result is in units of 2^-24
  uint32_t m = man >> shift;
  const uint32_t rem = man & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (m & 1u))) ++m;
  return static_cast<uint16_t>(sign | m);
}

}  // namespace qforge
