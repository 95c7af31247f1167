// Bit-pattern scans for NaN / Inf in stored tensors.
#include "qforge/export/value_scan.h"

#include <cstring>

namespace qforge {
namespace {

// One row per floating storage dtype: element width and the exponent mask (all ones = NaN or Inf).
// E4M3 is special: its all-ones exponent is a normal number, only magnitude 0x7F is NaN.
struct FloatBits {
  DType dtype;
  int bytes;
  uint64_t exponent_mask;  // non-finite iff (bits & mask) == mask
};
constexpr FloatBits kFloatBits[] = {
    {DType::kF32, 4, 0x7F800000u},
    {DType::kF16, 2, 0x7C00u},
    {DType::kBF16, 2, 0x7F80u},
    {DType::kF64, 8, 0x7FF0000000000000ull},
    {DType::kF8E4M3, 1, 0x7Fu},  // magnitude 0x7F only
    {DType::kF8E5M2, 1, 0x7Cu},
};

template <typename Bits>
void Scan(const Tensor& t, Bits mask, NonFiniteScan* out) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  for (int64_t i = 0; i < t.numel(); ++i) {
    Bits b;
    std::memcpy(&b, p + static_cast<size_t>(i) * sizeof(Bits), sizeof(Bits));  // safetensors data may be unaligned
    if ((b & mask) == mask) {
      if (out->count == 0) out->first = i;
      ++out->count;
    }
  }
}

}  // namespace

NonFiniteScan ScanNonFinite(const Tensor& t) {
  NonFiniteScan out;
  for (const auto& row : kFloatBits) {
    if (row.dtype != t.dtype()) continue;
    out.scanned = true;
    if (t.numel() == 0 || t.raw() == nullptr) return out;
    switch (row.bytes) {
      case 1: Scan<uint8_t>(t, static_cast<uint8_t>(row.exponent_mask), &out); break;
      case 2: Scan<uint16_t>(t, static_cast<uint16_t>(row.exponent_mask), &out); break;
      case 4: Scan<uint32_t>(t, static_cast<uint32_t>(row.exponent_mask), &out); break;
      default: Scan<uint64_t>(t, row.exponent_mask, &out); break;
    }
    return out;
  }
  return out;
}

}  // namespace qforge
