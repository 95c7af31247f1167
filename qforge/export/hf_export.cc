// ModelOpt-format HF checkpoint export.
#include "qforge/export/hf_export.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <cstring>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/progress.h"
#include "qforge/base/strings.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/regex.h"
#include "qforge/export/checkpoint_writer.h"
#include "qforge/export/pack.h"
#include "qforge/export/quantized_reader.h"
#include "qforge/io/safetensors.h"
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

struct LinearPlan {
  int module = -1;
  ExportFormat format = ExportFormat::kNone;
  const Quantizer* weight = nullptr;
  const Quantizer* input = nullptr;
  std::vector<float> weight_amax;     // possibly unified
  std::optional<float> global_amax;   // NVFP4
  std::optional<float> input_amax;    // possibly unified (scalar)
};

}  // namespace

ExportFormat DetectExportFormat(const Quantizer* weight, const Quantizer* input) {
  if (weight == nullptr || !weight->enabled()) return ExportFormat::kNone;
  QF_CHECK(!weight->sequential(), "quantizer '{}': sequential weight quantizers (W4A8 AWQ) cannot be exported yet",
           weight->slot.name);
  const QuantSpec w = weight->spec();
  const bool input_on = input != nullptr && input->enabled() && !input->sequential();
  const bool input_fp8 = input_on && input->spec().IsFp8PerTensor();
  if (w.num_bits.is_int()) {
    if (w.num_bits.bits == 4) return ExportFormat::kInt4Awq;
    if (w.num_bits.bits == 8) return input_on ? ExportFormat::kInt8Sq : ExportFormat::kInt8Wo;
  } else if (w.num_bits.IsFloat(4, 3)) {
    if (w.block) return w.IsMx() ? ExportFormat::kMxfp8 : ExportFormat::kFp8PbWo;
    if (w.axis && w.axis->size() == 1 && (*w.axis)[0] == 0) return ExportFormat::kFp8PcPt;
    return ExportFormat::kFp8;
  } else if (w.num_bits.IsFloat(2, 1) && w.block && w.block->scale_bits) {
    if (w.block->scale_bits->IsFloat(4, 3)) {
      if (!input_on) return ExportFormat::kW4a16Nvfp4;
      if (input_fp8 && w.block->dynamic) return ExportFormat::kW4a8Nvfp4Fp8;
      return ExportFormat::kNvfp4;
    }
    if (w.block->scale_bits->IsFloat(8, 0)) return input_fp8 ? ExportFormat::kW4a8Mxfp4Fp8 : ExportFormat::kMxfp4;
  }
  QF_FAIL("quantizer '{}': num_bits {} has no HF export format", weight->slot.name, w.num_bits.ToString());
}

