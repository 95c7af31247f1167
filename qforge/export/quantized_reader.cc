// Dequantizing loader for exported checkpoints.
#include "qforge/export/quantized_reader.h"

#include "qforge/export/pack.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/io/safetensors.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace fs = std::filesystem;
using exporter::ExportFormat;

std::optional<PackFormat> PackFormatForExport(ExportFormat f) {
  switch (f) {
    case ExportFormat::kFp8: return PackFormat::kFp8;
    case ExportFormat::kFp8PcPt: return PackFormat::kFp8PerChannel;
    case ExportFormat::kFp8PbWo: return PackFormat::kFp8Block;
    case ExportFormat::kNvfp4:
    case ExportFormat::kNvfp4Awq:
    case ExportFormat::kW4a16Nvfp4: return PackFormat::kNvfp4;
    case ExportFormat::kMxfp8: return PackFormat::kMxfp8;
    case ExportFormat::kMxfp4: return PackFormat::kMxfp4;
    case ExportFormat::kInt8Sq:
    case ExportFormat::kInt8Wo: return PackFormat::kInt8;
    case ExportFormat::kInt4Awq: return PackFormat::kInt4Awq;
    default: return std::nullopt;
  }
}

float InputScaleDivisor(const QuantSpec& input_spec) {
  return input_spec.num_bits.IsFloat(2, 1) ? 6.0f * 448.0f : MaxBound(input_spec);
}

bool IsQuantizedCheckpoint(const fs::path& dir) {
  auto c = exporter::ReadCheckpointQuantConfigs(dir);
  const auto* eff = c.Effective();
  return eff != nullptr && eff->has_quantization();
}

namespace {

QuantSpec Fp8PerTensor() {
  QuantSpec s;
  s.num_bits = NumBits::Float(4, 3);
  return s;
}

QuantSpec BlockSpecOf(NumBits elem, int block, NumBits scale) {
  QuantSpec s;
  s.num_bits = elem;
  BlockSpec b;
  b.sizes = {{-1, block}};
  b.dynamic = true;
  b.scale_bits = scale;
  s.block = b;
  return s;
}

}  // namespace

