// Layerwise checkpoint files: manifest, per-layer quantizer state, weights, kill points for tests.
#include "qforge/calib/layerwise_checkpoint.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"

namespace qforge {

namespace fs = std::filesystem;
using config::Json;

Json LayerwiseManifest::ToJson() const {
  Json j = Json::object();
  j["format"] = "qforge-layerwise-checkpoint";
  j["last_completed_layer"] = last_completed_layer;
  j["num_layers"] = num_layers;
  j["save_every"] = save_every;
  j["save_quantizers_only"] = save_quantizers_only;
  j["calib_mutates_weights"] = !save_quantizers_only;
  j["get_qdq_activations_from_prev_layer"] = qdq_from_prev;
  j["method"] = method;
  j["config_hash"] = config_hash;
  j["calib_hash"] = calib_hash;
  j["model_fingerprint"] = model_fingerprint;
  j["qforge_version"] = qforge_version;
  return j;
}

LayerwiseManifest LayerwiseManifest::FromJson(const Json& j) {
  LayerwiseManifest m;
  auto get = [&](const char* key, auto& out) {
    QF_CHECK(j.contains(key), "manifest.json: key '{}' missing", key);
    try {
      j.at(key).get_to(out);
    } catch (const std::exception& e) {
      QF_FAIL("manifest.json: key '{}': {}", key, e.what());
    }
  };
  get("last_completed_layer", m.last_completed_layer);
  get("num_layers", m.num_layers);
  get("save_every", m.save_every);
  get("save_quantizers_only", m.save_quantizers_only);
  get("get_qdq_activations_from_prev_layer", m.qdq_from_prev);
  get("method", m.method);
  get("config_hash", m.config_hash);
  get("calib_hash", m.calib_hash);
  get("model_fingerprint", m.model_fingerprint);
  get("qforge_version", m.qforge_version);
  return m;
}

std::optional<LayerwiseManifest> ReadManifest(const fs::path& dir) {
  const fs::path p = dir / "manifest.json";
  if (!fs::exists(p)) return std::nullopt;
  Json j;
  try {
    j = Json::parse(ReadFileToString(p));
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL("'{}': not valid JSON: {}", p.string(), e.what());
  }
  try {
    return LayerwiseManifest::FromJson(j);
  } catch (const Error& e) {
    QF_FAIL("'{}': {}", p.string(), e.what());
  }
}

void WriteManifest(const fs::path& dir, const LayerwiseManifest& m) {
  WriteFileAtomic(dir / "manifest.json", m.ToJson().dump(2) + "\n");
}

void CheckManifestCompatible(const fs::path& dir, const LayerwiseManifest& disk, const LayerwiseManifest& now) {
  auto differ = [&](std::string_view key, std::string_view what, const auto& a, const auto& b) {
    if (a == b) return;
    QF_FAIL("checkpoint {} mismatch: '{}' was written with {} {}, this run has {}; point --checkpoint-dir "
            "elsewhere or pass --restart to start over",
            key, dir.string(), what, a, b);
  };
  differ("save_every", "save_every", disk.save_every, now.save_every);
  differ("num_layers", "num_layers", disk.num_layers, now.num_layers);
  differ("model", "a model whose files fingerprint to", disk.model_fingerprint, now.model_fingerprint);
  differ("config", "a quantize config hashing to", disk.config_hash, now.config_hash);
  differ("save_quantizers_only", "save_quantizers_only", disk.save_quantizers_only, now.save_quantizers_only);
  differ("get_qdq_activations_from_prev_layer", "get_qdq_activations_from_prev_layer", disk.qdq_from_prev,
         now.qdq_from_prev);
  differ("algorithm", "algorithm", disk.method, now.method);
  differ("calibration data", "calibration data (token ids and batch size) hashing to", disk.calib_hash,
         now.calib_hash);
}

std::string HashHex(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

std::string ModelFingerprint(const fs::path& model_dir) {
  std::map<std::string, std::string> parts;
  for (const auto& e : fs::directory_iterator(model_dir)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "model.safetensors.index.json") {
      parts[name] = ReadFileToString(e.path());
    } else if (e.path().extension() == ".safetensors") {
      const auto mtime = fs::last_write_time(e.path()).time_since_epoch().count();
      parts[name] = fmt::format("{}:{}", fs::file_size(e.path()), mtime);
    }
  }
  std::string all;
  for (const auto& [k, v] : parts) all += k + "\n" + v + "\n";
  return HashHex(all);
}

fs::path LayerDir(const fs::path& dir, int layer) { return dir / fmt::format("layer_{:04d}", layer); }

namespace {

bool InLayer(const Model& model, const Quantizer& q, int layer) {
  return model.modules()[static_cast<size_t>(q.module)].layer == layer;
}

}  // namespace

void SaveLayerQuantizers(const fs::path& layer_dir, const Model& model, const QuantState& state, int layer) {
  Json list = Json::array();
  std::vector<std::pair<std::string, Tensor>> buffers;
  for (const auto& q : state.quantizers()) {
    if (!InLayer(model, q, layer)) continue;
    Json e = Json::object();
    e["name"] = q.slot.name;
    e["enabled"] = q.enabled();
    e["label"] = QuantizerLabel(q);
    e["has_amax"] = q.has_amax;
    e["amax_shape"] = q.amax_shape;
    e["global_amax"] = q.global_amax ? Json(*q.global_amax) : Json(nullptr);
    list.push_back(std::move(e));
    if (q.has_amax && !q.amax.empty()) {
      buffers.emplace_back(q.slot.name + "._amax", Tensor::FromF32(q.amax_shape, q.amax));
    }
    if (q.global_amax) buffers.emplace_back(q.slot.name + "._global_amax", Tensor::Scalar(*q.global_amax));
  }
  WriteFileAtomic(layer_dir / "quantizers.json", list.dump(1) + "\n");
  KillPoint("layer_file", layer);
  WriteSafetensors(layer_dir / "quantizer_buffers.safetensors", buffers, {{"format", "qforge-quantizer-buffers"}});
  KillPoint("layer_file", layer);
}

void LoadLayerQuantizers(const fs::path& layer_dir, const Model& model, QuantState& state, int layer) {
  const fs::path jpath = layer_dir / "quantizers.json";
  Json list;
  try {
    list = Json::parse(ReadFileToString(jpath));
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL("'{}': not valid JSON: {}", jpath.string(), e.what());
  }
  auto buffers = SafetensorsFile::Open(layer_dir / "quantizer_buffers.safetensors");
  std::map<std::string, const Json*> by_name;
  for (const auto& e : list) by_name[e.at("name").get<std::string>()] = &e;
  for (auto& q : state.quantizers()) {
    if (!InLayer(model, q, layer)) continue;
    auto it = by_name.find(q.slot.name);
    QF_CHECK(it != by_name.end(), "'{}': quantizer '{}' missing", jpath.string(), q.slot.name);
    const Json& e = *it->second;
    QF_CHECK(e.at("enabled").get<bool>() == q.enabled() && e.at("label").get<std::string>() == QuantizerLabel(q),
             "'{}': quantizer '{}' was saved as {} ({}), the config makes it {} ({})", jpath.string(), q.slot.name,
             e.at("label").get<std::string>(), e.at("enabled").get<bool>() ? "enabled" : "disabled",
             QuantizerLabel(q), q.enabled() ? "enabled" : "disabled");
    q.amax.clear();
    q.amax_shape = e.at("amax_shape").get<std::vector<int64_t>>();
    q.has_amax = e.at("has_amax").get<bool>();
    q.global_amax.reset();
    const std::string an = q.slot.name + "._amax";
    if (q.has_amax && buffers->Contains(an)) {
      const Tensor t = buffers->Get(an);
      QF_CHECK(t.dtype() == DType::kF32 && t.shape() == q.amax_shape, "'{}': tensor '{}' has shape {}, expected {}",
               buffers->path().string(), an, ShapeToString(t.shape()), ShapeToString(q.amax_shape));
      q.amax.assign(t.span<float>().begin(), t.span<float>().end());
    }
    if (!e.at("global_amax").is_null()) {
      const std::string gn = q.slot.name + "._global_amax";
      QF_CHECK(buffers->Contains(gn), "'{}': tensor '{}' missing", buffers->path().string(), gn);
      q.global_amax = buffers->Get(gn).span<float>()[0];
    }
  }
}

void SaveLayerWeights(const fs::path& layer_dir, const Model& model, int layer) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int m : model.linear_modules()) {
    const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
    if (info.layer != layer) continue;
    tensors.emplace_back(info.weight_tensor, model.LinearWeight(m));
  }
  WriteSafetensors(layer_dir / "weights.safetensors", tensors, {{"format", "qforge-layer-weights"}});
  KillPoint("layer_file", layer);
}

