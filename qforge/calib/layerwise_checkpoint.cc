// Layerwise checkpoint files: manifest, per-layer quantizer state, weights, kill points for tests.
#include "qforge/calib/layerwise_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/hash.h"
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
  j["config_checksum"] = config_checksum;
  j["checksum"] = Xxh3Hex(j.dump());
  return j;
}

LayerwiseManifest LayerwiseManifest::FromJson(const Json& j) {
  QF_CHECK(j.is_object(), "manifest.json: expected a JSON object");
  QF_CHECK(j.value("format", std::string()) == "qforge-layerwise-checkpoint",
           "manifest.json: key 'format' must be \"qforge-layerwise-checkpoint\"");
  if (j.contains("checksum")) {
    Json body = j;
    body.erase("checksum");
    QF_CHECK(j["checksum"].is_string() && j["checksum"].get<std::string>() == Xxh3Hex(body.dump()),
             "manifest.json: its checksum does not match its content (the file was edited or corrupted)");
  }
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
  if (j.contains("config_checksum")) get("config_checksum", m.config_checksum);
  return m;
}

ManifestRead ReadManifestState(const fs::path& dir) {
  ManifestRead r;
  const fs::path p = dir / "manifest.json";
  std::error_code ec;
  if (!fs::exists(p, ec)) return r;
  Json j;
  try {
    j = Json::parse(ReadFileToString(p));
  } catch (const std::exception& e) {
    r.state = ManifestState::kCorrupt;
    r.problem = fmt::format("'{}' is not valid JSON: {}", p.string(), e.what());
    return r;
  }
  if (j.is_object() && j.contains("checksum")) {
    Json body = j;
    body.erase("checksum");
    if (!j["checksum"].is_string() || j["checksum"].get<std::string>() != Xxh3Hex(body.dump())) {
      r.state = ManifestState::kCorrupt;
      r.problem = fmt::format("'{}': its checksum does not match its content (edited or corrupted)", p.string());
      return r;
    }
  }
  try {
    r.manifest = LayerwiseManifest::FromJson(j);
    r.state = ManifestState::kValid;
  } catch (const Error& e) {
    r.state = ManifestState::kIncomplete;
    r.problem = fmt::format("'{}': {}", p.string(), e.what());
  }
  return r;
}

std::optional<LayerwiseManifest> ReadManifest(const fs::path& dir) {
  ManifestRead r = ReadManifestState(dir);
  if (r.state == ManifestState::kMissing) return std::nullopt;
  QF_CHECK(r.state == ManifestState::kValid, "{}", r.problem);
  return r.manifest;
}

void WriteManifest(const fs::path& dir, const LayerwiseManifest& m) {
  WriteFileAtomic(dir / "manifest.json", m.ToJson().dump(2) + "\n");
}

bool IsUsableCheckpointDir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return true;
  if (!fs::is_directory(dir, ec)) return false;
  if (fs::is_empty(dir, ec)) return true;
  if (fs::exists(dir / std::string(kCheckpointLockFile), ec)) return true;
  const ManifestRead r = ReadManifestState(dir);
  return r.state == ManifestState::kValid;
}

namespace {
constexpr std::string_view kChecksumsFile = "checksums.json";
}  // namespace

void WriteLayerChecksums(const fs::path& layer_dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(layer_dir)) {
    if (e.is_regular_file() && e.path().filename() != kChecksumsFile) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  Json files = Json::object();
  for (const auto& n : names) {
    const FileDigest d = DigestFile(layer_dir / n);
    files[n] = {{"bytes", d.bytes}, {"xxh3_128", d.xxh3}};
  }
  Json j = {{"format", "qforge-checksums"}, {"algorithm", "xxh3-128"}, {"files", files}};
  WriteFileAtomic(layer_dir / std::string(kChecksumsFile), j.dump(1) + "\n");
}

