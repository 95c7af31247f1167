// The error of an encoding against the weight it encodes: sums in double of (w[i] - dq(i))^2 and w[i]^2 over
// i < n, where dq(i) is the decoded value of element i (any callable). OpenMP-parallel above 2^20 elements;
// include it only from translation units compiled with OpenMP (the pragma is the point).
#pragma once

#include <cstdint>
#include <utility>

namespace qforge {

template <typename Decode>
std::pair<double, double> EncodingErrorSums(const float* w, int64_t n, Decode dq) {
  double num = 0, den = 0;
#pragma omp parallel for reduction(+ : num, den) if (n > (int64_t{1} << 20))
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(w[i]) - dq(i);
    num += e * e;
    den += static_cast<double>(w[i]) * w[i];
  }
  return {num, den};
}

}  // namespace qforge
