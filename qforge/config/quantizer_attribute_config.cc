// QuantizerAttributeConfig parsing, validation (spec §2.4 order), dumps and conversion to QuantSpec.
#include "qforge/config/quantizer_attribute_config.h"

#include <regex>

#include "qforge/base/error.h"

namespace qforge::config {

// ---- num_bits ----
void ParseValue(const Json& j, NumBitsValue* out, const std::string& path) {
  if (j.is_number_integer()) {
    *out = NumBitsValue::Int(j.get<int64_t>());
  } else if (j.is_array()) {
    NumBitsValue v;
    v.kind = NumBitsValue::Kind::kTuple;
    for (const auto& e : j) {
      QF_CHECK(e.is_number_integer(), "{}: num_bits tuple elements must be ints, got {}", path, Brief(j));
      v.tuple.push_back(e.get<int64_t>());
    }
    *out = v;
  } else if (j.is_string()) {
    NumBitsValue v;
    v.kind = NumBitsValue::Kind::kString;
    v.name = j.get<std::string>();
    *out = v;
  } else {
    QF_FAIL("{}: num_bits must be an int, an [E, M] pair or a format string, got {} {}", path, TypeName(j),
            Brief(j));
  }
}

Json DumpValue(const NumBitsValue& v) {
  switch (v.kind) {
    case NumBitsValue::Kind::kInt: return v.bits;
    case NumBitsValue::Kind::kTuple: return Json(v.tuple);
    default: return v.name;
  }
}

// ---- axis ----
void ParseValue(const Json& j, AxisValue* out, const std::string& path) {
  AxisValue a;
  if (j.is_number_integer()) {
    a.dims.push_back(j.get<int64_t>());
  } else if (j.is_array()) {
    a.is_tuple = true;
    for (const auto& e : j) {
      QF_CHECK(e.is_number_integer(), "{}: axis must be an int or a list of ints, got {}", path, Brief(j));
      a.dims.push_back(e.get<int64_t>());
    }
  } else {
    QF_FAIL("{}: axis must be an int, a list of ints or null, got {} {}", path, TypeName(j), Brief(j));
  }
  *out = a;
}

Json DumpValue(const AxisValue& v) { return v.is_tuple ? Json(v.dims) : Json(v.dims.at(0)); }

// ---- block_sizes ----
void ParseValue(const Json& j, BlockSizesValue* out, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: block_sizes must be a dict, got {} {}", path, TypeName(j), Brief(j));
  BlockSizesValue b;
  int n_int_keys = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const Json& val = it.value();
    std::string p = JoinPath(path, k);
    b.key_order.push_back(k);
    int axis;
    if (ParseIntKey(k, &axis)) {
      ++n_int_keys;
      if (val.is_null()) {
        b.axes.emplace_back(axis, std::nullopt);
      } else {
        QF_CHECK(val.is_number_integer() && val.get<int64_t>() > 0,
                 "{}: block size for axis {} must be a positive int or null, got {}", p, axis, Brief(val));
        b.axes.emplace_back(axis, val.get<int64_t>());
      }
    } else if (k == "type") {
      QF_CHECK(val.is_string() && (val == "static" || val == "dynamic"),
               "{}: block_sizes type must be 'static' or 'dynamic', got {}", p, Brief(val));
      b.type = val.get<std::string>();
    } else if (k == "scale_bits") {
      NumBitsValue nb;
      ParseValue(val, &nb, p);
      QF_CHECK(nb.kind != NumBitsValue::Kind::kString, "{}: scale_bits must be an int or [E, M], got {}", p,
               Brief(val));
      b.scale_bits = nb;
    } else if (k == "scale_block_sizes") {
      QF_CHECK(val.is_object() || val.is_null(), "{}: scale_block_sizes must be a dict, got {}", p, Brief(val));
      b.scale_block_sizes = val;
    } else if (k == "four_over_six") {
      QF_CHECK(val.is_boolean() || (val.is_number_integer() && (val == 0 || val == 1)),
               "{}: four_over_six must be a bool, got {}", p, Brief(val));
      b.four_over_six = val.is_boolean() ? (val.get<bool>() ? 1 : 0) : val.get<int>();
    } else {
      std::string hint = ClosestName(k, {"type", "scale_bits", "scale_block_sizes", "four_over_six"});
      QF_FAIL(
          "{}: invalid block_sizes key '{}'{}: keys must be integer axes or one of "
          "'type', 'scale_bits', 'scale_block_sizes', 'four_over_six'",
          path, k, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
    }
  }
  if (b.dynamic()) {
    QF_CHECK(n_int_keys == 1,
             "{}: a dynamic block_sizes config must have exactly one integer axis key, got {} ({})", path,
             n_int_keys, Brief(j));
  }
  *out = b;
}

Json DumpValue(const BlockSizesValue& v) {
  Json out = Json::object();
  size_t ai = 0;
  for (const auto& k : v.key_order) {
    int axis;
    if (ParseIntKey(k, &axis)) {
      const auto& a = v.axes[ai++];
      out[std::to_string(a.first)] = a.second ? Json(*a.second) : Json(nullptr);
    } else if (k == "type") {
      out[k] = *v.type;
    } else if (k == "scale_bits") {
      out[k] = DumpValue(*v.scale_bits);
    } else if (k == "scale_block_sizes") {
      out[k] = *v.scale_block_sizes;
    } else if (k == "four_over_six") {
      out[k] = *v.four_over_six;
    }
  }
  return out;
}

// ---- bias ----
void ParseValue(const Json& j, BiasValue* out, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: bias must be a dict, got {} {}", path, TypeName(j), Brief(j));
  BiasValue b;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const Json& val = it.value();
    b.key_order.push_back(k);
    int axis;
    if (ParseIntKey(k, &axis)) {
      b.axes.emplace_back(axis, val);
    } else if (k == "type") {
      QF_CHECK(val.is_string() && (val == "static" || val == "dynamic"),
               "{}: Invalid bias type {}; expected 'static' or 'dynamic'", JoinPath(path, k), PyRepr(val));
      b.type = val.get<std::string>();
    } else if (k == "method") {
      QF_CHECK(val.is_string() && (val == "mean" || val == "max_min"),
               "{}: Invalid bias method {}; expected 'mean' or 'max_min'", JoinPath(path, k), PyRepr(val));
      b.method = val.get<std::string>();
    } else {
      QF_FAIL("{}: invalid bias key '{}': keys must be integer axes, 'type' or 'method'", path, k);
    }
  }
  QF_CHECK(!b.axes.empty(), "{}: bias needs at least one integer axis key, got {}", path, Brief(j));
  *out = b;
}

