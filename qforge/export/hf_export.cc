// ModelOpt-format HF checkpoint export.
#include "qforge/export/hf_export.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/base/strings.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/regex.h"
#include "qforge/export/checkpoint_writer.h"
#include "qforge/export/pack.h"
#include "qforge/export/quantized_reader.h"
#include "qforge/export/value_scan.h"
#include "qforge/io/safetensors.h"
#include "qforge/model/weight_encoder.h"
#include "qforge/numerics/encode.h"
#include "qforge/numerics/qdq.h"
#include "qforge/quant/shared_state.h"

namespace qforge {
namespace fs = std::filesystem;
using exporter::ExportFormat;

namespace {

int BlockSizeLast(const QuantSpec& spec) {
  if (!spec.block) return 0;
  for (const auto& [axis, size] : spec.block->sizes) {
    if (axis == -1 && size) return static_cast<int>(*size);
  }
  return 0;
}

float MaxOf(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, x);
  return m;
}

// "quant_cfg entry 3", or where the attributes came from when no entry matched.
std::string DecidedBy(const Quantizer& q) {
  return q.slot.decided_by >= 0 ? fmt::format("quant_cfg entry {}", q.slot.decided_by)
                                : std::string("its initial attributes: no quant_cfg entry matched it");
}

// What an input (activation) quantizer does, as far as the export formats tell them apart (contract §1).
enum class InputKind : uint8_t { kOff, kFp8Static, kFp8Dynamic, kNvfp4, kMxfp8, kMxfp4, kInt8Static, kOther };

constexpr uint32_t Bit(InputKind k) { return 1u << static_cast<unsigned>(k); }

InputKind ClassifyInput(const Quantizer* input) {
  if (input == nullptr || !input->enabled()) return InputKind::kOff;
  if (input->sequential()) return InputKind::kOther;
  const QuantSpec s = input->spec();
  const bool dynamic = s.dynamic || (s.block && s.block->dynamic);
  if (s.IsFp8PerTensor()) return s.dynamic ? InputKind::kFp8Dynamic : InputKind::kFp8Static;
  if (s.num_bits.IsFloat(4, 3) && dynamic && !s.IsMx()) return InputKind::kFp8Dynamic;  // per token
  if (s.IsNvfp4Dynamic() && BlockSizeLast(s) == 16) return InputKind::kNvfp4;
  if (s.IsMx() && BlockSizeLast(s) == 32 && s.num_bits.IsFloat(4, 3)) return InputKind::kMxfp8;
  if (s.IsMx() && BlockSizeLast(s) == 32 && s.num_bits.IsFloat(2, 1)) return InputKind::kMxfp4;
  if (s.num_bits.is_int() && s.num_bits.bits == 8 && !s.block && !s.axis && !s.dynamic) return InputKind::kInt8Static;
  return InputKind::kOther;
}

// The input quantizer each written format implies at runtime (contract §1-§3): anything else would be
// exported under a format whose runtime quantizes activations differently from what was calibrated.
struct InputRule {
  ExportFormat format;
  uint32_t allowed;       // Bit(InputKind) mask
  std::string_view need;  // for the error message
};
constexpr InputRule kInputRules[] = {
    {ExportFormat::kFp8, Bit(InputKind::kFp8Static), "a static FP8 per-tensor input quantizer (input_scale)"},
    {ExportFormat::kFp8PcPt, Bit(InputKind::kFp8Dynamic), "a dynamic FP8 per-token input quantizer"},
    {ExportFormat::kFp8PbWo, Bit(InputKind::kOff) | Bit(InputKind::kFp8Dynamic),
     "no input quantizer or a dynamic FP8 one"},
    {ExportFormat::kNvfp4, Bit(InputKind::kNvfp4), "an NVFP4 input quantizer (E2M1, dynamic block 16, E4M3 scales)"},
    {ExportFormat::kW4a16Nvfp4, Bit(InputKind::kOff), "no input quantizer"},
    {ExportFormat::kMxfp8, Bit(InputKind::kOff) | Bit(InputKind::kMxfp8), "no input quantizer or an MXFP8 one"},
    {ExportFormat::kMxfp4, Bit(InputKind::kOff) | Bit(InputKind::kMxfp4), "no input quantizer or an MXFP4 one"},
    {ExportFormat::kInt8Sq, Bit(InputKind::kInt8Static), "a static INT8 per-tensor input quantizer"},
    {ExportFormat::kInt8Wo, Bit(InputKind::kOff), "no input quantizer"},
    {ExportFormat::kInt4Awq, Bit(InputKind::kOff), "no input quantizer"},
    {ExportFormat::kNvfp4Awq, Bit(InputKind::kNvfp4), "an NVFP4 input quantizer (E2M1, dynamic block 16, E4M3 scales)"},
};

// "{-1: 16}", "{-1: 128, -2: 128}" or "none": the block sizes a pack format stores.
std::string BlockText(int64_t in, int64_t out) {
  if (in == 0 && out == 0) return "none";
  return out == 0 ? fmt::format("{{-1: {}}}", in) : fmt::format("{{-1: {}, -2: {}}}", in, out);
}

// Throws unless `weight` (and `input`, nullptr when off) are held exactly by export format `f`: a format qforge
// writes, its block sizes along in (-1) and out (-2), its scale encoding, per-channel vs per-tensor, and the
// input quantizer its runtime assumes. Never maps a spec to a neighbouring format.
void CheckRepresentable(ExportFormat f, const Quantizer& weight, const Quantizer* input) {
  const std::string_view fname = exporter::Traits(f).name;
  const auto pack = PackFormatForExport(f);
  QF_CHECK(pack.has_value(), "quantizer '{}' (set by {}): {} maps to export format '{}', which qforge cannot write "
           "yet", weight.slot.name, DecidedBy(weight), QuantizerLabel(weight), fname);
  const PackFormatTraits& pt = GetTraits(*pack);
  const QuantSpec w = weight.spec();
  // Block sizes as a [out, in] weight sees them: axis -1 / 1 is `in`, -2 / 0 is `out`.
  int64_t block_in = 0, block_out = 0;
  bool odd_axes = false;
  if (w.block) {
    for (const auto& [axis, size] : w.block->sizes) {
      if (!size) {
        odd_axes = true;
      } else if (axis == -1 || axis == 1) {
        block_in = *size;
      } else if (axis == -2 || axis == 0) {
        block_out = *size;
      } else {
        odd_axes = true;
      }
    }
  }
  QF_CHECK(!odd_axes && block_in == pt.block_in && block_out == pt.block_out,
           "quantizer '{}' (set by {}): {} cannot be exported: format '{}' stores block sizes {}, the quantizer has "
           "{} (no export format holds this spec, and qforge does not turn it into another one)",
           weight.slot.name, DecidedBy(weight), QuantizerLabel(weight), fname, BlockText(pt.block_in, pt.block_out),
           w.block ? BlockText(block_in, block_out) + (odd_axes ? " and other axes" : "") : "none");
  // E8M0-scaled packs are the MX formats: dynamic blocks with E8M0 scales; FP8 128x128 blocks keep fp32 scales.
  const bool mx_pack = pt.scale_type == StoredType::kU8 && pt.block_in > 0;
  QF_CHECK(!mx_pack || w.IsMx(), "quantizer '{}' (set by {}): {} cannot be exported as '{}': MX formats need "
           "`type: dynamic` block scales with scale_bits (8, 0)", weight.slot.name, DecidedBy(weight),
           QuantizerLabel(weight), fname);
  QF_CHECK(*pack != PackFormat::kFp8Block || !w.block->scale_bits, "quantizer '{}' (set by {}): {} cannot be "
           "exported: FP8 128x128 blocks store fp32 scales, the quantizer has scale_bits {}", weight.slot.name,
           DecidedBy(weight), QuantizerLabel(weight), w.block && w.block->scale_bits ? w.block->scale_bits->ToString()
                                                                                     : "");
  const bool per_channel = *pack == PackFormat::kFp8PerChannel || *pack == PackFormat::kInt8;
  const bool axis0 = w.axis && w.axis->size() == 1 && (*w.axis)[0] == 0;
  QF_CHECK(per_channel ? axis0 : !w.axis, "quantizer '{}' (set by {}): {} cannot be exported as '{}': it stores {} "
           "weight scales, the quantizer has axis {}", weight.slot.name, DecidedBy(weight), QuantizerLabel(weight),
           fname, per_channel ? "per-output-channel (axis 0)" : "per-tensor or per-block",
           w.axis ? fmt::format("({})", fmt::join(*w.axis, ", ")) : "None");
  QF_CHECK(!(w.num_bits.is_int() && w.is_unsigned), "quantizer '{}' (set by {}): unsigned integer weights ({}) "
           "cannot be exported (the formats store signed symmetric codes)", weight.slot.name, DecidedBy(weight),
           QuantizerLabel(weight));
  for (const auto& rule : kInputRules) {
    if (rule.format != f) continue;
    const InputKind kind = ClassifyInput(input);
    if (rule.allowed & Bit(kind)) return;
    if (input == nullptr) {
      QF_FAIL("quantizer '{}' (set by {}): export format '{}' needs {}, but the module's input quantizer is "
              "disabled", weight.slot.name, DecidedBy(weight), fname, rule.need);
    }
    QF_FAIL("quantizer '{}' (set by {}) is {}, but its weight exports as '{}', which needs {}: runtimes would "
            "quantize this input differently from the calibration", input->slot.name, DecidedBy(*input),
            QuantizerLabel(*input), fname, rule.need);
  }
  QF_ASSERT(false, "export format '{}' has no input rule", fname);
}

// The KV-cache algorithm of an enabled k/v bmm quantizer, or an error naming it and its entry.
exporter::KvCacheAlgo KvCacheAlgoOf(const Quantizer& q) {
  QF_CHECK(!q.sequential(), "quantizer '{}' (set by {}): sequential KV-cache quantizers cannot be exported",
           q.slot.name, DecidedBy(q));
  const QuantSpec s = q.spec();
  QF_CHECK(!q.attrs().bias, "quantizer '{}' (set by {}): affine KV-cache quantization (bias) cannot be exported "
           "yet (qforge writes no k_bias / v_bias)", q.slot.name, DecidedBy(q));
  if (s.IsFp8PerTensor()) return exporter::KvCacheAlgo::kFp8;
  if (s.IsNvfp4Dynamic() && BlockSizeLast(s) == 16) return exporter::KvCacheAlgo::kNvfp4;
  if (s.num_bits.is_int() && s.num_bits.bits == 8 && !s.block && !s.axis) return exporter::KvCacheAlgo::kInt8;
  QF_FAIL("quantizer '{}' (set by {}): KV-cache format {} cannot be exported (runtimes take FP8 per-tensor, NVFP4 "
          "with dynamic block 16, or INT8 per-tensor KV caches, with one scale per k/v)", q.slot.name, DecidedBy(q),
          QuantizerLabel(q));
}

// A 0-d fp32 scale tensor, after checking the value is finite and positive (runtimes divide by it).
Tensor FiniteScale(const std::string& tensor, const Quantizer& from, float value) {
  QF_CHECK(std::isfinite(value) && value > 0.0f, "tensor '{}': scale {} (from quantizer '{}', amax {}) is not finite "
           "and positive", tensor, value, from.slot.name, from.amax.empty() ? NAN : from.amax[0]);
  return Tensor::Scalar(value);
}

struct LinearPlan {
  int module = -1;
  ExportFormat format = ExportFormat::kNone;
  const Quantizer* weight = nullptr;
  const Quantizer* input = nullptr;
  std::vector<float> weight_amax;     // possibly unified
  std::optional<float> global_amax;   // NVFP4
  std::optional<float> input_amax;    // possibly unified (scalar)
  std::vector<float> pre_quant_scale; // the input's smoothing vector [in] (SmoothQuant, AWQ); empty: none
};

}  // namespace

