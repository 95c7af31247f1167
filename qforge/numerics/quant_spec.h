// QuantSpec: the numeric meaning of a QuantizerAttributeConfig (spec §2, §5), free of config syntax.
//
// config/ parses and validates QuantizerAttributeConfig and converts it to a QuantSpec; numerics/ and the
// runtime kernels only ever see QuantSpec. Fields mirror the config names so code and spec can be searched
// together.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qforge {

// Element format: an integer of `bits` bits, or a float with `exponent`/`mantissa` bits ((4,3) = E4M3,
// (2,1) = E2M1, (8,0) = E8M0 when used as a scale format).
struct NumBits {
  enum class Kind { kInt, kFloat };
  Kind kind = Kind::kInt;
  int bits = 8;      // kInt only
  int exponent = 0;  // kFloat only
  int mantissa = 0;  // kFloat only

  static NumBits Int(int bits) { return {Kind::kInt, bits, 0, 0}; }
  static NumBits Float(int e, int m) { return {Kind::kFloat, 0, e, m}; }
  bool is_int() const { return kind == Kind::kInt; }
  bool is_float() const { return kind == Kind::kFloat; }
  bool IsFloat(int e, int m) const { return is_float() && exponent == e && mantissa == m; }
  bool operator==(const NumBits&) const = default;
  // "8" for ints, "(4, 3)" for floats (ModelOpt's repr).
  std::string ToString() const;
};

// block_sizes (spec §2.2): per-axis block sizes plus the block-level options.
struct BlockSpec {
  // Axis (as written: may be negative) -> block size; nullopt means "the whole dimension".
  // Kept in the order given.
  std::vector<std::pair<int, std::optional<int64_t>>> sizes;
  bool dynamic = false;               // block `type: dynamic`: per-block scales computed on the fly
  std::optional<NumBits> scale_bits;  // format of the per-block scale: (4,3) NVFP4, (8,0) MX E8M0
  bool four_over_six = false;         // NVFP4 "4/6": FP8_NORM = 256 instead of 448
  bool operator==(const BlockSpec&) const = default;
};

struct QuantSpec {
  NumBits num_bits = NumBits::Int(8);
  std::optional<std::vector<int>> axis;  // dims that keep their own amax; nullopt = per tensor
  std::optional<BlockSpec> block;        // block quantization (mutually exclusive with axis)
  bool is_unsigned = false;              // integer only
  bool narrow_range = false;             // integer only: symmetric +-(2^(b-1)-1)
  bool dynamic = false;                  // top-level `type: dynamic`: amax from every input
  bool use_constant_amax = false;        // amax pinned to 448 (KV "cast" mode)
  std::optional<double> constant_amax;   // amax pinned to this value
  bool operator==(const QuantSpec&) const = default;

  // Derived predicates of spec §2.5.
  bool IsMx() const;             // dynamic block with E8M0 scales
  bool IsNvfp4Dynamic() const;   // dynamic block, (2,1) elements, (4,3) scales
  bool IsStaticBlock() const;    // block_sizes set and block type static
  bool IsNvfp4Static() const;    // static block, (2,1) elements, (4,3) scales
  bool IsFp8PerTensor() const;   // (4,3), no block_sizes, no axis
};

}  // namespace qforge