Json DumpValue(const BiasValue& v) {
  Json out = Json::object();
  size_t ai = 0;
  for (const auto& k : v.key_order) {
    int axis;
    if (ParseIntKey(k, &axis)) {
      const auto& a = v.axes[ai++];
      out[std::to_string(a.first)] = a.second;
    } else if (k == "type") {
      out[k] = *v.type;
    } else if (k == "method") {
      out[k] = *v.method;
    }
  }
  return out;
}

// ---- rotate ----
void CheckRotateMode(const std::string& v, const std::string& path) {
  QF_CHECK(v == "rotate" || v == "rotate_back", "{}: mode must be 'rotate' or 'rotate_back', got '{}'", path, v);
}
void CheckRotateBlockSize(const std::optional<int64_t>& v, const std::string& path) {
  QF_CHECK(!v || *v > 0, "{}: block_size must be a positive int or null, got {}", path, *v);
}

void ParseValue(const Json& j, RotateValue* out, const std::string& path) {
  RotateValue r;
  if (j.is_boolean()) {
    r.flag = j.get<bool>();
  } else if (j.is_object()) {
    r.is_config = true;
    RejectUnknownKeys(j, FieldNamesOf<RotateConfig>(), path, "rotate config");
    if (auto it = j.find("block_size"); it != j.end()) {
      QF_CHECK(!it->is_boolean(), "{}: block_size must be a positive int or null, got a bool",
               JoinPath(path, "block_size"));
    }
    FieldParser p{j, path, &r.config.fields_set};
    RotateConfig::VisitFields(r.config, p);
  } else {
    QF_FAIL("{}: rotate must be a bool or a dict, got {} {}", path, TypeName(j), Brief(j));
  }
  *out = r;
}

Json DumpValue(const RotateValue& v) { return v.is_config ? DumpFields(v.config, true) : Json(v.flag); }

