// Layerwise conformance ops, run on random-weight Llama models with the requested number of layers.
#include "qforge/calib/layerwise_conformance.h"

#include <unistd.h>

#include <map>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/calib/calibrate.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/layerwise_checkpoint.h"
#include "qforge/calib/synthetic_model.h"
#include "qforge/config/yaml_loader.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using config::Json;

// ModelOpt file name -> qforge file name in a layer directory.
const std::map<std::string, std::string>& FileNameMap() {
  static const std::map<std::string, std::string> m = {
      {"weights.pt", "weights.safetensors"},
      {"quantizer_state.pt", "quantizers.json"},
      {"quantizer_buffers.pt", "quantizer_buffers.safetensors"},
      {"output_meta.pt", "output_meta.json"},
      {"next_inputs.pt", "next_inputs.safetensors"},
  };
  return m;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "qf_layerwise_conf.XXXXXX").string();
    QF_CHECK(::mkdtemp(t.data()) != nullptr, "cannot create a temporary directory");
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Json OpSetLayerStates(const Json& in, const Json&) {
  const int n = in.at("num_layers").get<int>();
  const bool have = in.value("collected_inputs_before_step", std::string()) != "none";
  Json out = Json::array();
  for (const auto& step : in.at("steps")) {
    Json modes = Json::array();
    for (LayerMode m : LayerModesForStep(n, step.get<int>(), have)) modes.push_back(std::string(LayerModeName(m)));
    out.push_back(modes);
  }
  return {{"modes_after_step", out}};
}

LayerwiseManifest ManifestOverlay(LayerwiseManifest m, const Json& j) {
  if (j.contains("last_completed_layer")) m.last_completed_layer = j["last_completed_layer"].get<int>();
  if (j.contains("num_layers")) m.num_layers = j["num_layers"].get<int>();
  if (j.contains("save_every")) m.save_every = j["save_every"].get<int64_t>();
  if (j.contains("calib_mutates_weights")) m.save_quantizers_only = !j["calib_mutates_weights"].get<bool>();
  return m;
}

Json OpResumeDetect(const Json& in, const Json&) {
  TempDir tmp;
  LayerwiseManifest now;
  now.num_layers = in.value("num_layers", 4);
  if (in.contains("manifest") && !in["manifest"].is_null()) WriteManifest(tmp.path, ManifestOverlay(now, in["manifest"]));
  return {{"start_layer", DetectResumeLayer(tmp.path, now)}};
}

// One layerwise run on the synthetic model; returns every quantizer's amax and every Linear weight.
struct RunResult {
  std::vector<std::vector<float>> amax;
  std::vector<std::optional<float>> global_amax;
  std::vector<std::vector<float>> weights;
  int start_layer = 0;
};

class CheckpointRunner {
 public:
  CheckpointRunner(const Json& in, const fs::path& root) : in_(in), root_(root) {
    const int n = in.at("num_layers").get<int>();
    SyntheticLlamaSpec spec;
    spec.layers = n;
    spec.dtype = DType::kF32;
    spec.seed = 7;
    WriteSyntheticLlama(root / "model", spec);
    method_ = in.at("method").get<std::string>();
    custom_ = method_.rfind("custom", 0) == 0;  // "custom (weights scaled by 0.5)": max + a weight change
    config::Recipe r = config::LoadRecipe("general/ptq/nvfp4_default-kv_fp8");
    Json j = r.quantize->ToJson();
    layerwise_ = in.value("layerwise", Json::object());
    j["algorithm"] = {{"method", custom_ ? std::string("max") : method_}, {"layerwise", layerwise_}};
    config_ = config::QuantizeConfig::FromJson(j, "case config");
    no_data_ = in.contains("forward_loop") && in["forward_loop"].is_null();
  }