ExportFormat DetectExportFormat(const Quantizer* weight, const Quantizer* input) {
  if (weight == nullptr || !weight->enabled()) return ExportFormat::kNone;
  QF_CHECK(!weight->sequential(), "quantizer '{}' (set by {}): sequential weight quantizers (W4A8 AWQ) cannot be "
           "exported yet", weight->slot.name, DecidedBy(*weight));
  const QuantSpec w = weight->spec();
  const bool input_on = input != nullptr && input->enabled() && !input->sequential();
  const bool input_fp8 = input_on && input->spec().IsFp8PerTensor();
  // ModelOpt's get_quantization_format (spec §10.2), except that a spec the format cannot hold exactly is an
  // error (CheckRepresentable) instead of being exported as its nearest neighbour.
  std::optional<ExportFormat> f;
  if (w.num_bits.is_int()) {
    if (w.num_bits.bits == 4) f = ExportFormat::kInt4Awq;
    if (w.num_bits.bits == 8) f = input_on ? ExportFormat::kInt8Sq : ExportFormat::kInt8Wo;
  } else if (w.num_bits.IsFloat(4, 3)) {
    if (w.block) {
      f = w.IsMx() ? ExportFormat::kMxfp8 : ExportFormat::kFp8PbWo;
    } else if (w.axis) {
      f = ExportFormat::kFp8PcPt;
    } else {
      f = ExportFormat::kFp8;
    }
  } else if (w.num_bits.IsFloat(2, 1) && w.block && w.block->scale_bits) {
    if (w.block->scale_bits->IsFloat(4, 3)) {
      if (!input_on) {
        f = ExportFormat::kW4a16Nvfp4;
      } else if (!input->pre_quant_scale.empty() || input->pre_quant_scale_fused) {
        f = ExportFormat::kNvfp4Awq;  // AWQ-smoothed input (ModelOpt: _pre_quant_scale or fused_with_prequant)
      } else if (input_fp8 && w.block->dynamic) {
        f = ExportFormat::kW4a8Nvfp4Fp8;
      } else {
        f = ExportFormat::kNvfp4;
      }
    } else if (w.block->scale_bits->IsFloat(8, 0)) {
      f = input_fp8 ? ExportFormat::kW4a8Mxfp4Fp8 : ExportFormat::kMxfp4;
    }
  }
  QF_CHECK(f.has_value(), "quantizer '{}' (set by {}): {} has no HF export format (exportable weights: FP8 E4M3, "
           "NVFP4/MXFP4 E2M1 with E4M3/E8M0 block scales, INT8, INT4)", weight->slot.name, DecidedBy(*weight),
           QuantizerLabel(*weight));
  CheckRepresentable(*f, *weight, input_on ? input : nullptr);
  return *f;
}