QuantizedModel LoadQuantizedModel(const fs::path& dir, const ModelLoadOptions& base_options) {
  QuantizedModel out;
  auto cfgs = exporter::ReadCheckpointQuantConfigs(dir);
  const exporter::HfQuantConfig* eff = cfgs.Effective();
  if (eff == nullptr || !eff->has_quantization()) {
    out.model = Model::Load(dir, base_options);
    out.description = "unquantized";
    return out;
  }
  out.config = *eff;
  auto ckpt = std::make_shared<CheckpointTensors>(CheckpointTensors::Open(dir));

  // Which modules carry quantized weights, and how.
  struct Entry {
    ExportFormat format;
    PackFormat pack;
  };
  auto entries = std::make_shared<std::map<std::string, Entry>>();  // weight tensor name -> format
  std::map<std::string, int> per_format;
  for (const auto& name : ckpt->names()) {
    if (!EndsWith(name, ".weight_scale")) continue;
    const std::string module = name.substr(0, name.size() - std::string(".weight_scale").size());
    const std::string weight = module + ".weight";
    QF_CHECK(ckpt->Contains(weight), "checkpoint '{}': '{}' has no '{}'", dir.string(), name, weight);
    auto lc = eff->LayerConfigFor(module);
    QF_CHECK(lc.has_value(), "checkpoint '{}': '{}' carries scales but the quantization config does not quantize "
             "module '{}'", dir.string(), name, module);
    auto fmt_ = exporter::ExportFormatFromQuantAlgo(lc->quant_algo);
    QF_CHECK(fmt_.has_value(), "checkpoint '{}': unknown quant_algo '{}' for module '{}'", dir.string(),
             lc->quant_algo, module);
    auto pack = PackFormatForExport(*fmt_);
    QF_CHECK(pack.has_value(), "checkpoint '{}': module '{}' uses {}, which qforge cannot decode", dir.string(),
             module, lc->quant_algo);
    (*entries)[weight] = {*fmt_, *pack};
    per_format[lc->quant_algo] += 1;
  }

  ModelLoadOptions opts = base_options;
  opts.provides = [entries](const std::string& n) { return entries->count(n) != 0; };
  opts.provide = [entries, ckpt](const std::string& n) {
    const Entry& e = entries->at(n);
    const std::string module = n.substr(0, n.size() - std::string(".weight").size());
    const Tensor w = ckpt->Get(n);
    const Tensor scale = ckpt->Get(module + ".weight_scale");
    std::optional<Tensor> scale2;
    if (ckpt->Contains(module + ".weight_scale_2")) scale2 = ckpt->Get(module + ".weight_scale_2");
    PackedWeight p = FromTensors(w, scale, scale2 ? &*scale2 : nullptr, n);
    QF_CHECK(p.format == e.pack, "'{}' is stored as {} but the quantization config says {}", n,
             GetTraits(p.format).name, exporter::Traits(e.format).quant_algo);
    std::vector<float> dq = UnpackWeight(p, n);
    return Tensor::FromF32(p.shape, dq);
  };
  opts.ignore_tensor = [](const std::string& n) {
    return EndsWith(n, ".weight_scale") || EndsWith(n, ".weight_scale_2") || EndsWith(n, ".input_scale") ||
           EndsWith(n, ".pre_quant_scale") || EndsWith(n, ".k_scale") || EndsWith(n, ".v_scale");
  };
  out.model = Model::Load(dir, opts);
  out.dequantized_weights = static_cast<int>(entries->size());

  // Activation quantization as the runtime would apply it.
  const auto& modules = out.model->modules();
  auto hooks = std::make_unique<ActivationQuantTable>(modules.size());
  std::map<std::string, int> act_kinds;
  for (size_t m = 0; m < modules.size(); ++m) {
    const ModuleInfo& info = modules[m];
    if (info.kind != ModuleKind::kLinear) continue;
    auto it = entries->find(info.weight_tensor);
    if (it == entries->end()) continue;
    const std::string in_scale = info.name + ".input_scale";
    const float scale = ckpt->Contains(in_scale) ? ckpt->Get(in_scale).ToF32().data<float>()[0] : 0.0f;
    ActivationQuant a;
    // The smoothing vector (SmoothQuant, AWQ), applied to the input before its quantization as the runtime
    // does; also for weight-only formats (AWQ W4A16).
    const std::string pqs_name = info.name + ".pre_quant_scale";
    if (ckpt->Contains(pqs_name)) {
      const Tensor t = ckpt->Get(pqs_name).ToF32();
      QF_CHECK(t.rank() == 1 && t.dim(0) == info.in_features, "checkpoint '{}': '{}' has shape {}, expected [{}]",
               dir.string(), pqs_name, ShapeToString(t.shape()), info.in_features);
      for (float v : t.span<float>()) {
        QF_CHECK(std::isfinite(v) && v > 0, "checkpoint '{}': '{}' holds {} (pre_quant_scale factors must be finite "
                 "and positive)", dir.string(), pqs_name, v);
      }
      a.pre_quant_scale.assign(t.span<float>().begin(), t.span<float>().end());
      a.name = pqs_name;
      act_kinds["pre_quant_scale (smoothed)"] += 1;
    }
    switch (it->second.format) {
      case ExportFormat::kFp8:
      case ExportFormat::kInt8Sq:
        QF_CHECK(scale > 0, "checkpoint '{}': '{}' is missing or not positive", dir.string(), in_scale);
        a.spec = Fp8PerTensor();
        if (it->second.format == ExportFormat::kInt8Sq) a.spec.num_bits = NumBits::Int(8);
        a.amax = {scale * InputScaleDivisor(a.spec)};
        act_kinds["static per-tensor"] += 1;
        break;
      case ExportFormat::kNvfp4:
      case ExportFormat::kNvfp4Awq:
        QF_CHECK(scale > 0, "checkpoint '{}': '{}' is missing or not positive", dir.string(), in_scale);
        a.spec = BlockSpecOf(NumBits::Float(2, 1), 16, NumBits::Float(4, 3));
        a.amax = {scale * InputScaleDivisor(a.spec)};
        act_kinds["nvfp4"] += 1;
        break;
      case ExportFormat::kFp8PcPt: {  // per-token dynamic FP8
        a.spec = Fp8PerTensor();
        a.spec.dynamic = true;
        a.spec.axis = std::vector<int>{0};
        act_kinds["fp8 per-token"] += 1;
        break;
      }
      case ExportFormat::kMxfp8:
        a.spec = BlockSpecOf(NumBits::Float(4, 3), 32, NumBits::Float(8, 0));
        act_kinds["mxfp8"] += 1;
        break;
      default:  // weight-only formats: at most the smoothing
        if (a.pre_quant_scale.empty()) continue;
        a.quantize = false;
        break;
    }
    hooks->SetInput(static_cast<int>(m), std::move(a));
  }
  if (eff->kv_cache_quant_algo) {
    const std::string kv = ToLower(*eff->kv_cache_quant_algo);
    if (kv == "fp8") {
      for (size_t m = 0; m < modules.size(); ++m) {
        if (modules[m].kind != ModuleKind::kAttention) continue;
        for (auto [which, suffix] : {std::pair{BmmInput::kK, ".k_proj.k_scale"}, std::pair{BmmInput::kV, ".v_proj.v_scale"}}) {
          const std::string n = modules[m].name + suffix;
          ActivationQuant a;
          a.spec = Fp8PerTensor();
          // A missing scale means 1.0 to runtimes (vLLM falls back to it).
          a.amax = {(ckpt->Contains(n) ? ckpt->Get(n).ToF32().data<float>()[0] : 1.0f) * 448.0f};
          hooks->SetBmm(static_cast<int>(m), which, std::move(a));
        }
      }
      act_kinds["fp8 KV cache"] += 1;
    } else {
      LogWarning("checkpoint '{}': KV-cache format {} is not simulated by eval (only FP8 is)", dir.string(),
                 *eff->kv_cache_quant_algo);
    }
  }
  out.activation_points = hooks->num_points();
  std::vector<std::string> parts;
  for (const auto& [k, v] : per_format) parts.push_back(fmt::format("{} weights ({} Linears)", k, v));
  for (const auto& [k, v] : act_kinds) parts.push_back(fmt::format("{} activations", k));
  out.description = Join(parts, ", ");
  if (out.activation_points > 0) out.activations = std::move(hooks);
  return out;
}

}  // namespace qforge