HfExportReport ExportHfCheckpoint(Model& model, const QuantState& state, const fs::path& out_dir,
                                  const HfExportOptions& options) {
  HfExportReport report;
  const auto& modules = model.modules();

  // 1. Formats of every Linear, and what must be unified across fused siblings.
  std::vector<LinearPlan> plans;
  std::map<int, size_t> plan_of;  // module -> index into plans
  for (int m : model.linear_modules()) {
    LinearPlan p;
    p.module = m;
    p.weight = state.Get(m, QuantizerRole::kWeight);
    p.input = state.Get(m, QuantizerRole::kInput);
    p.format = DetectExportFormat(p.weight, p.input);
    if (p.format != ExportFormat::kNone) {
      QF_CHECK(PackFormatForExport(p.format).has_value(), "module '{}': export format '{}' is not supported by qforge yet",
               modules[static_cast<size_t>(m)].name, exporter::Traits(p.format).name);
      const QuantSpec ws = p.weight->spec();
      if (!ws.IsMx()) {
        QF_CHECK(p.weight->has_amax, "quantizer '{}' has no amax: calibrate before exporting", p.weight->slot.name);
        p.weight_amax = p.weight->amax;
      }
      if (ws.IsNvfp4Static()) {
        p.global_amax = p.weight->global_amax ? *p.weight->global_amax : MaxOf(p.weight_amax);
      } else if (ws.IsNvfp4Dynamic()) {
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
      if (tr.input_scale == exporter::Presence::kRequired) {
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
      // One global weight scale: NVFP4 global amax, or the FP8 per-tensor amax.
      if (ms[0]->global_amax) {
        float g_max = 0;
        for (auto* p : ms) g_max = std::max(g_max, *p->global_amax);
        for (auto* p : ms) p->global_amax = g_max;
        stat.unified_weight = true;
      } else if (f == ExportFormat::kFp8) {  // qforge's choice: one weight_scale, so vLLM need not requantize
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
      report.fused_groups.push_back(std::move(stat));
    }
  }

  // 2. Encode every quantized Linear; copy everything else as stored.
  Timer pack_timer;
  CheckpointTensors ckpt = CheckpointTensors::Open(model.dir());
  CheckpointWriter writer(out_dir, options.max_shard_bytes);
  std::set<std::string> replaced;  // checkpoint tensors written in another form
  double write_seconds = 0;
  int64_t total_quantized = 0;
  for (const auto& p : plans) total_quantized += p.format != ExportFormat::kNone ? 1 : 0;
  Progress progress("export", total_quantized, "layers");
  for (const auto& p : plans) {
    if (p.format == ExportFormat::kNone) continue;
    const ModuleInfo& info = modules[static_cast<size_t>(p.module)];
    QF_CHECK(info.name != "lm_head" || !model.config().tie_word_embeddings,
             "lm_head is tied to the embeddings and cannot be quantized on its own; disable '*lm_head*'");
    const Tensor w = model.LinearWeight(p.module);
    PackInputs in;
    in.amax = p.weight_amax;
    in.global_amax = p.global_amax;
    const QuantSpec ws = p.weight->spec();
    in.nvfp4_static = ws.IsNvfp4Static();
    in.four_over_six = ws.block && ws.block->four_over_six;
    const PackFormat pf = *PackFormatForExport(p.format);
    PackedWeight packed = PackWeight(pf, w.span<float>(), w.shape(), in, info.name + ".weight");
    Timer wt;
    PackedTensors pt = ToTensors(packed);
    writer.Add(info.name + ".weight", std::move(pt.weight));
    writer.Add(info.name + ".weight_scale", std::move(pt.weight_scale));
    if (pt.weight_scale_2) writer.Add(info.name + ".weight_scale_2", std::move(*pt.weight_scale_2));
    if (p.input_amax && exporter::Traits(p.format).input_scale != exporter::Presence::kForbidden &&
        exporter::Traits(p.format).input_scale != exporter::Presence::kTolerated) {
      const float d = InputScaleDivisor(p.input->spec());  // amax / max bound, with export_amax's rules
      writer.Add(info.name + ".input_scale", Tensor::Scalar(ExportAmax(*p.input_amax, d) / d));
    }
    write_seconds += wt.Seconds();
    replaced.insert(info.weight_tensor);
    // Error the exported encoding introduces, measured on the decoded weight.
    const std::vector<float> dq = UnpackWeight(packed, info.name + ".weight");
    double num = 0, den = 0;
    const float* x = w.data<float>();
    for (size_t i = 0; i < dq.size(); ++i) {
      const double d = static_cast<double>(x[i]) - dq[i];
      num += d * d;
      den += static_cast<double>(x[i]) * x[i];
    }
    report.layers.push_back({info.name, std::string(exporter::Traits(p.format).name), w.numel(),
                             den > 0 ? num / den : 0.0});
    if (options.show_progress) progress.Add(1, info.name);
  }
  if (options.show_progress && total_quantized > 0) progress.Finish();

  // KV-cache scales: <attn>.k_proj.k_scale / v_proj.v_scale = amax / 448 (spec §10.2; 448 for FP8 and NVFP4).
  exporter::KvCacheAlgo kv = exporter::KvCacheAlgo::kNone;
  for (size_t m = 0; m < modules.size(); ++m) {
    if (modules[m].kind != ModuleKind::kAttention) continue;
    for (QuantizerRole role : {QuantizerRole::kKBmm, QuantizerRole::kVBmm}) {
      const Quantizer* q = state.Get(static_cast<int>(m), role);
      if (q == nullptr || !q->enabled()) continue;
      const QuantSpec spec = q->spec();
      exporter::KvCacheAlgo algo = spec.num_bits.IsFloat(4, 3)   ? exporter::KvCacheAlgo::kFp8
                                   : spec.num_bits.IsFloat(2, 1) ? exporter::KvCacheAlgo::kNvfp4
                                   : spec.num_bits.is_int() && spec.num_bits.bits == 8
                                       ? exporter::KvCacheAlgo::kInt8
                                       : exporter::KvCacheAlgo::kNone;
      QF_CHECK(algo != exporter::KvCacheAlgo::kNone, "quantizer '{}': KV-cache format {} cannot be exported",
               q->slot.name, spec.num_bits.ToString());
      QF_CHECK(kv == exporter::KvCacheAlgo::kNone || kv == algo,
               "KV-cache quantizers use different formats ('{}' differs); runtimes need one KV format", q->slot.name);
      kv = algo;
      if (spec.use_constant_amax) continue;  // cast mode: no scale tensor, runtimes assume 1.0
      QF_CHECK(q->has_amax && q->amax.size() == 1, "quantizer '{}' has no per-tensor amax to export", q->slot.name);
      const bool is_k = role == QuantizerRole::kKBmm;
      const std::string name = modules[m].name + (is_k ? ".k_proj.k_scale" : ".v_proj.v_scale");
      writer.Add(name, Tensor::Scalar(ExportAmax(q->amax[0], 448.0f) / 448.0f));
      ++report.kv_scales_written;
    }
  }

  Timer wt;
  for (const auto& name : ckpt.names()) {
    if (replaced.count(name)) continue;
    writer.Add(name, ckpt.Get(name));
    ckpt.Release(name);  // written: its pages of the mmap can go
  }

  // 3. The two quantization configs from one struct.
  exporter::QuantConfigInput qin;
  for (size_t m = 0; m < modules.size(); ++m) {  // embeddings own quantizer slots too (never quantized here)
    if (modules[m].kind != ModuleKind::kEmbedding) continue;
    const Quantizer* w = state.Get(static_cast<int>(m), QuantizerRole::kWeight);
    QF_CHECK(w == nullptr || !w->enabled(), "quantizer '{}': quantized embeddings cannot be exported yet",
             w->slot.name);
    qin.modules.push_back({modules[m].name, ExportFormat::kNone, 0});
    report.excluded.push_back(modules[m].name);
  }
  for (const auto& p : plans) {
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
  writer.Commit(config_json, hf_quant, model.dir());
  write_seconds += wt.Seconds();
  report.bytes_written = writer.bytes_written();
  report.num_shards = writer.num_shards();
  report.write_seconds = write_seconds;
  report.pack_seconds = pack_timer.Seconds() - write_seconds;
  return report;
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
