// Quantizer creation for a model, quant_cfg application and calibrated-state bookkeeping.
#include "qforge/quant/quant_state.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

constexpr QuantizerRoleTraits kRoles[] = {
    {QuantizerRole::kInput, "input_quantizer", true},   {QuantizerRole::kOutput, "output_quantizer", true},
    {QuantizerRole::kWeight, "weight_quantizer", false}, {QuantizerRole::kQBmm, "q_bmm_quantizer", true},
    {QuantizerRole::kKBmm, "k_bmm_quantizer", true},     {QuantizerRole::kVBmm, "v_bmm_quantizer", true},
    {QuantizerRole::kPBmm, "p_bmm_quantizer", true},
};

std::optional<QuantizerRole> RoleFromAttr(std::string_view attr) {
  for (const auto& r : kRoles) {
    if (r.attr == attr) return r.role;
  }
  return std::nullopt;
}

// Initial-attribute kind of config::InitialQuantizerState for a quantizer of `kind` in `role`.
std::string_view InitialKind(ModuleKind kind, QuantizerRole role) {
  switch (role) {
    case QuantizerRole::kWeight:
      return kind == ModuleKind::kEmbedding ? "embedding_weight" : "linear_weight";
    case QuantizerRole::kOutput:
      return "linear_output";
    case QuantizerRole::kInput:
      return "linear_input";
    default:
      return "bmm";
  }
}

}  // namespace

const QuantizerRoleTraits& Traits(QuantizerRole role) { return kRoles[static_cast<size_t>(role)]; }

bool Quantizer::NeedsCalibration() const {
  if (!enabled() || sequential()) return enabled();
  const auto& a = attrs();
  if (a.IsDynamic() || a.IsMx() || a.IsConstantAmax()) return false;
  return true;
}

void Quantizer::MergeAmax(const std::vector<float>& values, const std::vector<int64_t>& shape) {
  if (!has_amax) {
    amax = values;
    amax_shape = shape;
    has_amax = true;
    return;
  }
  QF_CHECK(shape == amax_shape && values.size() == amax.size(),
           "quantizer '{}': amax shape changed between calibration batches ({} vs {})", slot.name,
           ShapeToString(amax_shape), ShapeToString(shape));
  for (size_t i = 0; i < values.size(); ++i) amax[i] = std::max(amax[i], values[i]);
}

void Quantizer::ResetAmax() {
  amax.clear();
  amax_shape.clear();
  has_amax = false;
  global_amax.reset();
}

void Quantizer::SetAttrs(config::QuantizerAttributeConfig attrs) {
  QF_ASSERT(!sequential() && slot.state.stages.size() == 1, "SetAttrs on sequential quantizer '{}'", slot.name);
  slot.state.stages[0] = std::move(attrs);
  ResolveSpec();
  ResetAmax();
}

void Quantizer::ResolveSpec() {
  spec_.reset();
  try {
    spec_ = attrs().ToQuantSpec();
  } catch (const std::exception&) {
    // Attributes with no numeric meaning (only legal on a disabled quantizer): spec() re-derives and throws.
  }
}

QuantState QuantState::ForModel(const Model& model) {
  QuantState s;
  const auto& modules = model.modules();
  s.index_.assign(modules.size(), {-1, -1, -1, -1, -1, -1, -1});
  for (size_t m = 0; m < modules.size(); ++m) {
    const ModuleInfo& info = modules[m];
    for (std::string_view attr : Traits(info.kind).quantizers) {
      auto role = RoleFromAttr(attr);
      QF_ASSERT(role.has_value(), "unknown quantizer attribute '{}'", attr);
      Quantizer q;
      q.slot.name = info.name + "." + std::string(attr);
      q.slot.parent_class = info.class_key;
      q.slot.state = config::InitialQuantizerState(InitialKind(info.kind, *role));
      q.module = static_cast<int>(m);
      q.role = *role;
      // ModelOpt's QuantEmbedding hard-disables its input quantizer (spec §9).
      q.hard_disabled = info.kind == ModuleKind::kEmbedding && *role == QuantizerRole::kInput;
      q.ResolveSpec();
      s.index_[m][static_cast<size_t>(*role)] = static_cast<int>(s.quantizers_.size());
      s.quantizers_.push_back(std::move(q));
    }
  }
  return s;
}