void CheckExportable(const Model& model, const QuantState& state) {
  for (int m : model.linear_modules()) {
    const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
    const ExportFormat f = DetectExportFormat(w, state.Get(m, QuantizerRole::kInput));
    if (f == ExportFormat::kNone) continue;
    // The packed layouts need whole blocks (and byte pairs for 4-bit rows): a shape the format cannot tile
    // would only fail at packing time, after calibration.
    const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
    const PackFormatTraits& pt = GetTraits(*PackFormatForExport(f));
    const bool in_ok = pt.block_in == 0 || info.in_features % pt.block_in == 0;
    const bool out_ok = (pt.block_out == 0 || info.out_features % pt.block_out == 0) &&
                        (*PackFormatForExport(f) != PackFormat::kInt4Awq || info.out_features % 2 == 0);
    QF_CHECK(in_ok && out_ok, "Linear '{}' has weight shape [{}, {}] (out, in), which export format '{}' cannot tile "
             "(block sizes {}); its quantizer '{}' is set by {}: exclude the module or pick another format",
             info.name, info.out_features, info.in_features, exporter::Traits(f).name,
             BlockText(pt.block_in, pt.block_out), w->slot.name, DecidedBy(*w));
  }
  for (const auto& q : state.quantizers()) {
    if (!q.enabled()) continue;
    // Only weight, input and KV (k/v bmm) quantizers have a place in an export (spec §10.2); runtimes would run
    // the others in the model dtype, so the checkpoint would not compute what calibration measured.
    const bool exported = q.role == QuantizerRole::kWeight || q.role == QuantizerRole::kInput ||
                          q.role == QuantizerRole::kKBmm || q.role == QuantizerRole::kVBmm;
    QF_CHECK(exported, "quantizer '{}' (set by {}) is enabled ({}), but no export format represents a {} (only "
             "weight, input and k/v bmm quantizers are exported); disable it", q.slot.name, DecidedBy(q),
             QuantizerLabel(q), Traits(q.role).attr);
    const ModuleInfo& info = model.modules()[static_cast<size_t>(q.module)];
    QF_CHECK(q.role != QuantizerRole::kWeight || info.kind != ModuleKind::kEmbedding,
             "quantizer '{}' (set by {}): quantized embeddings cannot be exported yet", q.slot.name, DecidedBy(q));
    if (q.role == QuantizerRole::kKBmm || q.role == QuantizerRole::kVBmm) (void)KvCacheAlgoOf(q);
  }
  // Runtimes need one KV format (kv_cache_quant_algo is a single value).
  const Quantizer* first_kv = nullptr;
  for (const auto& q : state.quantizers()) {
    if (!q.enabled() || (q.role != QuantizerRole::kKBmm && q.role != QuantizerRole::kVBmm)) continue;
    if (first_kv == nullptr) {
      first_kv = &q;
      continue;
    }
    QF_CHECK(KvCacheAlgoOf(q) == KvCacheAlgoOf(*first_kv),
             "KV-cache quantizers use different formats: '{}' is {} (set by {}) but '{}' is {} (set by {}); runtimes "
             "need one KV format", first_kv->slot.name, QuantizerLabel(*first_kv), DecidedBy(*first_kv), q.slot.name,
             QuantizerLabel(q), DecidedBy(q));
  }
}

uint64_t MaxShardBytesFromGiB(double gib, const char* flag) {
  QF_CHECK(std::isfinite(gib) && gib >= 1.0 / 1024 && gib <= 1024,
           "{} {} GiB is out of range: give a shard size limit in GiB between 1/1024 (1 MiB) and 1024", flag, gib);
  return static_cast<uint64_t>(gib * static_cast<double>(1ull << 30));
}

