// Test support: a dense probe of every rounding decision of a float format at scale 1, shared by the CPU
// kernels' tests and the device consistency suite.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

#include "qforge/numerics/format.h"

namespace qforge::testing_support {

// Every finite magnitude of format `f`, the midpoints between neighbours (ties) and their fp32 neighbours,
// then max_finite times each of `above_max` (saturation), and all of these negated.
inline std::vector<float> RoundingProbe(Format f, std::initializer_list<float> above_max) {
  const FormatTraits& t = GetTraits(f);
  std::vector<float> vals;
  for (uint32_t c = 0; c < (1u << (t.bits - 1)); ++c) {
    const float v = t.decode(c);
    if (std::isfinite(v)) vals.push_back(v);
  }
  std::sort(vals.begin(), vals.end());
  std::vector<float> probe;
  const float inf = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < vals.size(); ++i) {
    probe.push_back(vals[i]);
    if (i + 1 < vals.size()) {
      const float mid = (vals[i] + vals[i + 1]) / 2;
      for (float m : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, inf)}) probe.push_back(m);
    }
  }
  for (float k : above_max) probe.push_back(t.max_finite * k);
  const size_t n = probe.size();
  for (size_t i = 0; i < n; ++i) probe.push_back(-probe[i]);
  return probe;
}

}  // namespace qforge::testing_support
