// QuantizerAttributeConfig (spec §2): every attribute of one TensorQuantizer, its validation and its
// conversion to the numerics-level QuantSpec.
//
// Fields are declared once in VisitFields (declaration order = validation order, spec §2.4). Values in the
// generic model (json_util.h): num_bits is an int, an [E, M] array or an opaque backend string; integer
// keys of block_sizes / bias are strings ("-1"). `fields_set` records the explicitly given fields so the
// exclude_unset dump reproduces what the user wrote (ModelOpt's `model_dump(exclude_unset=True)`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qforge/config/fields.h"
#include "qforge/config/json_util.h"
#include "qforge/numerics/quant_spec.h"

namespace qforge::config {

// num_bits: int bits, (E, M) float format, or an opaque format name for a custom backend.
struct NumBitsValue {
  enum class Kind { kInt, kTuple, kString };
  Kind kind = Kind::kInt;
  int64_t bits = 8;
  std::vector<int64_t> tuple;  // kTuple: as written (validated to 2 positive ints later)
  std::string name;            // kString
  static NumBitsValue Int(int64_t b) { return {Kind::kInt, b, {}, {}}; }
  static NumBitsValue Float(int64_t e, int64_t m) { return {Kind::kTuple, 0, {e, m}, {}}; }
  bool IsTuple(int64_t e, int64_t m) const {
    return kind == Kind::kTuple && tuple.size() == 2 && tuple[0] == e && tuple[1] == m;
  }
  bool operator==(const NumBitsValue&) const = default;
};
void ParseValue(const Json& j, NumBitsValue* out, const std::string& path);
Json DumpValue(const NumBitsValue& v);

// axis: an int or a tuple of ints (dims that keep their own amax).
struct AxisValue {
  std::vector<int64_t> dims;
  bool is_tuple = false;
  bool operator==(const AxisValue&) const = default;
};
void ParseValue(const Json& j, AxisValue* out, const std::string& path);
Json DumpValue(const AxisValue& v);

// block_sizes (spec §2.2). Integer axis keys map to a block size or null; string keys only from
// {type, scale_bits, scale_block_sizes, four_over_six}. Key order as written is kept for dumps.
struct BlockSizesValue {
  std::vector<std::pair<int, std::optional<int64_t>>> axes;
  std::optional<std::string> type;  // "static" (default) | "dynamic"
  std::optional<NumBitsValue> scale_bits;
  std::optional<Json> scale_block_sizes;
  std::optional<int> four_over_six;  // bool coerced to 0/1 like upstream
  std::vector<std::string> key_order;
  bool dynamic() const { return type && *type == "dynamic"; }
  bool operator==(const BlockSizesValue&) const = default;
};
void ParseValue(const Json& j, BlockSizesValue* out, const std::string& path);
Json DumpValue(const BlockSizesValue& v);

// bias (spec §2.3): integer axes reduced over, plus optional type (static|dynamic) and method
// (mean|max_min).
struct BiasValue {
  std::vector<std::pair<int, Json>> axes;
  std::optional<std::string> type;
  std::optional<std::string> method;
  std::vector<std::string> key_order;
  bool is_static() const { return !type || *type == "static"; }
  bool operator==(const BiasValue&) const = default;
};
void ParseValue(const Json& j, BiasValue* out, const std::string& path);
Json DumpValue(const BiasValue& v);

// RotateConfig (spec §2.1): Hadamard rotation options.
struct RotateConfig {
  bool enable;
  std::string mode;
  bool rotate_fp32;
  std::optional<int64_t> block_size;
  std::vector<std::string> fields_set;

  RotateConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v);
  bool operator==(const RotateConfig& o) const {
    return enable == o.enable && mode == o.mode && rotate_fp32 == o.rotate_fp32 && block_size == o.block_size;
  }
};

// rotate: a bool or a RotateConfig.
struct RotateValue {
  bool is_config = false;
  bool flag = false;
  RotateConfig config;
  bool enabled() const { return is_config ? config.enable : flag; }
  bool operator==(const RotateValue&) const = default;
};
void ParseValue(const Json& j, RotateValue* out, const std::string& path);
Json DumpValue(const RotateValue& v);

struct QuantizerAttributeConfig {
  bool enable;
  NumBitsValue num_bits;
  std::optional<double> effective_bits;
  std::optional<AxisValue> axis;
  bool fake_quant;
  bool unsigned_;  // config key "unsigned"
  bool narrow_range;
  bool learn_amax;
  std::string type;
  std::optional<BlockSizesValue> block_sizes;
  std::optional<BiasValue> bias;
  std::string trt_high_precision_dtype;
  Json calibrator;
  RotateValue rotate;
  bool pass_through_bwd;
  std::optional<std::string> backend;
  std::optional<Json> backend_extra_args;
  bool use_constant_amax;
  std::optional<double> constant_amax;

  std::vector<std::string> fields_set;

  QuantizerAttributeConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v);

  // Parses and validates a config dict (spec §2.4 order). `path` prefixes error messages
  // (e.g. "quant_cfg[3].cfg"). Throws qforge::Error naming the key and value.
  static QuantizerAttributeConfig FromJson(const Json& j, const std::string& path = "");
  // For command-line input (`qforge qdq --cfg '<JSON>'`): parses JSON text, converts ExMy strings under
  // num_bits / scale_bits ("e2m1" -> [2, 1]), then validates like FromJson. Errors name the key.
  static QuantizerAttributeConfig FromCliJson(const std::string& text);
  // Full dump (every field, defaults included) or only the explicitly set fields.
  Json ToJson(bool exclude_unset = false) const;

  // The numeric meaning (spec §2.5) for numerics/ and the kernels. Throws for an opaque backend string
  // num_bits, which has no built-in numeric meaning.
  QuantSpec ToQuantSpec() const;

  // Derived predicates of spec §2.5.
  bool IsDynamic() const { return type == "dynamic"; }
  bool IsMx() const;
  bool IsStaticBlock() const { return block_sizes && !block_sizes->dynamic() && fake_quant; }
  bool IsConstantAmax() const { return use_constant_amax || constant_amax.has_value(); }

  bool operator==(const QuantizerAttributeConfig& o) const { return ToJson() == o.ToJson(); }
};

// Spec §2.4 rule 1: any dict (recursively, except under `rotate`) that is exactly {"enable": true}.
void CheckNotOnlyEnableTrue(const Json& raw, const std::string& path);

// Recursively converts ExMy strings ("e4m3" -> [4, 3]) under keys `num_bits` / `scale_bits` (spec §4.2).
// Used by the YAML loader and by CLI JSON input; other strings stay as they are.
void ConvertExMyStrings(Json& j);

}  // namespace qforge::config

#include "qforge/config/quantizer_attribute_config-inl.h"