namespace {

struct ExportPlans {
  std::vector<LinearPlan> linears;  // every Linear, model order (kNone: left unquantized)
  std::vector<FusedGroupStat> fused;
};

// Formats of every Linear, and what must be unified across fused siblings. `calibrated`: the input
// quantizers have their amax (else only the weight side is final, and a missing input amax is not an error
// yet). `layer`: only the Linears of that decoder layer (-1: those outside the decoder layers); fused
// siblings always share a layer. `weight_amax_known` = false plans the formats alone (the layout of a
// layer-by-layer export, before any weight amax exists).
ExportPlans PlanLinears(const Model& model, const QuantState& state, bool calibrated, std::optional<int> layer = {},
                        bool weight_amax_known = true) {
  ExportPlans out;
  const auto& modules = model.modules();
  // 1. Formats of every Linear, and what must be unified across fused siblings.
  std::vector<LinearPlan>& plans = out.linears;
  std::map<int, size_t> plan_of;  // module -> index into plans
  for (int m : model.linear_modules()) {
    if (layer && modules[static_cast<size_t>(m)].layer != *layer) continue;
    LinearPlan p;
    p.module = m;
    p.weight = state.Get(m, QuantizerRole::kWeight);
    p.input = state.Get(m, QuantizerRole::kInput);
    p.format = DetectExportFormat(p.weight, p.input);
    if (p.format != ExportFormat::kNone) {
      QF_CHECK(PackFormatForExport(p.format).has_value(), "module '{}': export format '{}' is not supported by qforge yet",
               modules[static_cast<size_t>(m)].name, exporter::Traits(p.format).name);
      const QuantSpec ws = p.weight->spec();
      if (!ws.IsMx() && weight_amax_known) {
        QF_CHECK(p.weight->has_amax, "quantizer '{}' has no amax: calibrate before exporting", p.weight->slot.name);
        p.weight_amax = p.weight->amax;
      }
      if (weight_amax_known && ws.IsNvfp4Static()) {
        p.global_amax = p.weight->global_amax ? *p.weight->global_amax : MaxOf(p.weight_amax);
      } else if (weight_amax_known && ws.IsNvfp4Dynamic()) {
        p.global_amax = MaxOf(p.weight_amax);
      }
      const int bs = BlockSizeLast(ws);
      if (PackFormatForExport(p.format) == PackFormat::kNvfp4) {
        QF_CHECK(bs == 16, "module '{}': NVFP4 export needs block size 16, the weight quantizer has {}",
                 modules[static_cast<size_t>(m)].name, bs);
      }
      if (p.input != nullptr && p.input->enabled() && p.input->has_amax && p.input->amax.size() == 1) {
        p.input_amax = p.input->amax[0];
      }
      const auto& tr = exporter::Traits(p.format);
      if (p.input != nullptr && !p.input->pre_quant_scale.empty()) {
        QF_CHECK(tr.pre_quant_scale != exporter::Presence::kForbidden,
                 "module '{}': its input is smoothed (pre_quant_scale), but export format {} has no pre_quant_scale "
                 "tensor: a runtime would compute the layer unsmoothed", modules[static_cast<size_t>(m)].name, tr.name);
        QF_CHECK(static_cast<int64_t>(p.input->pre_quant_scale.size()) == modules[static_cast<size_t>(m)].in_features,
                 "quantizer '{}': pre_quant_scale has {} values, the Linear {} input features", p.input->slot.name,
                 p.input->pre_quant_scale.size(), modules[static_cast<size_t>(m)].in_features);
        p.pre_quant_scale = p.input->pre_quant_scale;
      }
      if (calibrated && tr.input_scale == exporter::Presence::kRequired) {
        QF_CHECK(p.input_amax.has_value(), "module '{}' ({}): its input quantizer has no calibrated amax, so no "
                 "input_scale can be written", modules[static_cast<size_t>(m)].name, tr.name);
      }
    }
    plan_of[m] = plans.size();
    plans.push_back(std::move(p));
  }
  {
    std::vector<std::string> names;
    std::map<std::string, int> by_name;
    for (const auto& p : plans) {
      if (p.format == ExportFormat::kNone) continue;
      names.push_back(modules[static_cast<size_t>(p.module)].name);
      by_name[names.back()] = p.module;
    }
    // The groups runtimes fuse into one GEMM (vLLM's qkv_proj, gate_up_proj, Mixtral's per-expert w13) are
    // the default shared-state siblings, whatever patterns the calibration config chose.
    const auto patterns = CompilePatterns(config::DefaultSharedPatterns());
    for (const auto& g : FindSharedGroups(patterns, names, {})) {
      FusedGroupStat stat;
      stat.members = g.members;
      std::vector<LinearPlan*> ms;
      for (const auto& n : g.members) ms.push_back(&plans[plan_of[by_name[n]]]);
      const ExportFormat f = ms[0]->format;
      for (auto* p : ms) {
        QF_CHECK(p->format == f, "fused siblings must share one format (runtimes fuse them into one GEMM): '{}' is {} "
                 "but '{}' is {}", g.members[0], exporter::Traits(f).name,
                 modules[static_cast<size_t>(p->module)].name, exporter::Traits(p->format).name);
      }
      stat.format = std::string(exporter::Traits(f).name);
      // One input, scaled once by the runtime: the calibration gives siblings one pre_quant_scale (as
      // ModelOpt's export averages them and re-smooths the weights).
      for (auto* p : ms) {
        QF_CHECK(p->pre_quant_scale == ms[0]->pre_quant_scale,
                 "fused siblings '{}' and '{}' have different pre_quant_scale (a runtime scales their shared input "
                 "once)", g.members[0], modules[static_cast<size_t>(p->module)].name);
      }
      // One global weight scale: NVFP4 global amax, or the FP8 per-tensor amax.
      if (ms[0]->global_amax) {
        float g_max = 0;
        for (auto* p : ms) g_max = std::max(g_max, *p->global_amax);
        for (auto* p : ms) p->global_amax = g_max;
        stat.unified_weight = true;
      } else if (f == ExportFormat::kFp8 && weight_amax_known) {
        // qforge's choice: one weight_scale, so vLLM need not requantize.
        float w_max = 0;
        for (auto* p : ms) w_max = std::max(w_max, MaxOf(p->weight_amax));
        for (auto* p : ms) p->weight_amax = {w_max};
        stat.unified_weight = true;
      }
      bool all_inputs = true;
      for (auto* p : ms) all_inputs = all_inputs && p->input_amax.has_value();
      if (all_inputs) {
        float i_max = 0;
        for (auto* p : ms) i_max = std::max(i_max, *p->input_amax);
        for (auto* p : ms) p->input_amax = i_max;
        stat.unified_input = true;
      }
      out.fused.push_back(std::move(stat));
    }
  }

  return out;
}

// A pre_quant_scale's dtype: its weight's in the checkpoint (ModelOpt: the module's dtype), f32 for a weight
// stored in another type.
DType PreQuantScaleDType(const Model& model, int module) {
  const DType d = model.CheckpointWeightDType(module);
  return d == DType::kBF16 || d == DType::kF16 ? d : DType::kF32;
}

// Whether Linear `p` gets an input_scale tensor: from its calibrated amax, or (before calibration) from its
// configuration: an enabled input quantizer that max calibration gives an amax.
bool WritesInputScale(const LinearPlan& p, bool calibrated) {
  if (p.format == ExportFormat::kNone) return false;
  const exporter::Presence ps = exporter::Traits(p.format).input_scale;
  if (ps == exporter::Presence::kForbidden || ps == exporter::Presence::kTolerated) return false;
  if (calibrated) return p.input_amax.has_value();
  return p.input != nullptr && p.input->enabled() && !p.input->sequential() && p.input->NeedsCalibration();
}

// The KV-cache scale tensors the state asks for (names, with the quantizer; before or after calibration).
std::vector<std::pair<std::string, const Quantizer*>> KvScaleTensors(const Model& model, const QuantState& state,
                                                                     exporter::KvCacheAlgo* algo_out) {
  const auto& modules = model.modules();
  exporter::KvCacheAlgo kv = exporter::KvCacheAlgo::kNone;
  std::vector<std::pair<std::string, const Quantizer*>> out;
  for (size_t m = 0; m < modules.size(); ++m) {
    if (modules[m].kind != ModuleKind::kAttention) continue;
    for (QuantizerRole role : {QuantizerRole::kKBmm, QuantizerRole::kVBmm}) {
      const Quantizer* q = state.Get(static_cast<int>(m), role);
      if (q == nullptr || !q->enabled()) continue;
      const exporter::KvCacheAlgo algo = KvCacheAlgoOf(*q);
      QF_CHECK(kv == exporter::KvCacheAlgo::kNone || kv == algo,
               "KV-cache quantizers use different formats ('{}' differs); runtimes need one KV format", q->slot.name);
      kv = algo;
      if (q->spec().use_constant_amax) continue;  // cast mode: no scale tensor, runtimes assume 1.0
      const bool is_k = role == QuantizerRole::kKBmm;
      out.emplace_back(modules[m].name + (is_k ? ".k_proj.k_scale" : ".v_proj.v_scale"), q);
    }
  }
  *algo_out = kv;
  return out;
}

}  // namespace