  RunResult Run(const fs::path& ckpt, std::optional<int64_t> save_every = std::nullopt) {
    ModelLoadOptions mlo;
    mlo.load_all_layers = false;
    auto model = Model::Load(root_ / "model", mlo);
    QuantState state = QuantState::ForModel(*model);
    state.Apply(config_.quant_cfg);
    const config::AlgorithmConfig& algo = config_.algorithm.configs.at(0);
    LayerwiseOverrides ov;
    ov.checkpoint_dir = ckpt.string();
    ov.save_every = save_every;
    LayerwiseOptions lo = ResolveLayerwiseOptions(config_, algo, ov);
    lo.show_progress = false;
    if (custom_) {
      lo.weight_update = [](Model& m, QuantState&, int layer) {
        for (int mod : m.linear_modules()) {
          if (m.modules()[static_cast<size_t>(mod)].layer != layer) continue;
          Tensor w = m.LinearWeight(mod).Clone();
          for (float& v : w.mutable_span<float>()) v *= 0.5f;
          m.SetLinearWeight(mod, std::move(w));
        }
      };
    }
    MaxCalibOptions mo;
    mo.batch_size = 2;
    mo.show_progress = false;
    mo.shared_patterns = config::DefaultSharedPatterns();
    const bool no_data = no_data_;
    auto data = [no_data] {
      CalibData d;
      d.seq_len = 16;
      if (no_data) return d;  // forward_loop=None: nothing to calibrate on
      std::vector<int32_t> ids(64);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % 512);
      return CutCalibSamples(ids, 4, 16);
    };
    ForwardModel fm(*model, DefaultCpuBackend());
    LayerwiseReport rep = LayerwiseMaxCalibrate(fm, state, data, mo, lo);
    RunResult r;
    r.start_layer = rep.start_layer;
    for (const auto& q : state.quantizers()) {
      r.amax.push_back(q.amax);
      r.global_amax.push_back(q.global_amax);
    }
    for (int m : model->linear_modules()) {
      const Tensor w = model->LinearWeight(m);
      r.weights.emplace_back(w.span<float>().begin(), w.span<float>().end());
    }
    return r;
  }

  Json Layout(const fs::path& ckpt, const Json& expect) const {
    Json out = Json::object();
    std::vector<std::string> dirs;
    for (const auto& e : fs::directory_iterator(ckpt)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory() && name.rfind("layer_", 0) == 0 && name.find(".tmp.") == std::string::npos) dirs.push_back(name);
    }
    std::sort(dirs.begin(), dirs.end());
    out["layer_dirs"] = dirs;
    Json ni = Json::object();
    for (const auto& d : dirs) ni[d] = fs::exists(ckpt / d / "next_inputs.safetensors");
    out["next_inputs_present"] = ni;
    if (expect.contains("per_layer_files")) {
      Json files = Json::object();
      for (const auto& [k, v] : expect["per_layer_files"].items()) {
        auto it = FileNameMap().find(k);
        QF_CHECK(it != FileNameMap().end(), "no qforge file for ModelOpt's '{}'", k);
        bool all = !dirs.empty();
        for (const auto& d : dirs) all = all && fs::exists(ckpt / d / it->second);
        files[k] = all;
      }
      out["per_layer_files"] = files;
    }
    if (auto m = ReadManifest(ckpt); m && expect.contains("manifest")) {
      const Json full = m->ToJson();
      Json proj = Json::object();
      for (const auto& [k, v] : expect["manifest"].items()) proj[k] = full.contains(k) ? full[k] : Json(nullptr);
      out["manifest"] = proj;
    }
    return out;
  }

  const Json& layerwise() const { return layerwise_; }

 private:
  Json in_;
  fs::path root_;
  std::string method_;
  bool custom_ = false;
  bool no_data_ = false;
  Json layerwise_;
  config::QuantizeConfig config_;
};

Json OpCheckpointRun(const Json& in, const Json& expect) {
  TempDir tmp;
  CheckpointRunner runner(in, tmp.path);
  const fs::path ck = tmp.path / "ckpt";
  if (in.contains("inject_crash")) {
    // "first file write under layer_0002": an exception at the first file event of that layer.
    const std::string what = in["inject_crash"].get<std::string>();
    const size_t pos = what.find("layer_");
    QF_CHECK(pos != std::string::npos, "inject_crash '{}': no layer named", what);
    const int layer = std::stoi(what.substr(pos + 6));
    SetKillPointHandler([layer](std::string_view event, int l) {
      if (event == "layer_file" && l == layer) QF_FAIL("injected crash at the first file write of layer {}", l);
    });
    std::string error;
    try {
      runner.Run(ck);
    } catch (const Error& e) {
      error = e.what();
    }
    SetKillPointHandler(nullptr);
    QF_CHECK(!error.empty(), "inject_crash: the run finished without reaching the crash point");
    Json layout = runner.Layout(ck, expect);
    if (expect.contains("manifest") && !config::JsonEqual(layout.value("manifest", Json()), expect["manifest"])) {
      return layout;  // success is reported as a failure of the ok:false case, showing the manifest
    }
    QF_FAIL("{}; manifest after the crash: {}", error, layout.value("manifest", Json()).dump());
  }
  Json out = Json::object();
  if (in.contains("existing_manifest")) {
    // A real earlier run with the existing manifest's save_every, then its manifest rewritten as given.
    const Json& em = in["existing_manifest"];
    const RunResult full = runner.Run(ck, em.contains("save_every") ? std::optional<int64_t>(em["save_every"].get<int64_t>())
                                                                     : std::nullopt);
    auto m = ReadManifest(ck);
    QF_CHECK(m.has_value(), "the earlier run wrote no manifest");
    WriteManifest(ck, ManifestOverlay(*m, em));
    const RunResult resumed = runner.Run(ck);
    out["resume_start_layer"] = resumed.start_layer;
    out["final_weights_equal_full_run"] = resumed.weights == full.weights;
    out["resumed_amax_equals_one_shot"] = resumed.amax == full.amax && resumed.global_amax == full.global_amax;
  } else {
    const RunResult full = runner.Run(ck);
    if (expect.contains("resume_after_rewind_to")) {
      const int k = expect["resume_after_rewind_to"].get<int>();
      auto m = ReadManifest(ck);
      QF_CHECK(m.has_value(), "the run wrote no manifest");
      m->last_completed_layer = k;
      WriteManifest(ck, *m);
      TempDir fresh;  // resume into a fresh state (another process would)
      const RunResult resumed = runner.Run(ck);
      out["resume_after_rewind_to"] = resumed.start_layer - 1;
      out["resumed_amax_equals_one_shot"] = resumed.amax == full.amax && resumed.global_amax == full.global_amax;
    }
  }
  Json layout = runner.Layout(ck, expect);
  for (const auto& [k, v] : layout.items()) out[k] = v;
  return out;
}

}  // namespace

void RegisterCalibConformanceOps(config::ConformanceRegistry& registry) {
  registry.Register("layerwise_set_layer_states", OpSetLayerStates);
  registry.Register("layerwise_checkpoint_run", OpCheckpointRun);
  registry.Register("layerwise_resume_detect", OpResumeDetect);
  RegisterActHeadroomConformanceOp(registry);
}

}  // namespace qforge
