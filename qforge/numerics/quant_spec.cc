// QuantSpec's derived predicates (spec §2.5) and NumBits printing.
#include "qforge/numerics/quant_spec.h"

#include <fmt/format.h>

namespace qforge {

std::string NumBits::ToString() const {
  if (is_int()) return fmt::format("{}", bits);
  return fmt::format("({}, {})", exponent, mantissa);
}

bool QuantSpec::IsMx() const {
  return block && block->dynamic && block->scale_bits && block->scale_bits->IsFloat(8, 0);
}

bool QuantSpec::IsNvfp4Dynamic() const {
  return block && block->dynamic && num_bits.IsFloat(2, 1) && block->scale_bits &&
         block->scale_bits->IsFloat(4, 3);
}

bool QuantSpec::IsStaticBlock() const { return block && !block->dynamic; }

bool QuantSpec::IsNvfp4Static() const {
  return IsStaticBlock() && num_bits.IsFloat(2, 1) && block->scale_bits && block->scale_bits->IsFloat(4, 3);
}

bool QuantSpec::IsFp8PerTensor() const { return num_bits.IsFloat(4, 3) && !block && !axis; }

}  // namespace qforge