struct StagedHfExport::Impl {
  Model& model;
  HfExportOptions options;
  bool calibrated;
  ExportPlans plans;
  std::vector<char> input_scale;                     // per plans.linears entry: an input_scale is planned
  std::vector<char> pre_quant_scale;                 // per plans.linears entry: a pre_quant_scale is planned
  std::vector<std::string> kv_names;                 // planned KV-cache scale tensors, in order
  std::vector<std::string> copied;                   // checkpoint tensors copied as stored
  CheckpointTensors ckpt;                            // (before `writer`: its `done` callbacks use it)
  std::unique_ptr<CheckpointWriter> writer;
  HfExportReport report;
  Timer timer;
  double encode_seconds = 0;
  bool by_layer = false;      // planned from the formats alone; EncodeLayer encodes
  bool copied_added = false;  // the copied tensors are queued
  std::map<int, size_t> plan_of;                    // module -> index into plans.linears
  std::vector<std::optional<LayerExportStat>> stats;  // per plans.linears entry, once encoded
  // EncodeWeightsInBackground: its thread, the error it ended with, and the flag that stops it early.
  std::thread encode_thread;
  std::exception_ptr encode_error;
  std::atomic<bool> cancel{false};

  Impl(Model& m, const HfExportOptions& o, bool c)
      : model(m), options(o), calibrated(c), ckpt(CheckpointTensors::Open(m.dir())) {}

  // Packs Linear `p`'s weight with the encoder and queues its tensors.
  void EncodeLinear(const LinearPlan& p, WeightEncoder& encoder) { EncodeLinear(p, InputsOf(p), encoder); }
  void EncodeLinear(const LinearPlan& p, const PackInputs& in, WeightEncoder& encoder);
  // What the encoder takes for `p`, read from its weight quantizer (so only on the thread that owns the state).
  static PackInputs InputsOf(const LinearPlan& p);
  // Queues every checkpoint tensor copied as stored (once).
  void AddCopied();
  // Encodes every planned Linear (with `inputs[i]` for plans.linears[i]) with `encoder`, then queues the
  // copied tensors. Reads no quantizer: the calibration may change the state meanwhile.
  void EncodeAll(WeightEncoder& encoder, const std::vector<PackInputs>& inputs, bool show_progress);
  std::vector<PackInputs> AllInputs() const {
    std::vector<PackInputs> out;
    for (const auto& p : plans.linears) out.push_back(p.format == ExportFormat::kNone ? PackInputs{} : InputsOf(p));
    return out;
  }
  // Waits for EncodeWeightsInBackground's (or EncodeLayerInBackground's) thread; rethrows its error.
  void JoinEncoder();
  // EncodeLayer's planning, on the caller's thread: records layer `layer`'s plans and returns, per Linear to
  // encode, its index in plans.linears and its encoder inputs (read from `state` now).
  std::vector<std::pair<size_t, PackInputs>> PlanLayer(const QuantState& state, int layer);
};

void StagedHfExport::Impl::EncodeAll(WeightEncoder& encoder, const std::vector<PackInputs>& inputs,
                                     bool show_progress) {
  QF_ASSERT(inputs.size() == plans.linears.size(), "EncodeAll: {} inputs for {} Linears", inputs.size(),
            plans.linears.size());
  int64_t total = 0;
  for (const auto& p : plans.linears) total += p.format != ExportFormat::kNone ? 1 : 0;
  Progress progress("export", total, "layers");
  for (size_t i = 0; i < plans.linears.size(); ++i) {
    const LinearPlan& p = plans.linears[i];
    if (p.format == ExportFormat::kNone) continue;
    if (cancel.load(std::memory_order_relaxed)) return;
    EncodeLinear(p, inputs[i], encoder);
    if (show_progress) progress.Add(1, model.modules()[static_cast<size_t>(p.module)].name);
  }
  if (show_progress && total > 0) progress.Finish();
  AddCopied();
}

