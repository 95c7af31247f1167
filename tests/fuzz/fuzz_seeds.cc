// Writes the seed corpora of the libFuzzer harnesses into OUT/<harness>/ from ../shared (models, text) and the
// repository's goldens and built-in recipe library, so no seed file is committed.
//   fuzz_seeds OUT
// Seeds are kept small (tensors shrunk, vocabularies trimmed): libFuzzer mutates small inputs much faster.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/config/builtin_library.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kShared = QF_SHARED_DIR;
const fs::path kSource = QF_SOURCE_DIR;

int g_written = 0;

void Seed(const fs::path& dir, const std::string& name, const std::string& content) {
  fs::create_directories(dir);
  qforge::fuzz::WriteFile(dir / name, content);
  ++g_written;
}

std::string Join(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += qforge::fuzz::kPartSeparator;
    out += p;
  }
  return out;
}

std::string Slug(const fs::path& p) {
  std::string s = p.string();
  for (const fs::path& root : {kShared, kSource}) {
    const std::string r = p.lexically_relative(root).string();
    if (!r.empty() && !r.starts_with("..")) {
      s = r;
      break;
    }
  }
  for (char& c : s) {
    if (c == '/' || c == '.') c = '_';
  }
  return s;
}

std::vector<fs::path> FilesNamed(const fs::path& root, const std::string& suffix) {
  std::vector<fs::path> out;
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && e.path().filename().string().ends_with(suffix)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A safetensors file with the names, dtypes, ranks and metadata of `src` but every dimension cut to <= 3
// and zero data: a realistic header in a few hundred bytes.
std::string ShrunkSafetensors(const fs::path& src, size_t max_tensors) {
  auto f = qforge::SafetensorsFile::Open(src);
  std::vector<std::pair<std::string, qforge::Tensor>> tensors;
  for (const auto& n : f->names()) {
    if (tensors.size() >= max_tensors) break;
    qforge::Shape s = f->Info(n).shape;
    for (auto& d : s) d = std::min<int64_t>(d, 3);
    tensors.emplace_back(n, qforge::Tensor::Zeros(f->Info(n).dtype, s));
  }
  const fs::path tmp = qforge::fuzz::ScratchDir() / "shrunk.safetensors";
  qforge::WriteSafetensors(tmp, tensors, f->metadata());
  return qforge::ReadFileToString(tmp);
}

// tokenizer.json with the BPE vocab cut to ids < `keep` and the merges whose parts and result survive.
std::string TrimmedTokenizer(json j, int64_t keep) {
  if (!j.contains("model") || !j["model"].contains("vocab") || !j["model"]["vocab"].is_object()) return j.dump();
  json vocab = json::object();
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    if (it.value().is_number_integer() && it.value().get<int64_t>() < keep) vocab[it.key()] = it.value();
  }
  json merges = json::array();
  for (const auto& m : j["model"].value("merges", json::array())) {
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) continue;
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      continue;
    }
    if (vocab.contains(a) && vocab.contains(b) && vocab.contains(a + b)) merges.push_back(m);
  }
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  return j.dump();
}

void SafetensorsSeeds(const fs::path& out) {
  std::vector<fs::path> files = FilesNamed(kShared / "data/models/tiny", ".safetensors");
  for (const auto& p : FilesNamed(kSource / "tests/golden/modelopt_export", ".safetensors")) files.push_back(p);
  for (const auto& p : files) Seed(out, Slug(p), ShrunkSafetensors(p, 24));
}

void ConfigSeeds(const fs::path& out) {
  for (const auto& p : FilesNamed(kShared / "data/models", "config.json")) {
    if (p.filename() != "config.json") continue;
    Seed(out, Slug(p), qforge::ReadFileToString(p));
  }
  for (const auto& p : FilesNamed(kSource / "tests/golden/modelopt_export", "config.json")) {
    if (p.filename() == "config.json") Seed(out, Slug(p), qforge::ReadFileToString(p));
  }
}

void TokenizerSeeds(const fs::path& out) {
  const std::string text = qforge::ReadFileToString(kShared / "data/text/janeausten/emma.txt").substr(0, 1500);
  std::map<std::string, json> bases;
  for (const auto& p : FilesNamed(kShared / "data/models", "tokenizer.json")) {
    json j = json::parse(qforge::ReadFileToString(p));
    const std::string rel = p.parent_path().lexically_relative(kShared).string();
    bases[rel] = j;
    Seed(out, Slug(p), Join({TrimmedTokenizer(j, 400), text}));
  }
  // The golden cases' component overrides (tools/make_tokenizer_goldens.py): "key" replaces, "key+" appends.
  for (const auto& p : FilesNamed(kSource / "tests/golden/tokenizer", ".json")) {
    json g = json::parse(qforge::ReadFileToString(p));
    auto base = bases.find(g.value("base", std::string()));
    if (base == bases.end()) continue;
    json j = base->second;
    for (auto it = g["overrides"].begin(); it != g["overrides"].end(); ++it) {
      std::string key = it.key();
      if (key.ends_with("+")) {
        key.pop_back();
        for (const auto& v : it.value()) j[key].push_back(v);
      } else {
        j[key] = it.value();
      }
    }
    std::string case_text;
    for (const auto& c : g["cases"]) {
      if (case_text.size() > 1000) break;
      case_text += c.value("text", std::string()) + "\n";
    }
    Seed(out, Slug(p), Join({TrimmedTokenizer(j, 400), case_text}));
  }
}