void QuantState::Apply(const config::QuantCfgList& quant_cfg) {
  std::vector<config::QuantizerSlot> slots = Slots();
  config::ApplyQuantCfg(quant_cfg, slots);
  for (size_t i = 0; i < slots.size(); ++i) {
    quantizers_[i].slot = std::move(slots[i]);
    quantizers_[i].ResolveSpec();
  }
  // Validate numerics of every enabled quantizer now, so a bad config fails before any compute.
  for (auto& q : quantizers_) {
    q.amax.clear();
    q.amax_shape.clear();
    q.has_amax = false;
    q.global_amax.reset();
    if (!q.enabled()) continue;
    // `constant_amax` registers the amax at config time (spec §2.5); calibration never changes it.
    if (!q.sequential() && q.attrs().constant_amax) {
      q.amax = {static_cast<float>(*q.attrs().constant_amax)};
      q.has_amax = true;
    }
    for (const auto& stage : q.slot.state.stages) {
      if (!stage.enable && q.sequential()) continue;
      try {
        (void)stage.ToQuantSpec();
      } catch (const Error& e) {
        QF_FAIL("quantizer '{}' (set by quant_cfg entry {}): {}", q.slot.name, q.slot.decided_by, e.what());
      }
    }
  }
}

std::vector<config::QuantizerSlot> QuantState::Slots() const {
  std::vector<config::QuantizerSlot> slots;
  slots.reserve(quantizers_.size());
  for (const auto& q : quantizers_) slots.push_back(q.slot);
  return slots;
}

int QuantState::Find(int module, QuantizerRole role) const {
  if (module < 0 || static_cast<size_t>(module) >= index_.size()) return -1;
  return index_[static_cast<size_t>(module)][static_cast<size_t>(role)];
}

Quantizer* QuantState::Get(int module, QuantizerRole role) {
  const int i = Find(module, role);
  return i < 0 ? nullptr : &quantizers_[static_cast<size_t>(i)];
}

const Quantizer* QuantState::Get(int module, QuantizerRole role) const {
  const int i = Find(module, role);
  return i < 0 ? nullptr : &quantizers_[static_cast<size_t>(i)];
}

const Quantizer* QuantState::FindByName(std::string_view name) const {
  for (const auto& q : quantizers_) {
    if (q.slot.name == name) return &q;
  }
  return nullptr;
}

void QuantState::ResetCalibration() {
  for (auto& q : quantizers_) {
    q.ResetAmax();
    q.pre_quant_scale.clear();
    q.pre_quant_scale_fused = false;
  }
}

}  // namespace qforge

namespace qforge {
namespace {

std::string SpecLabel(const QuantSpec& s) {
  std::string label;
  auto block_of = [&](int axis) -> int64_t {
    if (!s.block) return 0;
    for (const auto& [a, size] : s.block->sizes) {
      if (a == axis && size) return *size;
    }
    return 0;
  };
  if (s.num_bits.is_float()) {
    const int e = s.num_bits.exponent, m = s.num_bits.mantissa;
    if (s.IsMx()) {
      label = e == 4 && m == 3 ? "mxfp8" : e == 2 && m == 1 ? "mxfp4" : fmt::format("mx_e{}m{}", e, m);
    } else if (e == 2 && m == 1 && s.block && s.block->scale_bits && s.block->scale_bits->IsFloat(4, 3)) {
      label = s.IsNvfp4Static() ? "nvfp4_static" : "nvfp4";
      if (block_of(-1) != 16) label += fmt::format("_bs{}", block_of(-1));
      if (s.block->four_over_six) label += "_4o6";
    } else if (e == 4 && m == 3) {
      if (s.block && block_of(-1) && block_of(-2)) {
        label = fmt::format("fp8_block{}", block_of(-1));
      } else if (s.block) {
        label = s.dynamic ? "fp8_per_token" : "fp8_block";
      } else if (s.axis) {
        label = s.dynamic ? "fp8_per_token" : "fp8_per_channel";
      } else {
        label = s.dynamic ? "fp8_dynamic" : "fp8";
      }
    } else {
      label = fmt::format("e{}m{}", e, m);
    }
  } else {
    label = fmt::format("{}int{}", s.is_unsigned ? "u" : "", s.num_bits.bits);
    if (s.IsMx()) {
      label = "mxint8";
    } else if (s.block) {
      label += fmt::format("_block{}", block_of(-1));
    } else if (s.axis) {
      label += "_per_channel";
    }
  }
  if (s.use_constant_amax || s.constant_amax) label += "+const";
  return label;
}

}  // namespace

std::string QuantizerLabel(const Quantizer& q) {
  if (!q.enabled()) return "disabled";
  std::vector<std::string> stages;
  for (const auto& st : q.slot.state.stages) {
    try {
      stages.push_back(SpecLabel(st.ToQuantSpec()));
    } catch (const Error&) {
      stages.push_back("custom");
    }
  }
  if (!q.sequential()) return stages[0];
  return fmt::format("sequential[{}]", fmt::join(stages, ","));
}

}  // namespace qforge