void VerifyLayerChecksums(const fs::path& layer_dir) {
  const fs::path cp = layer_dir / std::string(kChecksumsFile);
  const std::string hint = "pass --restart to recalibrate from scratch";
  QF_CHECK(fs::exists(cp), "checkpoint layer '{}' has no {} (written by an older qforge, or damaged); {}",
           layer_dir.string(), kChecksumsFile, hint);
  Json j;
  try {
    j = Json::parse(ReadFileToString(cp));
  } catch (const std::exception& e) {
    QF_FAIL("'{}' is not valid JSON ({}); {}", cp.string(), e.what(), hint);
  }
  QF_CHECK(j.is_object() && j.value("format", std::string()) == "qforge-checksums" && j.contains("files") &&
               j["files"].is_object(),
           "'{}' is not a qforge checksum file; {}", cp.string(), hint);
  std::set<std::string> listed;
  for (auto it = j["files"].begin(); it != j["files"].end(); ++it) {
    const std::string& name = it.key();
    listed.insert(name);
    const fs::path f = layer_dir / name;
    QF_CHECK(name.find('/') == std::string::npos && fs::is_regular_file(f), "checkpoint file '{}' is missing; {}",
             f.string(), hint);
    const Json& rec = it.value();
    QF_CHECK(rec.is_object() && rec.contains("bytes") && rec["bytes"].is_number_unsigned() &&
                 rec.contains("xxh3_128") && rec["xxh3_128"].is_string(),
             "'{}': malformed record for '{}'; {}", cp.string(), name, hint);
    const FileDigest d = DigestFile(f);
    QF_CHECK(d.bytes == rec["bytes"].get<uint64_t>() && d.xxh3 == rec["xxh3_128"].get<std::string>(),
             "checkpoint file '{}' does not match its checksum ({} bytes, xxh3 {}; recorded {} bytes, xxh3 {}): it "
             "was modified or corrupted after it was written; {}",
             f.string(), d.bytes, d.xxh3, rec["bytes"].get<uint64_t>(), rec["xxh3_128"].get<std::string>(), hint);
  }
  for (const auto& e : fs::directory_iterator(layer_dir)) {
    const std::string n = e.path().filename().string();
    QF_CHECK(!e.is_regular_file() || n == kChecksumsFile || listed.count(n),
             "checkpoint file '{}' is not listed in '{}' (added after the layer was written); {}",
             e.path().string(), cp.string(), hint);
  }
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

std::string ModelFingerprint(const fs::path& model_dir) {
  std::map<std::string, std::string> parts;  // file name -> what identifies its content
  for (const auto& e : fs::directory_iterator(model_dir)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "model.safetensors.index.json") {
      parts[name] = Xxh3Hex(ReadFileToString(e.path()));
    } else if (e.path().extension() == ".safetensors" && e.is_regular_file()) {
      auto f = MappedFile::Open(e.path());
      const std::span<const std::byte> all = f->bytes();
      uint64_t header = 0;
      if (all.size() >= 8) {
        for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(all[static_cast<size_t>(i)]);
      }
      const size_t data_start = static_cast<size_t>(std::min<uint64_t>(all.size(), 8 + std::min<uint64_t>(header, all.size())));
      const std::span<const std::byte> data = all.subspan(data_start);
      Xxh3Hasher sample;
      constexpr size_t kPiece = 64 << 10, kPieces = 16;
      if (data.size() <= kPiece * kPieces) {
        sample.Update(data);
      } else {
        for (size_t i = 0; i < kPieces; ++i) {
          const size_t off = (data.size() - kPiece) / (kPieces - 1) * i;
          sample.Update(data.subspan(off, kPiece));
        }
      }
      parts[name] = fmt::format("{}:{}:{}", all.size(), Xxh3Hex(all.first(data_start)), sample.Hex());
    }
  }
  std::string all;
  for (const auto& [k, v] : parts) all += k + "\n" + v + "\n";
  return Xxh3Hex(all);
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
    if (q.pre_quant_scale_fused) e["pre_quant_scale_fused"] = true;
    list.push_back(std::move(e));
    if (q.has_amax && !q.amax.empty()) {
      buffers.emplace_back(q.slot.name + "._amax", Tensor::FromF32(q.amax_shape, q.amax));
    }
    if (q.global_amax) buffers.emplace_back(q.slot.name + "._global_amax", Tensor::Scalar(*q.global_amax));
    if (!q.pre_quant_scale.empty()) {
      buffers.emplace_back(q.slot.name + "._pre_quant_scale",
                           Tensor::FromF32({static_cast<int64_t>(q.pre_quant_scale.size())}, q.pre_quant_scale));
    }
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
  QF_CHECK(list.is_array(), "'{}': expected a list of quantizers", jpath.string());
  auto buffers = SafetensorsFile::Open(layer_dir / "quantizer_buffers.safetensors");
  std::map<std::string, const Json*> by_name;
  for (const auto& e : list) {
    QF_CHECK(e.is_object() && e.contains("name") && e["name"].is_string(), "'{}': every entry needs a \"name\"",
             jpath.string());
    by_name[e["name"].get<std::string>()] = &e;
  }
  auto non_finite = [&](const std::string& q, const std::string& tensor, float v) {
    QF_FAIL("'{}': quantizer '{}' has a non-finite amax ({} in '{}'); live max calibration refuses non-finite values "
            "the same way: pass --restart to recalibrate",
            buffers->path().string(), q, v, tensor);
  };
  for (auto& q : state.quantizers()) {
    if (!InLayer(model, q, layer)) continue;
    auto it = by_name.find(q.slot.name);
    QF_CHECK(it != by_name.end(), "'{}': quantizer '{}' missing", jpath.string(), q.slot.name);
    const Json& e = *it->second;
    try {
      QF_CHECK(e.at("enabled").get<bool>() == q.enabled() && e.at("label").get<std::string>() == QuantizerLabel(q),
               "'{}': quantizer '{}' was saved as {} ({}), the config makes it {} ({})", jpath.string(), q.slot.name,
               e.at("label").get<std::string>(), e.at("enabled").get<bool>() ? "enabled" : "disabled",
               QuantizerLabel(q), q.enabled() ? "enabled" : "disabled");
      q.amax.clear();
      q.amax_shape = e.at("amax_shape").get<std::vector<int64_t>>();
      q.has_amax = e.at("has_amax").get<bool>();
      q.pre_quant_scale_fused = e.value("pre_quant_scale_fused", false);
    } catch (const nlohmann::json::exception& ex) {
      QF_FAIL("'{}': quantizer '{}': {}", jpath.string(), q.slot.name, ex.what());
    }
    q.global_amax.reset();
    const std::string an = q.slot.name + "._amax";
    if (q.has_amax && buffers->Contains(an)) {
      const Tensor t = buffers->Get(an);
      QF_CHECK(t.dtype() == DType::kF32 && t.shape() == q.amax_shape, "'{}': tensor '{}' has shape {}, expected {}",
               buffers->path().string(), an, ShapeToString(t.shape()), ShapeToString(q.amax_shape));
      q.amax.assign(t.span<float>().begin(), t.span<float>().end());
      for (float v : q.amax) {
        if (!std::isfinite(v)) non_finite(q.slot.name, an, v);
      }
    }
    if (!e.at("global_amax").is_null()) {
      const std::string gn = q.slot.name + "._global_amax";
      QF_CHECK(buffers->Contains(gn), "'{}': tensor '{}' missing", buffers->path().string(), gn);
      const Tensor g = buffers->Get(gn);
      QF_CHECK(g.dtype() == DType::kF32 && g.numel() == 1, "'{}': tensor '{}' must be one f32 value, got {} {}",
               buffers->path().string(), gn, DTypeName(g.dtype()), ShapeToString(g.shape()));
      q.global_amax = g.span<float>()[0];
      if (!std::isfinite(*q.global_amax)) non_finite(q.slot.name, gn, *q.global_amax);
    }
    // The smoothing vector (smoothquant, awq): present exactly when the run that saved the layer set one.
    q.pre_quant_scale.clear();
    const std::string pn = q.slot.name + "._pre_quant_scale";
    if (buffers->Contains(pn)) {
      const Tensor t = buffers->Get(pn);
      const int64_t in = model.modules()[static_cast<size_t>(q.module)].in_features;
      QF_CHECK(t.dtype() == DType::kF32 && t.rank() == 1 && t.dim(0) == in,
               "'{}': tensor '{}' must be f32 [{}], got {} {}", buffers->path().string(), pn, in,
               DTypeName(t.dtype()), ShapeToString(t.shape()));
      q.pre_quant_scale.assign(t.span<float>().begin(), t.span<float>().end());
      for (float v : q.pre_quant_scale) {
        QF_CHECK(std::isfinite(v) && v > 0, "'{}': tensor '{}' holds {} (pre_quant_scale factors are finite and "
                 "positive): pass --restart to recalibrate", buffers->path().string(), pn, v);
      }
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

int DetectResumeLayer(const fs::path& dir, const LayerwiseManifest& now, std::string* note) {
  const ManifestRead r = ReadManifestState(dir);
  auto fresh = [&](std::string why) {
    if (note != nullptr) *note = std::move(why);
    return 0;
  };
  switch (r.state) {
    case ManifestState::kMissing:
      return 0;
    case ManifestState::kCorrupt:
    case ManifestState::kIncomplete:
      return fresh(r.problem + "; starting over from layer 0");
    case ManifestState::kValid:
      break;
  }
  const LayerwiseManifest& disk = *r.manifest;
  if (disk.last_completed_layer + 1 >= disk.num_layers) {
    return fresh(fmt::format("'{}' holds a complete run ({} of {} layers); starting over from layer 0 (use qforge "
                             "export --from to re-export it without recalibrating)",
                             dir.string(), disk.last_completed_layer + 1, disk.num_layers));
  }
  CheckManifestCompatible(dir, disk, now);
  const int start = disk.last_completed_layer + 1;
  QF_CHECK(start >= 0 && start <= now.num_layers, "'{}': last_completed_layer {} out of range",
           (dir / "manifest.json").string(), disk.last_completed_layer);
  return start;
}

}  // namespace qforge