void StagedHfExport::Impl::JoinEncoder() {
  if (encode_thread.joinable()) encode_thread.join();
  if (encode_error) std::rethrow_exception(std::exchange(encode_error, nullptr));
}

PackInputs StagedHfExport::Impl::InputsOf(const LinearPlan& p) {
  PackInputs in;
  in.amax = p.weight_amax;
  in.global_amax = p.global_amax;
  const QuantSpec ws = p.weight->spec();
  in.nvfp4_static = ws.IsNvfp4Static();
  in.four_over_six = ws.block && ws.block->four_over_six;
  return in;
}

void StagedHfExport::Impl::EncodeLinear(const LinearPlan& p, const PackInputs& in, WeightEncoder& encoder) {
  const ModuleInfo& info = model.modules()[static_cast<size_t>(p.module)];
  Timer et;
  EncodedWeight e = encoder.Encode(p.module, *PackFormatForExport(p.format), in, info.name + ".weight");
  encode_seconds += et.Seconds();
  PackedTensors pt = ToTensors(std::move(e.packed));  // the tensors own the encoder's buffers now
  writer->Add(info.name + ".weight", std::move(pt.weight));
  writer->Add(info.name + ".weight_scale", std::move(pt.weight_scale));
  if (pt.weight_scale_2) writer->Add(info.name + ".weight_scale_2", std::move(*pt.weight_scale_2));
  stats[plan_of.at(p.module)] = LayerExportStat{info.name, std::string(exporter::Traits(p.format).name),
                                                info.out_features * info.in_features, e.relative_error()};
}

void StagedHfExport::Impl::AddCopied() {
  if (copied_added) return;
  copied_added = true;
  // Everything else as stored: none of it depends on calibration either.
  for (const auto& name : copied) {
    // Copied tensors (excluded Linears such as lm_head, norms, embeddings, biases) never passed through a
    // quantizer, so nothing else looks at their values: a NaN / Inf here would reach the runtime silently.
    // The writer thread scans each one (its error fails the export at Commit) and then drops its pages of
    // the mmap. (Release and FileOf only look up shards, all opened while planning: safe on that thread.)
    writer->Add(name, ckpt.Get(name), [this, name](const Tensor& t) {
      const NonFiniteScan scan = ScanNonFinite(t);
      QF_CHECK(scan.count == 0, "tensor '{}' in {} has {} non-finite value(s) (first at flat index {}); the export "
               "would copy them unchanged into the checkpoint", name, ckpt.FileOf(name), scan.count, scan.first);
      ckpt.Release(name);
    });
  }
}

StagedHfExport::StagedHfExport(Model& model, const QuantState& state, const fs::path& out_dir,
                               const HfExportOptions& options, bool calibrated, bool by_layer)
    : impl_(std::make_unique<Impl>(model, options, calibrated)) {
  Impl& x = *impl_;
  const auto& modules = model.modules();
  CheckExportable(model, state);  // also done before calibration; repeated for callers that skip it
  x.by_layer = by_layer;
  x.plans = PlanLinears(model, state, calibrated, {}, /*weight_amax_known=*/!by_layer);
  for (size_t i = 0; i < x.plans.linears.size(); ++i) x.plan_of[x.plans.linears[i].module] = i;
  x.stats.resize(x.plans.linears.size());

  // The checkpoint's layout, before anything is encoded: per quantized Linear its packed weight, scales
  // and input scale; the KV-cache scales; then every other checkpoint tensor as stored. (This order, and
  // so every shard's bytes, is what the export has always written.)
  std::vector<PlannedTensor> layout;
  std::set<std::string> replaced;  // checkpoint tensors written in another form
  for (const auto& p : x.plans.linears) {
    x.input_scale.push_back(WritesInputScale(p, calibrated) ? 1 : 0);
    x.pre_quant_scale.push_back(p.format != ExportFormat::kNone && !p.pre_quant_scale.empty() ? 1 : 0);
    if (p.format == ExportFormat::kNone) continue;
    const ModuleInfo& info = modules[static_cast<size_t>(p.module)];
    QF_CHECK(info.name != "lm_head" || !model.config().tie_word_embeddings,
             "lm_head is tied to the embeddings and cannot be quantized on its own; disable '*lm_head*'");
    const PackedLayout pl = PackedLayoutOf(*PackFormatForExport(p.format), std::vector<int64_t>{info.out_features,
                                           info.in_features}, info.name + ".weight");
    layout.push_back({info.name + ".weight", StoredDTypeOf(pl.weight_type), pl.weight_shape});
    layout.push_back({info.name + ".weight_scale", StoredDTypeOf(pl.scale_type), pl.scale_shape});
    if (pl.has_scale_2) layout.push_back({info.name + ".weight_scale_2", DType::kF32, {}});
    if (x.input_scale.back()) layout.push_back({info.name + ".input_scale", DType::kF32, {}});
    if (x.pre_quant_scale.back()) {  // in the weight's checkpoint dtype, as ModelOpt writes it
      layout.push_back({info.name + ".pre_quant_scale", PreQuantScaleDType(model, p.module), {info.in_features}});
    }
    replaced.insert(info.weight_tensor);
  }
  exporter::KvCacheAlgo kv = exporter::KvCacheAlgo::kNone;
  for (const auto& [name, q] : KvScaleTensors(model, state, &kv)) {
    x.kv_names.push_back(name);
    layout.push_back({name, DType::kF32, {}});
  }
  for (const auto& name : x.ckpt.names()) {
    if (replaced.count(name)) continue;
    const TensorInfo& ti = x.ckpt.Info(name);  // (opens every shard now: see the writer's `done` in EncodeWeights)
    layout.push_back({name, ti.dtype, ti.shape});
    x.copied.push_back(name);
  }
  CheckpointWriterOptions wo;
  wo.max_shard_bytes = options.max_shard_bytes;
  wo.replace = options.replace;
  wo.max_queued_bytes = options.max_queued_bytes;
  x.writer = std::make_unique<CheckpointWriter>(out_dir, std::move(layout), wo);
}

StagedHfExport::~StagedHfExport() {
  // An export abandoned (an error in calibration) stops its encoding thread after the weight at hand.
  impl_->cancel = true;
  if (impl_->encode_thread.joinable()) impl_->encode_thread.join();
}