void QuantCfgSeeds(const fs::path& out) {
  int n = 0;
  for (const auto& f : qforge::config::BuiltinFiles()) {
    const std::string path = f.path;
    if (!path.starts_with("configs/ptq/")) continue;
    try {
      qforge::config::Json v = qforge::config::NormalizedContent(path.substr(0, path.rfind('.')));
      if (v.is_object() && v.contains("quant_cfg")) v = v["quant_cfg"];
      if (v.is_array()) Seed(out, "builtin_" + std::to_string(n++), v.dump(1));
    } catch (const qforge::Error&) {
    }
  }
  // The legacy shapes normalization also accepts (spec §1.2).
  Seed(out, "legacy_flat",
       R"({"*weight_quantizer": {"num_bits": [4, 3], "axis": null}, "*lm_head*": {"enable": false},
           "nn.Linear": {"*input_quantizer": {"num_bits": 8, "axis": 0}}, "default": {"enable": false}})");
  Seed(out, "legacy_single_key",
       R"([{"*": {"enable": false}}, {"*weight_quantizer": {"num_bits": [2, 1], "block_sizes": {"-1": 16,
           "type": "dynamic", "scale_bits": [4, 3]}}}, {"quantizer_name": "*[kv]_bmm_quantizer",
           "cfg": [{"num_bits": [4, 3]}, {"num_bits": 8, "enable": true}], "enable": true}])");
}

void RecipeSeeds(const fs::path& out) {
  const auto* fp8 = qforge::config::FindBuiltinFile("configs/numerics/fp8.yaml");
  const std::string snippet = fp8 ? fp8->text : "num_bits: e4m3\naxis: null\n";
  int n = 0;
  for (const auto& f : qforge::config::BuiltinFiles()) {
    const std::string path = f.path;
    if (!path.starts_with("general/ptq/") && !path.starts_with("general/auto_quantize/")) continue;
    if (n++ % 3 != 0) continue;  // a third of the library covers every shape of recipe
    Seed(out, Slug(path), Join({f.text, snippet}));
  }
  // A recipe importing the local snippet, with anchors, aliases and a multi-document snippet.
  Seed(out, "local_import", Join({R"(imports:
  fp8: snippet
metadata:
  recipe_type: ptq
  description: local import
quantize:
  algorithm: max
  quant_cfg:
    - quantizer_name: '*'
      enable: false
    - quantizer_name: '*weight_quantizer'
      cfg:
        $import: fp8
    - &inp
      quantizer_name: '*input_quantizer'
      cfg: {num_bits: e4m3, axis: null}
    - *inp
)",
                                  "# modelopt-schema: modelopt.torch.quantization.config.QuantizerAttributeConfig\n" +
                                      snippet}));
  Seed(out, "list_snippet", Join({R"(imports:
  base: snippet
metadata: {recipe_type: ptq, description: list import}
quantize:
  quant_cfg:
    - $import: base
    - {quantizer_name: '*lm_head*', enable: false}
)",
                                  R"(# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig
imports:
  fp8: configs/numerics/fp8
---
- quantizer_name: '*weight_quantizer'
  cfg:
    $import: fp8
- quantizer_name: '*input_quantizer'
  cfg:
    $import: fp8
)"}));
}

void CheckSeeds(const fs::path& out) {
  for (const auto& d : fs::directory_iterator(kSource / "tests/golden/modelopt_export")) {
    if (!d.is_directory() || !fs::exists(d.path() / "model.safetensors")) continue;
    Seed(out, d.path().filename().string(),
         Join({qforge::ReadFileToString(d.path() / "config.json"),
               fs::exists(d.path() / "hf_quant_config.json") ? qforge::ReadFileToString(d.path() / "hf_quant_config.json")
                                                             : std::string(),
               qforge::ReadFileToString(d.path() / "model.safetensors")}));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  try {
    SafetensorsSeeds(out / "safetensors_fuzzer");
    ConfigSeeds(out / "model_config_fuzzer");
    TokenizerSeeds(out / "tokenizer_fuzzer");
    QuantCfgSeeds(out / "quant_cfg_fuzzer");
    RecipeSeeds(out / "recipe_fuzzer");
    CheckSeeds(out / "check_fuzzer");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  std::printf("fuzz_seeds: wrote %d seed files under %s\n", g_written, out.string().c_str());
  return 0;
}