void LoadLayerWeights(const fs::path& layer_dir, Model& model, int layer) {
  auto f = SafetensorsFile::Open(layer_dir / "weights.safetensors");
  for (int m : model.linear_modules()) {
    const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
    if (info.layer != layer) continue;
    QF_CHECK(f->Contains(info.weight_tensor), "'{}': weight '{}' missing", f->path().string(), info.weight_tensor);
    model.SetLinearWeight(m, f->Get(info.weight_tensor).Clone());
  }
}

namespace {
std::function<void(std::string_view, int)>& KillHandler() {
  static std::function<void(std::string_view, int)> h;
  return h;
}
}  // namespace

void SetKillPointHandler(std::function<void(std::string_view event, int layer)> handler) {
  KillHandler() = std::move(handler);
}

int DetectResumeLayer(const fs::path& dir, const LayerwiseManifest& now) {
  auto disk = ReadManifest(dir);
  if (!disk) return 0;
  CheckManifestCompatible(dir, *disk, now);
  const int start = disk->last_completed_layer + 1;
  QF_CHECK(start >= 0 && start <= now.num_layers, "'{}': last_completed_layer {} out of range",
           (dir / "manifest.json").string(), disk->last_completed_layer);
  return start;
}

void KillPoint(std::string_view event, int layer) {
  if (KillHandler()) KillHandler()(event, layer);
  static const char* spec = std::getenv("QF_TEST_KILL_AT");
  if (spec == nullptr) return;
  static std::mutex mu;
  static std::map<std::string, int, std::less<>> counts;
  const std::string_view s(spec);
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || s.substr(0, colon) != event) return;
  std::lock_guard lock(mu);
  const int n = ++counts[std::string(event)];
  if (n == std::atoi(std::string(s.substr(colon + 1)).c_str())) std::raise(SIGKILL);
}

}  // namespace qforge