void StagedHfExport::EncodeWeights() {
  Impl& x = *impl_;
  QF_ASSERT(!x.by_layer, "EncodeWeights on a layer-by-layer export (EncodeLayer encodes it)");
  QF_ASSERT(!x.copied_added && !x.encode_thread.joinable(), "EncodeWeights called twice");
  HostWeightEncoder host_encoder(x.model, x.options.kernels);
  x.EncodeAll(x.options.encoder != nullptr ? *x.options.encoder : host_encoder, x.AllInputs(), x.options.show_progress);
}

void StagedHfExport::EncodeWeightsInBackground(WeightEncoder& encoder) {
  Impl& x = *impl_;
  QF_ASSERT(!x.by_layer, "EncodeWeightsInBackground on a layer-by-layer export (EncodeLayer encodes it)");
  QF_ASSERT(!x.copied_added && !x.encode_thread.joinable(), "EncodeWeights called twice");
  // The quantizers are read here, before the calibration goes on changing the state; the thread reads only
  // the plans' copies. No progress lines: the calibration's own progress owns the terminal meanwhile.
  x.encode_thread = std::thread([&x, &encoder, inputs = x.AllInputs()] {
    try {
      x.EncodeAll(encoder, inputs, /*show_progress=*/false);
    } catch (...) {
      x.encode_error = std::current_exception();
    }
  });
}

std::vector<std::pair<size_t, PackInputs>> StagedHfExport::Impl::PlanLayer(const QuantState& state, int layer) {
  QF_ASSERT(by_layer, "EncodeLayer on an export planned with its weight amax (EncodeWeights encodes it)");
  JoinEncoder();  // the previous layer's background encoding
  AddCopied();    // first: the writer threads copy these while the layers calibrate
  std::vector<std::pair<size_t, PackInputs>> todo;
  ExportPlans lp = PlanLinears(model, state, calibrated, layer);
  for (auto& p : lp.linears) {
    const size_t i = plan_of.at(p.module);
    QF_ASSERT(p.format == plans.linears[i].format, "module '{}': its export format changed since the layout was "
              "planned", model.modules()[static_cast<size_t>(p.module)].name);
    QF_ASSERT(!stats[i].has_value(), "module '{}' encoded twice", model.modules()[static_cast<size_t>(p.module)].name);
    if (p.format != ExportFormat::kNone) todo.emplace_back(i, InputsOf(p));
    p.weight = p.input = nullptr;  // `state` may not outlive this call: Finish compares the values only
    plans.linears[i] = std::move(p);
    if (plans.linears[i].format == ExportFormat::kNone) stats[i] = LayerExportStat{};  // nothing to encode
  }
  return todo;
}

void StagedHfExport::EncodeLayer(const QuantState& state, int layer) {
  Impl& x = *impl_;
  HostWeightEncoder host_encoder(x.model, x.options.kernels);
  WeightEncoder& encoder = x.options.encoder != nullptr ? *x.options.encoder : host_encoder;
  for (const auto& [i, in] : x.PlanLayer(state, layer)) x.EncodeLinear(x.plans.linears[i], in, encoder);
}

void StagedHfExport::EncodeLayerInBackground(const QuantState& state, int layer, WeightEncoder& encoder) {
  Impl& x = *impl_;
  // The thread reads only its copies of the inputs and the plans' module and format, which no later call
  // changes before it is joined.
  x.encode_thread = std::thread([&x, &encoder, todo = x.PlanLayer(state, layer)] {
    try {
      for (const auto& [i, in] : todo) {
        if (x.cancel.load(std::memory_order_relaxed)) return;
        x.EncodeLinear(x.plans.linears[i], in, encoder);
      }
    } catch (...) {
      x.encode_error = std::current_exception();
    }
  });
}

void StagedHfExport::WaitLayer() { impl_->JoinEncoder(); }