// ---- field checks ----
void CheckEffectiveBits(const std::optional<double>& v, const std::string& path) {
  QF_CHECK(!v || (*v > 0 && *v <= 16), "{}: effective_bits must be in (0, 16], got {}", path, *v);
}
void CheckLearnAmax(const bool& v, const std::string& path) {
  QF_CHECK(!v, "{}: learn_amax is deprecated and must not be True", path);
}
void CheckQuantType(const std::string& v, const std::string& path) {
  QF_CHECK(v == "static" || v == "dynamic", "{}: type must match pattern '^static$|^dynamic$', got '{}'", path,
           v);
}
void CheckTrtDtype(const std::string& v, const std::string& path) {
  QF_CHECK(v == "Float" || v == "Half" || v == "BFloat16",
           "{}: trt_high_precision_dtype must be 'Float', 'Half' or 'BFloat16', got '{}'", path, v);
}
void CheckCalibrator(const Json& v, const std::string& path) {
  if (v.is_string()) {
    QF_CHECK(v == "max" || v == "histogram", "{}: calibrator must be 'max' or 'histogram', got '{}'", path,
             v.get<std::string>());
    return;
  }
  QF_CHECK(v.is_object() || v.is_array(), "{}: calibrator must be 'max', 'histogram' or a constructor spec, got {}",
           path, Brief(v));
}
void CheckConstantAmax(const std::optional<double>& v, const std::string& path) {
  // ModelOpt's wording (validate_constant_amax), so error_contains cases match; the value is appended.
  QF_CHECK(!v || *v > 0, "{}: constant_amax must be a positive value. (got {})", path, *v);
}

void CheckNotOnlyEnableTrue(const Json& raw, const std::string& path) {
  if (raw.is_object()) {
    if (raw.size() == 1 && raw.contains("enable") && raw["enable"].is_boolean() && raw["enable"].get<bool>()) {
      QF_FAIL(
          "{}{}Cannot specify only {{'enable': True}}. Additional parameters are required when enabling "
          "quantization.",
          path, path.empty() ? "" : ": ");
    }
    for (auto it = raw.begin(); it != raw.end(); ++it) {
      if (it.key() != "rotate") CheckNotOnlyEnableTrue(it.value(), JoinPath(path, it.key()));
    }
  } else if (raw.is_array()) {
    for (size_t i = 0; i < raw.size(); ++i) CheckNotOnlyEnableTrue(raw[i], path + "[" + std::to_string(i) + "]");
  }
}

void ConvertExMyStrings(Json& j) {
  static const std::regex kExMy("^[Ee](\\d+)[Mm](\\d+)$");
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      Json& v = it.value();
      if ((it.key() == "num_bits" || it.key() == "scale_bits") && v.is_string()) {
        std::smatch m;
        std::string s = v.get<std::string>();
        // At most 14 digits each: std::stoll cannot overflow (and std::regex's recursion stays short).
        if (s.size() <= 30 && std::regex_match(s, m, kExMy) && m[1].length() <= 14 && m[2].length() <= 14) {
          v = Json::array({std::stoll(m[1].str()), std::stoll(m[2].str())});
          continue;
        }
      }
      ConvertExMyStrings(v);
    }
  } else if (j.is_array()) {
    for (auto& e : j) ConvertExMyStrings(e);
  }
}

