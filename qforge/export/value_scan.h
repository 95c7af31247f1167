// Finite-value scans over stored tensors, by bit pattern (no conversion, no allocation), shared by the
// exporter (which refuses to write a non-finite value) and `qforge check` (which reports them).
#pragma once

#include <cstdint>

#include "qforge/tensor/tensor.h"

namespace qforge {

struct NonFiniteScan {
  int64_t count = 0;   // elements that are NaN or +-Inf
  int64_t first = -1;  // flat index of the first one (-1 if none)
  bool scanned = false;  // false: the dtype has no NaN/Inf encoding this scan knows (integers, U8 codes)
};

// NaN / Inf elements of `t` for F32, F16, BF16 and F64 (an all-ones exponent field) and float8_e4m3fn
// (codes 0x7F / 0xFF; E4M3 has no infinities) or float8_e5m2 (all-ones exponent). Other dtypes are not
// scanned (`scanned` false). Reads every byte of `t` once; thread-safe for distinct or read-only tensors.
NonFiniteScan ScanNonFinite(const Tensor& t);

}  // namespace qforge