std::optional<HfExportReport> StagedHfExport::Finish(const QuantState& state) {
  Impl& x = *impl_;
  x.JoinEncoder();
  QF_ASSERT(x.copied_added, "Finish before EncodeWeights / EncodeLayer");
  Model& model = x.model;
  const auto& modules = model.modules();
  HfExportReport& report = x.report;
  for (size_t i = 0; i < x.plans.linears.size(); ++i) {
    const LinearPlan& p = x.plans.linears[i];
    QF_ASSERT(p.format == ExportFormat::kNone || x.stats[i].has_value(), "module '{}' was never encoded",
              modules[static_cast<size_t>(p.module)].name);
    if (p.format != ExportFormat::kNone) report.layers.push_back(*x.stats[i]);  // model order
  }
  // The calibrated plans: formats and weight scales must be what was encoded (calibration changed no
  // weight: a bug otherwise); input scales come from them now.
  ExportPlans final_plans = PlanLinears(model, state, /*calibrated=*/true);
  QF_ASSERT(final_plans.linears.size() == x.plans.linears.size(), "the export's Linears changed");
  for (size_t i = 0; i < final_plans.linears.size(); ++i) {
    const LinearPlan &a = x.plans.linears[i], &b = final_plans.linears[i];
    if (a.format != b.format || a.weight_amax != b.weight_amax || a.global_amax != b.global_amax) {
      // Max calibration computes them from the weights alone; a resumed layerwise checkpoint brings its own.
      LogWarning("export: module '{}': its weight scales at the end of calibration differ from the ones encoded "
                 "before it; exporting again", modules[static_cast<size_t>(a.module)].name);
      return std::nullopt;
    }
    // A predicted input_scale that calibration did not produce (or the reverse): the layout is wrong, and
    // the caller exports again from the calibrated state.
    if ((x.input_scale[i] != 0) != WritesInputScale(b, true)) return std::nullopt;
    if ((x.pre_quant_scale[i] != 0) != (b.format != ExportFormat::kNone && !b.pre_quant_scale.empty())) {
      return std::nullopt;
    }
  }
  exporter::KvCacheAlgo kv = exporter::KvCacheAlgo::kNone;
  const auto kv_tensors = KvScaleTensors(model, state, &kv);
  if (kv_tensors.size() != x.kv_names.size()) return std::nullopt;
  report.fused_groups = std::move(final_plans.fused);

  for (size_t i = 0; i < final_plans.linears.size(); ++i) {
    const LinearPlan& p = final_plans.linears[i];
    const ModuleInfo& info = modules[static_cast<size_t>(p.module)];
    if (x.pre_quant_scale[i]) {
      // The values are the forward's (already in the checkpoint dtype): the conversion is exact.
      x.writer->Add(info.name + ".pre_quant_scale", Tensor::FromF32({info.in_features}, p.pre_quant_scale)
                                                        .FromF32To(PreQuantScaleDType(model, p.module)));
    }
    if (!x.input_scale[i]) continue;
    const float d = InputScaleDivisor(p.input->spec());  // amax / max bound, with export_amax's rules
    x.writer->Add(info.name + ".input_scale", FiniteScale(info.name + ".input_scale", *p.input,
                                                          ExportAmax(*p.input_amax, d) / d));
  }
  for (size_t i = 0; i < kv_tensors.size(); ++i) {
    const auto& [name, q] = kv_tensors[i];
    if (name != x.kv_names[i]) return std::nullopt;
    QF_CHECK(q->has_amax && q->amax.size() == 1, "quantizer '{}' has no per-tensor amax to export", q->slot.name);
    x.writer->Add(name, FiniteScale(name, *q, ExportAmax(q->amax[0], 448.0f) / 448.0f));
  }
  report.kv_scales_written = static_cast<int>(kv_tensors.size());
  // The two quantization configs from one struct.
  exporter::QuantConfigInput qin;
  for (size_t m = 0; m < modules.size(); ++m) {  // embeddings own quantizer slots too (never quantized here)
    if (modules[m].kind != ModuleKind::kEmbedding) continue;
    const Quantizer* w = state.Get(static_cast<int>(m), QuantizerRole::kWeight);
    QF_CHECK(w == nullptr || !w->enabled(), "quantizer '{}': quantized embeddings cannot be exported yet",
             w->slot.name);
    qin.modules.push_back({modules[m].name, ExportFormat::kNone, 0});
    report.excluded.push_back(modules[m].name);
  }
  for (const auto& p : final_plans.linears) {
    const ModuleInfo& info = modules[static_cast<size_t>(p.module)];
    exporter::ModuleExport me;
    me.name = info.name;
    me.format = p.format;
    me.group_size = p.format == ExportFormat::kNone ? 0 : BlockSizeLast(p.weight->spec());
    qin.modules.push_back(me);
    if (p.format == ExportFormat::kNone) report.excluded.push_back(info.name);
  }
  qin.kv_cache = kv;
  report.config = exporter::BuildQuantConfig(qin);
  nlohmann::ordered_json config_json = nlohmann::ordered_json::parse(ReadFileToString(model.dir() / "config.json"));
  std::optional<nlohmann::ordered_json> hf_quant;
  if (report.config.has_quantization()) {
    config_json["quantization_config"] = exporter::ToInlineQuantizationConfig(report.config);
    hf_quant = exporter::ToHfQuantConfigJson(report.config);
  }
  Timer finish;
  x.writer->Commit(config_json, hf_quant, model.dir());
  report.bytes_written = x.writer->bytes_written();
  report.num_shards = x.writer->num_shards();
  report.encode_seconds = x.encode_seconds;
  report.write_seconds = x.writer->write_seconds();
  report.total_seconds = x.timer.Seconds();
  report.commit_seconds = finish.Seconds();
  return std::move(report);
}

HfExportReport ExportHfCheckpoint(Model& model, const QuantState& state, const fs::path& out_dir,
                                  const HfExportOptions& options) {
  StagedHfExport e(model, state, out_dir, options, /*calibrated=*/true);
  e.EncodeWeights();
  std::optional<HfExportReport> r = e.Finish(state);
  QF_ASSERT(r.has_value(), "an export planned from the calibrated state did not match it");
  return std::move(*r);
}

std::string FormatExportSummary(const HfExportReport& r, int worst_layers) {
  std::string out;
  const auto& c = r.config;
  out += fmt::format("quant_algo: {}   kv_cache_quant_algo: {}\n", c.quant_algo.value_or("null"),
                     c.kv_cache_quant_algo.value_or("null"));
  std::map<std::string, std::pair<int, int64_t>> per_format;
  for (const auto& l : r.layers) {
    auto& e = per_format[l.format];
    e.first += 1;
    e.second += l.params;
  }
  out += "quantized Linears by format:\n";
  for (const auto& [f, e] : per_format) {
    out += fmt::format("  {:<14} {:>5} layers  {:>12} params\n", f, e.first, e.second);
  }
  out += fmt::format("excluded (left in the model dtype): {} modules", r.excluded.size());
  if (c.exclude_modules && !c.exclude_modules->empty()) {
    out += fmt::format(" -> exclude_modules {}", fmt::join(*c.exclude_modules, ", "));
  }
  out += "\n";
  if (r.kv_scales_written > 0) out += fmt::format("KV-cache scales written: {}\n", r.kv_scales_written);
  int unified_fp8 = 0, unified = 0;
  for (const auto& g : r.fused_groups) {
    if (g.unified_weight || g.unified_input) ++unified;
    if (g.format == "fp8" && g.unified_weight) ++unified_fp8;
  }
  if (unified > 0) {
    out += fmt::format("fused siblings (q/k/v, gate/up, w1/w3) sharing one weight global scale and one input "
                       "scale: {} groups\n", unified);
  }
  if (unified_fp8 > 0) {
    out += fmt::format("  of which FP8: {} groups share one weight_scale (ModelOpt keeps them separate and vLLM "
                       "requantizes at load; qforge rounds once)\n", unified_fp8);
  }
  std::vector<LayerExportStat> sorted = r.layers;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.rel_weight_mse > b.rel_weight_mse; });
  if (!sorted.empty()) {
    out += fmt::format("weight error (relative MSE of the exported encoding), worst {} of {}:\n",
                       std::min<size_t>(sorted.size(), static_cast<size_t>(worst_layers)), sorted.size());
    for (size_t i = 0; i < sorted.size() && i < static_cast<size_t>(worst_layers); ++i) {
      out += fmt::format("  {:.3e}  {:<8} {}\n", sorted[i].rel_weight_mse, sorted[i].format, sorted[i].module);
    }
    double sum = 0;
    for (const auto& l : sorted) sum += l.rel_weight_mse;
    out += fmt::format("  mean {:.3e} over {} layers\n", sum / static_cast<double>(sorted.size()), sorted.size());
  }
  out += fmt::format("wrote {} bytes in {} shard(s)\n", r.bytes_written, r.num_shards);
  return out;
}

}  // namespace qforge