// ---- the config ----
QuantizerAttributeConfig QuantizerAttributeConfig::FromJson(const Json& j, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: a quantizer attribute config must be a dict, got {} {}",
           path.empty() ? "cfg" : path, TypeName(j), Brief(j));
  // 1. "before" validator on the raw input.
  CheckNotOnlyEnableTrue(j, path);
  // extra="forbid"
  RejectUnknownKeys(j, FieldNamesOf<QuantizerAttributeConfig>(), path, "quantizer attribute config");
  // 2. field parsing and field validators, in declaration order.
  QuantizerAttributeConfig c;
  FieldParser p{j, path, &c.fields_set};
  VisitFields(c, p);
  if (c.block_sizes) {
    QF_CHECK(!c.axis, "{}: axis must be None when block_sizes is not None. (got axis={}, block_sizes={})",
             path.empty() ? "block_sizes" : path, Brief(DumpValue(*c.axis)), Brief(DumpValue(*c.block_sizes)));
  }
  // 3. after-validators.
  if (!c.backend) {
    const NumBitsValue& nb = c.num_bits;
    const std::string where = JoinPath(path, "num_bits");
    if (nb.kind == NumBitsValue::Kind::kInt) {
      QF_CHECK(nb.bits >= 1, "{}: num_bits must be a positive integer or a tuple of positive integers. (got {})",
               where, nb.bits);
    } else if (nb.kind == NumBitsValue::Kind::kTuple) {
      bool positive = !nb.tuple.empty();
      for (auto x : nb.tuple) positive = positive && x > 0;
      QF_CHECK(positive, "{}: num_bits must be a positive integer or a tuple of positive integers. (got {})", where,
               Brief(DumpValue(nb)));
      static const std::pair<int, int> kSupported[] = {{4, 3}, {5, 2}, {2, 1}, {1, 2},
                                                        {0, 3}, {3, 0}, {3, 2}, {2, 3}};
      bool supported = false;
      for (auto [e, m] : kSupported) supported = supported || nb.IsTuple(e, m);
      QF_CHECK(supported, "{}: Supported FPx quantization formats: FP8 (E4M3, E5M2), FP6(E3M2, E2M3), FP4(E2M1). (got {})",
               where, Brief(DumpValue(nb)));
      if (!nb.IsTuple(4, 3) && !nb.IsTuple(2, 1)) {
        QF_CHECK(c.block_sizes && c.block_sizes->dynamic(),
                 "{}: Only blockwise dynamic quantization is supported with num_bits {} (set block_sizes with "
                 "type: dynamic).",
                 where, Brief(DumpValue(nb)));
      }
    }
  }
  QF_CHECK(!(c.use_constant_amax && c.constant_amax),
           "{}: use_constant_amax and constant_amax are mutually exclusive (got use_constant_amax=True, "
           "constant_amax={})",
           path.empty() ? "cfg" : path, c.constant_amax.value_or(0));
  if (c.rotate.is_config && c.rotate.config.enable && c.rotate.config.mode == "rotate_back") {
    QF_CHECK(c.fake_quant, "{}: rotate mode 'rotate_back' requires fake_quant=True", JoinPath(path, "rotate"));
  }
  return c;
}

QuantizerAttributeConfig QuantizerAttributeConfig::FromCliJson(const std::string& text) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    QF_FAIL("--cfg: invalid JSON ({}): {}", e.what(), text);
  }
  ConvertExMyStrings(j);
  return FromJson(j, "--cfg");
}

Json QuantizerAttributeConfig::ToJson(bool exclude_unset) const { return DumpFields(*this, exclude_unset); }

bool QuantizerAttributeConfig::IsMx() const {
  return block_sizes && block_sizes->dynamic() && block_sizes->scale_bits && block_sizes->scale_bits->IsTuple(8, 0);
}

static NumBits ToNumBits(const NumBitsValue& v, const char* what) {
  switch (v.kind) {
    case NumBitsValue::Kind::kInt: return NumBits::Int(static_cast<int>(v.bits));
    case NumBitsValue::Kind::kTuple:
      QF_CHECK(v.tuple.size() == 2, "{} must be an [E, M] pair, got {}", what, Brief(DumpValue(v)));
      return NumBits::Float(static_cast<int>(v.tuple[0]), static_cast<int>(v.tuple[1]));
    default: QF_FAIL("{} '{}' is a custom backend format with no built-in numerics", what, v.name);
  }
}

QuantSpec QuantizerAttributeConfig::ToQuantSpec() const {
  QuantSpec s;
  s.num_bits = ToNumBits(num_bits, "num_bits");
  if (axis) s.axis = std::vector<int>(axis->dims.begin(), axis->dims.end());
  if (block_sizes) {
    BlockSpec b;
    for (const auto& [ax, size] : block_sizes->axes) b.sizes.emplace_back(ax, size);
    b.dynamic = block_sizes->dynamic();
    if (block_sizes->scale_bits) b.scale_bits = ToNumBits(*block_sizes->scale_bits, "block_sizes.scale_bits");
    b.four_over_six = block_sizes->four_over_six.value_or(0) != 0;
    s.block = b;
  }
  s.is_unsigned = unsigned_;
  s.narrow_range = narrow_range;
  s.dynamic = IsDynamic();
  s.use_constant_amax = use_constant_amax;
  s.constant_amax = constant_amax;
  return s;
}

}  // namespace qforge::config
