// YAML loader: yaml-cpp -> Json, schema comments, imports / $import resolution, recipes.
#include "qforge/config/yaml_loader.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <regex>
#include <sstream>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/read_limited.h"
#include "qforge/base/strings.h"
#include "qforge/base/utf8.h"
#include "qforge/config/builtin_library.h"

namespace qforge::config {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------------------
namespace {

struct SchemaRow {
  Schema schema;
  const char* name;    // short name used in messages
  const char* dotted;  // ModelOpt's dotted path in `# modelopt-schema:` comments ("" for internal schemas)
  bool is_list;
};

const SchemaRow kSchemas[] = {
    {Schema::kNone, "untyped", "", false},
    {Schema::kQuantizerAttributeConfig, "QuantizerAttributeConfig",
     "modelopt.torch.quantization.config.QuantizerAttributeConfig", false},
    {Schema::kQuantizerCfgEntry, "QuantizerCfgEntry", "modelopt.torch.quantization.config.QuantizerCfgEntry", false},
    {Schema::kQuantizerCfgList, "QuantizerCfgListConfig", "modelopt.torch.quantization.config.QuantizerCfgListConfig",
     true},
    {Schema::kQuantizeConfig, "QuantizeConfig", "modelopt.torch.quantization.config.QuantizeConfig", false},
    {Schema::kLayerPatternList, "LayerPatternList", "modelopt.recipe.config.LayerPatternList", true},
    {Schema::kPtqRecipe, "ModelOptPTQRecipe", "modelopt.recipe.config.ModelOptPTQRecipe", false},
    {Schema::kAutoQuantizeRecipe, "ModelOptAutoQuantizeRecipe", "modelopt.recipe.config.ModelOptAutoQuantizeRecipe",
     false},
    {Schema::kRecipeMetadata, "RecipeMetadataConfig", "modelopt.recipe.config.RecipeMetadataConfig", false},
    {Schema::kAutoQuantizeSection, "AutoQuantizeConfig", "", false},
    {Schema::kModuleSearchSpace, "ModuleSearchSpace", "", false},
    {Schema::kModuleSearchSpaceList, "list[ModuleSearchSpace]", "", true},
    {Schema::kQuantizeConfigList, "list[QuantizeConfig]", "", true},
    {Schema::kAttributeOrList, "QuantizerAttributeConfig | list[QuantizerAttributeConfig]", "", false},
    {Schema::kAttributeList, "list[QuantizerAttributeConfig]", "", true},
};

const SchemaRow& Row(Schema s) {
  for (const auto& r : kSchemas) {
    if (r.schema == s) return r;
  }
  QF_ASSERT(false, "schema row missing");
  return kSchemas[0];
}

// Element schema of a typed list schema (kNone for untyped lists).
Schema ElementSchema(Schema list) {
  switch (list) {
    case Schema::kQuantizerCfgList: return Schema::kQuantizerCfgEntry;
    case Schema::kLayerPatternList: return Schema::kNone;  // list[str]
    case Schema::kModuleSearchSpaceList: return Schema::kModuleSearchSpace;
    case Schema::kQuantizeConfigList: return Schema::kQuantizeConfig;
    case Schema::kAttributeList: return Schema::kQuantizerAttributeConfig;
    default: return Schema::kNone;
  }
}

// Schema of the value under `key` of a dict of schema `s`.
Schema ChildSchema(Schema s, const std::string& key) {
  switch (s) {
    case Schema::kQuantizeConfig: return key == "quant_cfg" ? Schema::kQuantizerCfgList : Schema::kNone;
    case Schema::kQuantizerCfgEntry: return key == "cfg" ? Schema::kAttributeOrList : Schema::kNone;
    case Schema::kPtqRecipe:
      if (key == "metadata") return Schema::kRecipeMetadata;
      if (key == "quantize" || key == "ptq_cfg") return Schema::kQuantizeConfig;
      return Schema::kNone;
    case Schema::kAutoQuantizeRecipe:
      if (key == "metadata") return Schema::kRecipeMetadata;
      if (key == "quantize") return Schema::kQuantizeConfig;
      if (key == "auto_quantize") return Schema::kAutoQuantizeSection;
      return Schema::kNone;
    case Schema::kAutoQuantizeSection:
      if (key == "candidate_formats") return Schema::kQuantizeConfigList;
      if (key == "module_search_spaces") return Schema::kModuleSearchSpaceList;
      if (key == "disabled_layers" || key == "cost_excluded_layers") return Schema::kLayerPatternList;
      if (key == "kv_cache") return Schema::kQuantizeConfig;
      return Schema::kNone;
    case Schema::kModuleSearchSpace:
      if (key == "module_name_patterns") return Schema::kLayerPatternList;
      if (key == "candidate_formats") return Schema::kQuantizeConfigList;
      return Schema::kNone;
    default: return Schema::kNone;
  }
}

}  // namespace

const char* SchemaName(Schema s) { return Row(s).name; }

// ---------------------------------------------------------------------------------------------------------
// YAML <-> Json
// ---------------------------------------------------------------------------------------------------------
namespace {

// Bounds on what one YAML file may expand to (ModelOpt's largest recipe has a few hundred values and 6
// levels). Values count after alias expansion; depth counts nested lists and mappings.
constexpr int64_t kMaxYamlNodes = 1'000'000;
constexpr int kMaxYamlDepth = 64;
// Most documents in one YAML text (ModelOpt files have one or two: a header and the content).
constexpr int kMaxYamlDocuments = 64;
// Longest plain scalar that is tried as a number (longer ones are strings).
constexpr size_t kMaxNumericScalarChars = 512;
// Largest YAML file read (bytes); recipes are a few KB.
constexpr uint64_t kMaxYamlFileBytes = uint64_t{16} << 20;

Json ResolvePlainScalar(const std::string& s) {
  static const std::regex kInt(R"([-+]?(0|[1-9][0-9_]*))");
  static const std::regex kHex(R"([-+]?0x[0-9a-fA-F_]+)");
  static const std::regex kFloat(R"([-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  static const char* kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const char* kFalse[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (const char* t : kTrue) {
    if (s == t) return true;
  }
  for (const char* f : kFalse) {
    if (s == f) return false;
  }
  // libstdc++'s std::regex recurses once per character: a megabyte-long scalar would overflow the stack. No
  // number is that long, so long scalars are strings.
  if (s.size() > kMaxNumericScalarChars) return s;
  std::string clean;
  for (char c : s) {
    if (c != '_') clean += c;
  }
  if (std::regex_match(s, kInt)) {
    try {
      return std::stoll(clean);
    } catch (const std::out_of_range&) {  // beyond int64 (PyYAML gives a big int; we keep the text)
      return s;
    }
  }
  if (std::regex_match(s, kHex)) {
    try {
      return std::stoll(clean, nullptr, 16);
    } catch (const std::out_of_range&) {
      return s;
    }
  }
  // strtod, not std::stod: 1e999 is inf and 1e-999 is 0 as in PyYAML, instead of std::out_of_range.
  if (s != "." && std::regex_match(s, kFloat)) return std::strtod(clean.c_str(), nullptr);
  static const char* kInf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  for (const char* t : kInf) {
    if (s == t) return HUGE_VAL;
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return -HUGE_VAL;
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::nan("");
  return s;
}

// Converts one yaml-cpp document, bounding what aliases and nesting can make of it. yaml-cpp keeps an alias
// as a shared node, so `a: &a [*a, *a]`-style documents (billion laughs) are small graphs that a tree copy
// expands exponentially, and an alias inside its own anchor is a cycle; both are cut off by the budgets.
class NodeConverter {
 public:
  explicit NodeConverter(const std::string& source) : source_(source) {}

  Json Convert(const YAML::Node& n, int depth) {
    QF_CHECK(++nodes_ <= kMaxYamlNodes,
             "{}: line {}: the document expands to more than {} values (aliases that repeat large anchors, a "
             "'billion laughs' document, or an alias inside its own anchor?)",
             source_, n.Mark().line + 1, kMaxYamlNodes);
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null: return nullptr;
      case YAML::NodeType::Scalar:
        if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") return n.Scalar();
        return ResolvePlainScalar(n.Scalar());
      case YAML::NodeType::Sequence: {
        CheckDepth(n, depth);
        Json out = Json::array();
        for (const auto& e : n) out.push_back(Convert(e, depth + 1));
        return out;
      }
      case YAML::NodeType::Map: {
        CheckDepth(n, depth);
        Json out = Json::object();
        for (const auto& kv : n) {
          QF_CHECK(kv.first.IsScalar() || kv.first.IsNull(), "{}: line {}: mapping keys must be scalars", source_,
                   kv.first.Mark().line + 1);
          std::string key = kv.first.IsNull() ? "null" : kv.first.Scalar();
          if (kv.first.Tag() != "!") {
            Json k = ResolvePlainScalar(key);
            if (k.is_number_integer()) key = std::to_string(k.get<int64_t>());
          }
          out[key] = Convert(kv.second, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  void CheckDepth(const YAML::Node& n, int depth) const {
    QF_CHECK(depth < kMaxYamlDepth, "{}: line {}: lists/mappings nest deeper than {} levels", source_,
             n.Mark().line + 1, kMaxYamlDepth);
  }
  const std::string& source_;
  int64_t nodes_ = 0;  // values produced so far, over every document of the text
};

// Counts documents without building them (yaml-cpp events are ignored).
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// yaml-cpp 0.7 never consumes a ',' outside a flow collection at the start of a document (",", "- a\n,"):
// every HandleNextDocument call returns one more empty document, so YAML::LoadAll loops forever (found by
// the recipe fuzzer). A first pass with a bounded document count refuses such text before LoadAll sees it.
void CheckDocumentCount(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  for (int docs = 0; parser.HandleNextDocument(counter);) {
    QF_CHECK(++docs <= kMaxYamlDocuments,
             "{}: more than {} YAML documents; a ',' outside [...] or {{...}} is the usual cause (yaml-cpp reads it "
             "as an endless run of empty documents)",
             source, kMaxYamlDocuments);
  }
}

std::vector<Json> ParseYamlDocuments(const std::string& text, const std::string& source) {
  // yaml-cpp passes ill-formed UTF-8 through into strings, which Json cannot serialise later (type_error 316).
  const size_t bad = FindInvalidUtf8(text);
  QF_CHECK(bad == std::string::npos, "{}: not valid UTF-8: byte 0x{:02X} at byte offset {}", source,
           static_cast<unsigned>(static_cast<unsigned char>(text[bad])), bad);
  std::vector<YAML::Node> docs;
  try {
    CheckDocumentCount(text, source);
    docs = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp 0.7 guards its recursive parser at 2000 levels (safe even under ASan at 100k levels of '[' or
    // '- '), but reports it as "bad file".
    QF_FAIL("{}: line {}: lists/mappings nest deeper than {} levels", source, e.mark.line + 1, kMaxYamlDepth);
  } catch (const YAML::Exception& e) {
    QF_FAIL("{}: YAML syntax error at line {}, column {}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  std::vector<Json> out;
  NodeConverter conv(source);
  for (const auto& d : docs) out.push_back(conv.Convert(d, 0));
  return out;
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  Json r = ResolvePlainScalar(s);
  return r.is_string();
}

std::string FloatText(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

void Emit(YAML::Emitter& out, const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: out << YAML::Null; break;
    case Json::value_t::boolean: out << (j.get<bool>() ? "true" : "false"); break;
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: out << j.get<int64_t>(); break;
    case Json::value_t::number_float: out << FloatText(j.get<double>()); break;
    case Json::value_t::string: out << YAML::DoubleQuoted << j.get<std::string>(); break;
    case Json::value_t::array: {
      bool scalars = !j.empty() && std::all_of(j.begin(), j.end(), [](const Json& e) { return e.is_number(); });
      if (scalars) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& e : j) Emit(out, e);
      out << YAML::EndSeq;
      break;
    }
    case Json::value_t::object: {
      if (j.empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (auto it = j.begin(); it != j.end(); ++it) {
        int ik;
        out << YAML::Key;
        if (ParseIntKey(it.key(), &ik) || IsIdentifier(it.key())) {
          out << it.key();
        } else {
          out << YAML::DoubleQuoted << it.key();
        }
        out << YAML::Value;
        Emit(out, it.value());
      }
      out << YAML::EndMap;
      break;
    }
    default: out << j.dump(); break;
  }
}

}  // namespace

Json ParseYaml(const std::string& text, const std::string& source) {
  auto docs = ParseYamlDocuments(text, source);
  return docs.empty() ? Json(nullptr) : docs[0];
}

std::string ToYaml(const Json& v) {
  YAML::Emitter out;
  out.SetIndent(2);
  Emit(out, v);
  return std::string(out.c_str()) + "\n";
}

// ---------------------------------------------------------------------------------------------------------
// Sources and file resolution
// ---------------------------------------------------------------------------------------------------------
namespace {

struct SourceRef {
  bool builtin = false;
  std::string path;  // builtin: relative with suffix; else filesystem path
  std::string Display() const { return builtin ? "<builtin>/" + path : path; }
  std::string Key() const {
    if (builtin) return "builtin:" + path;
    std::error_code ec;
    fs::path c = fs::weakly_canonical(path, ec);
    return ec ? path : c.string();
  }
  std::string Text() const {
    if (builtin) return FindBuiltinFile(path)->text;
    return ReadFileLimited(path, kMaxYamlFileBytes, "a YAML config file");
  }
};

bool HasYamlSuffix(const std::string& p) { return EndsWith(p, ".yml") || EndsWith(p, ".yaml"); }

fs::path FsPath(const std::string& p, const LoaderOptions& o) {
  fs::path fp(p);
  if (fp.is_absolute() || o.base_dir.empty()) return fp;
  return o.base_dir / fp;
}

std::optional<SourceRef> ProbeFs(const std::string& p, const LoaderOptions& o, bool allow_dir) {
  std::vector<std::string> cands;
  if (HasYamlSuffix(p)) {
    cands = {p};
  } else {
    cands = {p + ".yml", p + ".yaml"};
    if (allow_dir) cands.insert(cands.begin(), p);
  }
  for (const auto& c : cands) {
    fs::path fp = FsPath(c, o);
    std::error_code ec;
    if (fs::is_regular_file(fp, ec) || (allow_dir && fs::is_directory(fp, ec))) return SourceRef{false, fp.string()};
  }
  return std::nullopt;
}

std::optional<SourceRef> ProbeBuiltin(const std::string& p_in, const LoaderOptions& o, bool allow_dir) {
  if (!o.use_builtin || fs::path(p_in).is_absolute()) return std::nullopt;
  std::string p = p_in;
  if (StartsWith(p, "./")) p = p.substr(2);
  std::vector<std::string> cands;
  if (HasYamlSuffix(p)) {
    std::string stem = p.substr(0, p.rfind('.'));
    cands = {p, stem + ".yaml", stem + ".yml"};
  } else {
    cands = {p + ".yml", p + ".yaml"};
  }
  for (const auto& c : cands) {
    if (FindBuiltinFile(c)) return SourceRef{true, c};
  }
  if (allow_dir && !HasYamlSuffix(p) && BuiltinDirExists(p)) return SourceRef{true, p};
  return std::nullopt;
}

// `imports` / load_config resolution: filesystem first, then the library.
SourceRef ResolveConfigPath(const std::string& p, const LoaderOptions& o, const std::string& where) {
  QF_CHECK(!p.empty(), "{}: empty config path", where);
  if (auto s = ProbeFs(p, o, false)) return *s;
  if (auto s = ProbeBuiltin(p, o, false)) return *s;
  QF_FAIL("{}: config file '{}' not found (tried {}.yml/.yaml relative to {}{})", where, p, p,
          o.base_dir.empty() ? fs::current_path().string() : o.base_dir.string(),
          o.use_builtin ? " and in the built-in library" : "");
}

// ---------------------------------------------------------------------------------------------------------
// Loading with imports
// ---------------------------------------------------------------------------------------------------------

struct ImportedSnippet {
  Json value;
  Schema schema;
  std::string source;
};
using ImportMap = std::vector<std::pair<std::string, ImportedSnippet>>;

std::optional<Schema> ReadSchemaComment(const std::string& text, const std::string& source) {
  std::optional<Schema> found;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view t = Trim(line);
    if (t.empty()) continue;
    if (t[0] != '#') break;
    std::string_view body = Trim(t.substr(1));
    const std::string_view kTag = "modelopt-schema:";
    if (!StartsWith(body, kTag)) continue;
    std::string dotted(Trim(body.substr(kTag.size())));
    QF_CHECK(!found, "{}: more than one '# modelopt-schema:' comment", source);
    QF_CHECK(StartsWith(dotted, "modelopt."), "{}: schema '{}' must start with 'modelopt.'", source, dotted);
    bool ok = false;
    for (const auto& r : kSchemas) {
      if (*r.dotted && dotted == r.dotted) {
        found = r.schema;
        ok = true;
      }
    }
    QF_CHECK(ok, "{}: unknown schema '{}' in the modelopt-schema comment", source, dotted);
  }
  return found;
}

struct RawFile {
  Json body;
  Json imports;  // null or dict
  std::optional<Schema> schema_comment;
};

// A checkout without symlink support stores a git symlink as a one-line file holding the target path
// (ModelOpt's general/qad/nvfp4_default-kv_fp8.yaml is one). Such a stub is followed, relative to its folder.
std::string ReadFollowingSymlinkStub(const SourceRef& src) {
  SourceRef cur = src;
  for (int depth = 0; depth < 8; ++depth) {
    std::string text = cur.Text();
    std::string_view t = Trim(text);
    if (t.find('\n') != std::string_view::npos || t.find(':') != std::string_view::npos ||
        t.find('#') != std::string_view::npos || !HasYamlSuffix(std::string(t))) {
      return text;
    }
    fs::path target = (fs::path(cur.path).parent_path() / std::string(t)).lexically_normal();
    QF_CHECK(cur.builtin ? FindBuiltinFile(target.string()) != nullptr : fs::is_regular_file(target),
             "{}: symlink stub points to '{}', which does not exist", cur.Display(), std::string(t));
    cur.path = target.string();
  }
  QF_FAIL("{}: too many levels of symlink stubs", src.Display());
}

RawFile ReadRawFile(const SourceRef& src) {
  std::string text = ReadFollowingSymlinkStub(src);
  RawFile rf;
  rf.schema_comment = ReadSchemaComment(text, src.Display());
  std::vector<Json> docs = ParseYamlDocuments(text, src.Display());
  Json body;
  if (docs.empty()) {
    body = Json::object();
  } else if (docs.size() == 1) {
    body = docs[0].is_null() ? Json::object() : docs[0];
  } else if (docs.size() == 2) {
    QF_CHECK(docs[0].is_object(), "{}: the first of two YAML documents must be a mapping (header), got {}",
             src.Display(), TypeName(docs[0]));
    if (docs[1].is_object()) {
      body = docs[0];
      for (auto it = docs[1].begin(); it != docs[1].end(); ++it) body[it.key()] = it.value();
    } else if (docs[1].is_array()) {
      body = docs[1];
      if (docs[0].contains("imports")) rf.imports = docs[0]["imports"];
    } else {
      body = docs[1].is_null() ? docs[0] : docs[1];
    }
  } else {
    QF_FAIL("{}: at most two YAML documents are allowed (header + content), found {}", src.Display(), docs.size());
  }
  if (body.is_object() && body.contains("imports")) {
    rf.imports = body["imports"];
    body.erase("imports");
  }
  ConvertExMyStrings(body);
  rf.body = std::move(body);
  return rf;
}

class Loader {
 public:
  explicit Loader(const LoaderOptions& o) : opts_(o) {}

  // Loads and resolves `src`; schema = override or the file's comment.
  ImportedSnippet Load(const SourceRef& src, std::optional<Schema> schema_override, bool require_schema_comment) {
    std::string key = src.Key();
    for (const auto& k : stack_) {
      QF_CHECK(k != key, "Circular import detected: {} imports itself (chain: {} -> {})", src.Display(),
               fmt::join(stack_display_, " -> "), src.Display());
    }
    stack_.push_back(key);
    stack_display_.push_back(src.Display());
    try {
      RawFile rf = ReadRawFile(src);
      QF_CHECK(!require_schema_comment || rf.schema_comment,
               "{}: imported file must reference a snippet with a modelopt-schema comment "
               "('# modelopt-schema: modelopt....')",
               src.Display());
      Schema schema = schema_override ? *schema_override : rf.schema_comment.value_or(Schema::kNone);
      ImportMap imports = LoadImports(rf.imports, src);
      Json resolved = Resolve(rf.body, schema, imports, "");
      stack_.pop_back();
      stack_display_.pop_back();
      return {resolved, schema, src.Display()};
    } catch (...) {
      stack_.pop_back();
      stack_display_.pop_back();
      throw;
    }
  }

 private:
  ImportMap LoadImports(const Json& imports, const SourceRef& src) {
    ImportMap out;
    if (imports.is_null()) return out;
    QF_CHECK(imports.is_object(), "{}: 'imports' must be a dict {{name: path}}, got {} {}", src.Display(),
             TypeName(imports), Brief(imports));
    for (auto it = imports.begin(); it != imports.end(); ++it) {
      QF_CHECK(it.value().is_string(), "{}: imports.{}: expected a path string, got {}", src.Display(), it.key(),
               Brief(it.value()));
      // ModelOpt's wording (config_loader.py), so error_contains cases match.
      QF_CHECK(!it.value().get<std::string>().empty(), "{}: Import '{}' has an empty config path.", src.Display(),
               it.key());
      SourceRef ref = ResolveConfigPath(it.value().get<std::string>(), opts_,
                                        fmt::format("{}: imports.{}", src.Display(), it.key()));
      ImportedSnippet snip = Load(ref, std::nullopt, /*require_schema_comment=*/true);
      snip.value = NormalizeForSchema(snip.value, snip.schema, snip.source);
      out.emplace_back(it.key(), std::move(snip));
    }
    return out;
  }

  const ImportedSnippet& Lookup(const ImportMap& imports, const Json& name, const std::string& where) {
    QF_CHECK(name.is_string(), "{}: $import expects a name declared under 'imports', got {}", where, Brief(name));
    std::string n = name.get<std::string>();
    QF_CHECK(!imports.empty(), "{}: Unknown $import reference '{}': No imports are declared in this file", where, n);
    for (const auto& [k, v] : imports) {
      if (k == n) return v;
    }
    std::vector<std::string> names;
    for (const auto& [k, v] : imports) names.push_back(k);
    QF_FAIL("{}: Unknown $import reference '{}'; declared imports: {}", where, n, fmt::join(names, ", "));
  }

  // Counts `n` more values against the budget of one load (imports spliced or merged many times multiply).
  void Spend(int64_t n, const std::string& where) {
    resolved_nodes_ += n;
    QF_CHECK(resolved_nodes_ <= kMaxYamlNodes,
             "{}: resolving imports makes more than {} values (a snippet $import-ed very many times?)", where,
             kMaxYamlNodes);
  }
  static int64_t CountValues(const Json& v) {
    int64_t n = 1;
    if (v.is_structured()) {
      for (const auto& e : v) n += CountValues(e);
    }
    return n;
  }

  Json Resolve(const Json& v, Schema schema, const ImportMap& imports, const std::string& path, int depth = 0) {
    std::string where = path.empty() ? "<root>" : path;
    Spend(1, where);
    // Merged snippets nest one file's values inside another's: bound the result as a single file is.
    QF_CHECK(depth < 2 * kMaxYamlDepth, "{}: lists/mappings nest deeper than {} levels after resolving imports",
             where, 2 * kMaxYamlDepth);
    if (schema == Schema::kAttributeOrList) {
      schema = v.is_array() ? Schema::kAttributeList : Schema::kQuantizerAttributeConfig;
    }
    if (v.is_object()) {
      if (v.contains("$import")) {
        const Json& ref = v["$import"];
        std::vector<Json> names;
        if (ref.is_array()) {
          for (const auto& r : ref) names.push_back(r);
        } else {
          names.push_back(ref);
        }
        Json merged = Json::object();
        for (const auto& n : names) {
          const ImportedSnippet& snip = Lookup(imports, n, where);
          QF_CHECK(snip.value.is_object(),
                   "{}: $import '{}' must resolve to a dict to be merged here, but {} is a {} ({})", where,
                   Brief(n), snip.source, TypeName(snip.value), SchemaName(snip.schema));
          Spend(CountValues(snip.value), where);
          for (auto it = snip.value.begin(); it != snip.value.end(); ++it) merged[it.key()] = it.value();
        }
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (it.key() != "$import") merged[it.key()] = it.value();
        }
        return Resolve(merged, schema, imports, path, depth + 1);
      }
      Json out = Json::object();
      for (auto it = v.begin(); it != v.end(); ++it) {
        out[it.key()] =
            Resolve(it.value(), ChildSchema(schema, it.key()), imports, JoinPath(path, it.key()), depth + 1);
      }
      return out;
    }
    if (v.is_array()) {
      Json out = Json::array();
      Schema elem = ElementSchema(schema);
      for (size_t i = 0; i < v.size(); ++i) {
        const Json& e = v[i];
        std::string p = path + "[" + std::to_string(i) + "]";
        if (e.is_object() && e.size() == 1 && e.contains("$import") && !e["$import"].is_array()) {
          QF_CHECK(Row(schema).is_list, "{}: $import as a list element requires a typed list schema", p);
          const ImportedSnippet& snip = Lookup(imports, e["$import"], p);
          Spend(CountValues(snip.value), p);
          if (snip.schema == schema) {
            QF_CHECK(snip.value.is_array(), "{}: $import '{}' ({}) is not a list", p, Brief(e["$import"]), snip.source);
            for (const auto& x : snip.value) out.push_back(x);
          } else if (snip.schema == elem && elem != Schema::kNone) {
            out.push_back(snip.value);
          } else {
            QF_FAIL("{}: $import '{}' ({}) has schema {}; expected either the list schema {} for splicing or the "
                    "element schema {} for appending",
                    p, Brief(e["$import"]), snip.source, SchemaName(snip.schema), SchemaName(schema),
                    elem == Schema::kNone ? "str" : SchemaName(elem));
          }
          continue;
        }
        out.push_back(Resolve(e, elem, imports, p, depth + 1));
      }
      return out;
    }
    return v;
  }

  const LoaderOptions& opts_;
  int64_t resolved_nodes_ = 0;  // values Resolve produced in this load, imports included
  std::vector<std::string> stack_;
  std::vector<std::string> stack_display_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Schema validation
// ---------------------------------------------------------------------------------------------------------
namespace {

void ValidateMetadata(const Json& m, const std::string& where) {
  QF_CHECK(m.is_object(), "{}: metadata must be a dict with recipe_type and description, got {}", where, Brief(m));
  RejectUnknownKeys(m, {"recipe_type", "description"}, where, "recipe metadata");
  QF_CHECK(m.contains("recipe_type"), "{}: must contain a 'metadata.recipe_type' field", where);
  static const char* kTypes[] = {"ptq", "auto_quantize", "speculative_eagle", "speculative_dflash",
                                 "speculative_medusa"};
  bool ok = false;
  for (const char* t : kTypes) ok = ok || m["recipe_type"] == t;
  QF_CHECK(ok, "{}: metadata.recipe_type {} is not one of ptq, auto_quantize, speculative_eagle, "
           "speculative_dflash, speculative_medusa", where, Brief(m["recipe_type"]));
  if (m.contains("description")) {
    QF_CHECK(m["description"].is_string(), "{}: metadata.description must be a string", where);
  }
}

Json NormalizeMetadata(const Json& m) {
  Json out = Json::object();
  out["recipe_type"] = m["recipe_type"];
  out["description"] = m.contains("description") ? m["description"] : Json("Model optimization recipe.");
  return out;
}

std::vector<std::string> ValidatePatternList(const Json& v, const std::string& where) {
  std::vector<std::string> out;
  ParseValue(v, &out, where);
  return out;
}

Json NormalizeAutoQuantizeSection(const Json& a, bool has_baseline, const std::string& where) {
  QF_CHECK(a.is_object(), "{}: auto_quantize must be a dict, got {}", where, Brief(a));
  RejectUnknownKeys(a,
                    {"constraints", "candidate_formats", "module_search_spaces", "auto_quantize_method", "score_size",
                     "disabled_layers", "cost_excluded_layers", "kv_cache"},
                    where, "auto_quantize section");
  Json out = a;
  if (a.contains("constraints")) {
    const Json& c = a["constraints"];
    std::string cw = JoinPath(where, "constraints");
    QF_CHECK(c.is_object(), "{}: expected a dict", cw);
    RejectUnknownKeys(c, {"effective_bits", "cost_model", "cost"}, cw, "auto_quantize constraints");
    if (c.contains("effective_bits")) {
      double b;
      ParseValue(c["effective_bits"], &b, JoinPath(cw, "effective_bits"));
      CheckEffectiveBits(b, JoinPath(cw, "effective_bits"));
    }
    if (c.contains("cost_model")) {
      QF_CHECK(c["cost_model"] == "weight" || c["cost_model"] == "active_moe",
               "{}.cost_model: must be 'weight' or 'active_moe', got {}", cw, Brief(c["cost_model"]));
    }
    if (c.contains("cost")) {
      QF_CHECK(c["cost"].is_object(), "{}.cost: expected a dict", cw);
      RejectUnknownKeys(c["cost"], {"active_moe_expert_ratio"}, JoinPath(cw, "cost"), "auto_quantize cost");
      if (c["cost"].contains("active_moe_expert_ratio")) {
        double r;
        ParseValue(c["cost"]["active_moe_expert_ratio"], &r, cw + ".cost.active_moe_expert_ratio");
        CheckRatio01(r, cw + ".cost.active_moe_expert_ratio");
      }
    }
  }
  auto formats = [&](const Json& list, const std::string& w) {
    QF_CHECK(list.is_array(), "{}: expected a list of quantize configs", w);
    Json n = Json::array();
    for (size_t i = 0; i < list.size(); ++i) {
      n.push_back(QuantizeConfig::FromJson(list[i], w + "[" + std::to_string(i) + "]").ToJson(true));
    }
    return n;
  };
  bool has_formats = a.contains("candidate_formats") && !a["candidate_formats"].empty();
  bool has_spaces = a.contains("module_search_spaces") && !a["module_search_spaces"].empty();
  if (a.contains("candidate_formats")) out["candidate_formats"] = formats(a["candidate_formats"], JoinPath(where, "candidate_formats"));
  if (a.contains("module_search_spaces")) {
    const Json& ms = a["module_search_spaces"];
    std::string mw = JoinPath(where, "module_search_spaces");
    QF_CHECK(ms.is_array(), "{}: expected a list", mw);
    for (size_t i = 0; i < ms.size(); ++i) {
      std::string w = mw + "[" + std::to_string(i) + "]";
      QF_CHECK(ms[i].is_object(), "{}: expected a dict", w);
      RejectUnknownKeys(ms[i], {"module_name_patterns", "candidate_formats", "allow_no_quant"}, w, "module search space");
      QF_CHECK(ms[i].contains("module_name_patterns") && !ValidatePatternList(ms[i]["module_name_patterns"], w + ".module_name_patterns").empty(),
               "{}: module_name_patterns needs at least one pattern", w);
      QF_CHECK(ms[i].contains("candidate_formats") && ms[i]["candidate_formats"].is_array() && !ms[i]["candidate_formats"].empty(),
               "{}: candidate_formats needs at least one format", w);
      out["module_search_spaces"][i]["candidate_formats"] = formats(ms[i]["candidate_formats"], w + ".candidate_formats");
    }
  }
  if (a.contains("auto_quantize_method")) {
    QF_CHECK(a["auto_quantize_method"] == "gradient" || a["auto_quantize_method"] == "kl_div",
             "{}.auto_quantize_method: must be 'gradient' or 'kl_div', got {}", where, Brief(a["auto_quantize_method"]));
  }
  if (a.contains("score_size")) {
    int64_t s;
    ParseValue(a["score_size"], &s, JoinPath(where, "score_size"));
  }
  for (const char* k : {"disabled_layers", "cost_excluded_layers"}) {
    if (a.contains(k)) ValidatePatternList(a[k], JoinPath(where, k));
  }
  if (a.contains("kv_cache") && !a["kv_cache"].is_null()) {
    out["kv_cache"] = QuantizeConfig::FromJson(a["kv_cache"], JoinPath(where, "kv_cache")).ToJson(true);
  }
  QF_CHECK(has_formats || has_spaces, "{}: must have candidate_formats or module_search_spaces", where);
  if (has_baseline) {
    QF_CHECK(!has_formats && has_spaces,
             "{}: with a fixed 'quantize' baseline there must be no top-level candidate_formats and at least one "
             "module_search_space", where);
  } else {
    QF_CHECK(has_formats, "{}: without a 'quantize' baseline, top-level candidate_formats are required", where);
  }
  return out;
}

}  // namespace

Json NormalizeForSchema(const Json& v, Schema schema, const std::string& where) {
  switch (schema) {
    case Schema::kNone: return v;
    case Schema::kQuantizerAttributeConfig:
      return QuantizerAttributeConfig::FromJson(v, where).ToJson(true);
    case Schema::kQuantizerCfgEntry: return QuantizerCfgEntry::FromJson(v, where).ToJson(true);
    case Schema::kQuantizerCfgList: return QuantCfgToJson(NormalizeQuantCfgList(v, where), true);
    case Schema::kQuantizeConfig: return QuantizeConfig::FromJson(v, where).ToJson(true);
    case Schema::kLayerPatternList: return Json(ValidatePatternList(v, where));
    case Schema::kRecipeMetadata: ValidateMetadata(v, where); return NormalizeMetadata(v);
    case Schema::kPtqRecipe: {
      QF_CHECK(v.is_object(), "{}: a recipe must be a dict", where);
      RejectUnknownKeys(v, {"metadata", "quantize"}, where, "PTQ recipe");
      Json out = Json::object();
      QF_CHECK(v.contains("metadata"), "{}: must contain a 'metadata.recipe_type' field", where);
      ValidateMetadata(v["metadata"], JoinPath(where, "metadata"));
      out["metadata"] = NormalizeMetadata(v["metadata"]);
      QF_CHECK(v.contains("quantize"), "{}: PTQ recipe must contain 'quantize'", where);
      out["quantize"] = QuantizeConfig::FromJson(v["quantize"], "quantize").ToJson(true);
      return out;
    }
    case Schema::kAutoQuantizeRecipe: {
      QF_CHECK(v.is_object(), "{}: a recipe must be a dict", where);
      RejectUnknownKeys(v, {"metadata", "quantize", "auto_quantize"}, where, "AutoQuantize recipe");
      Json out = Json::object();
      QF_CHECK(v.contains("metadata"), "{}: must contain a 'metadata.recipe_type' field", where);
      ValidateMetadata(v["metadata"], JoinPath(where, "metadata"));
      out["metadata"] = NormalizeMetadata(v["metadata"]);
      bool baseline = v.contains("quantize") && !v["quantize"].is_null();
      if (baseline) out["quantize"] = QuantizeConfig::FromJson(v["quantize"], "quantize").ToJson(true);
      QF_CHECK(v.contains("auto_quantize"), "{}: AutoQuantize recipe must contain 'auto_quantize'", where);
      out["auto_quantize"] = NormalizeAutoQuantizeSection(v["auto_quantize"], baseline, "auto_quantize");
      return out;
    }
    default: return v;
  }
}

LoadedConfig LoadConfig(const std::string& path, std::optional<Schema> schema, const LoaderOptions& options) {
  SourceRef src = ResolveConfigPath(path, options, "load_config");
  Loader loader(options);
  ImportedSnippet s = loader.Load(src, schema, false);
  try {
    return {NormalizeForSchema(s.value, s.schema, ""), s.schema, s.source};
  } catch (const Error& e) {
    if (StartsWith(e.what(), s.source)) throw;
    throw Error(fmt::format("{}: {}", s.source, e.what()));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Recipes
// ---------------------------------------------------------------------------------------------------------
namespace {

// load_recipe resolution: the library first (after the older-name alias), then the filesystem.
SourceRef ResolveRecipePath(const std::string& name, const LoaderOptions& o) {
  if (!fs::path(name).is_absolute()) {
    if (auto s = ProbeBuiltin(name, o, true)) return *s;
    std::string alias = ResolveRecipeAlias(name);
    if (alias != name) {
      if (auto s = ProbeBuiltin(alias, o, true)) return *s;
    }
  }
  if (auto s = ProbeFs(name, o, true)) return *s;
  std::string hint;
  if (o.use_builtin) {
    std::vector<std::string> names;
    for (const auto& f : BuiltinFiles()) {
      std::string p = f.path;
      names.push_back(p.substr(0, p.rfind('.')));
    }
    std::string stem = HasYamlSuffix(name) ? name.substr(0, name.rfind('.')) : name;
    std::string close = ClosestName(stem, names);
    if (!close.empty()) hint = fmt::format("; did you mean '{}'?", close);
  }
  QF_FAIL("recipe '{}' not found: not a built-in recipe (see `qforge recipe list`) and no such file or directory "
          "(tried '{}', '{}.yml', '{}.yaml'){}",
          name, name, name, name, hint);
}

bool IsDirectory(const SourceRef& s) {
  if (s.builtin) return !HasYamlSuffix(s.path);
  std::error_code ec;
  return fs::is_directory(s.path, ec);
}

std::optional<SourceRef> DirMember(const SourceRef& dir, const std::string& stem) {
  for (const char* suf : {".yml", ".yaml"}) {
    if (dir.builtin) {
      std::string p = dir.path + "/" + stem + suf;
      if (FindBuiltinFile(p)) return SourceRef{true, p};
    } else {
      fs::path p = fs::path(dir.path) / (stem + suf);
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return SourceRef{false, p.string()};
    }
  }
  return std::nullopt;
}

// Renames seed 004's `ptq_cfg` to `quantize` (both given: error).
void AcceptPtqCfgAlias(Json& doc, const std::string& where) {
  if (!doc.is_object() || !doc.contains("ptq_cfg")) return;
  QF_CHECK(!doc.contains("quantize"), "{}: both 'quantize' and 'ptq_cfg' (its older name) are given", where);
  Json out = Json::object();
  for (auto it = doc.begin(); it != doc.end(); ++it) out[it.key() == "ptq_cfg" ? std::string("quantize") : it.key()] = it.value();
  doc = std::move(out);
}

}  // namespace

Json Recipe::Normalized() const {
  if (!is_ptq()) return resolved;
  Json out = Json::object();
  out["metadata"] = Json::object({{"recipe_type", recipe_type}, {"description", description}});
  out["quantize"] = quantize->ToJson(false);
  return out;
}

RecipeInfo PeekRecipe(const std::string& name, const LoaderOptions& options) {
  SourceRef src = ResolveRecipePath(name, options);
  RecipeInfo info;
  info.source = src.Display();
  Json meta;
  if (IsDirectory(src)) {
    auto m = DirMember(src, "metadata");
    if (!m) m = DirMember(src, "recipe");
    if (!m) return info;
    meta = ReadRawFile(*m).body;
  } else {
    Json body = ReadRawFile(src).body;
    if (!body.is_object() || !body.contains("metadata")) return info;
    meta = body["metadata"];
  }
  if (!meta.is_object() || !meta.contains("recipe_type") || !meta["recipe_type"].is_string()) return info;
  info.is_recipe = true;
  info.recipe_type = meta["recipe_type"].get<std::string>();
  info.description = meta.contains("description") && meta["description"].is_string()
                         ? meta["description"].get<std::string>()
                         : "Model optimization recipe.";
  return info;
}

namespace {

// OmegaConf-style dotlist override on a resolved document.
void ApplyOverride(Json& doc, const std::string& item) {
  size_t eq = item.find('=');
  QF_CHECK(eq != std::string::npos, "override '{}' must have the form key.path=value", item);
  std::string key(Trim(item.substr(0, eq)));
  QF_CHECK(!key.empty(), "override '{}' has an empty key", item);
  Json value = ParseYaml(item.substr(eq + 1), "override '" + item + "'");
  ConvertExMyStrings(value);
  Json* cur = &doc;
  std::vector<std::string> parts = Split(key, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    bool last = i + 1 == parts.size();
    if (cur->is_array()) {
      auto idx = ParseInt(part);
      QF_CHECK(idx && *idx >= 0 && static_cast<size_t>(*idx) < cur->size(),
               "override '{}': '{}' is not a valid index of a list of {} items", item, part, cur->size());
      cur = &(*cur)[static_cast<size_t>(*idx)];
    } else {
      if (cur->is_null()) *cur = Json::object();
      QF_CHECK(cur->is_object(), "override '{}': cannot descend into {} at '{}'", item, TypeName(*cur), part);
      if (last) {
        (*cur)[part] = value;
        return;
      }
      cur = &(*cur)[part];
    }
    if (last) *cur = value;
  }
}

}  // namespace

Recipe LoadRecipe(const std::string& name, const LoaderOptions& options, const std::vector<std::string>& overrides) {
  SourceRef src = ResolveRecipePath(name, options);
  Recipe r;
  r.name = name;
  r.source = src.Display();
  try {
    Loader loader(options);
    if (IsDirectory(src)) {
      QF_CHECK(overrides.empty(), "overrides are only supported for single-file recipes");
      auto m = DirMember(src, "metadata");
      if (!m) m = DirMember(src, "recipe");  // pre-#1094 directory layout
      QF_CHECK(m, "recipe directory must contain metadata.yml (or metadata.yaml)");
      ImportedSnippet meta = loader.Load(*m, Schema::kRecipeMetadata, false);
      ValidateMetadata(meta.value, meta.source);
      r.recipe_type = meta.value["recipe_type"].get<std::string>();
      r.description = NormalizeMetadata(meta.value)["description"].get<std::string>();
      QF_CHECK(r.recipe_type == "ptq", "recipe type '{}' is not supported for directory recipes (only ptq)",
               r.recipe_type);
      auto q = DirMember(src, "quantize");
      if (!q) q = DirMember(src, "ptq_cfg");
      QF_CHECK(q, "PTQ recipe directory must contain quantize.yml (or quantize.yaml)");
      ImportedSnippet quant = loader.Load(*q, Schema::kQuantizeConfig, false);
      r.quantize = QuantizeConfig::FromJson(quant.value, "quantize");
      r.resolved = Json::object({{"metadata", NormalizeMetadata(meta.value)}, {"quantize", quant.value}});
      return r;
    }
    RawFile raw = ReadRawFile(src);
    AcceptPtqCfgAlias(raw.body, src.Display());
    QF_CHECK(raw.body.is_object() && raw.body.contains("metadata") && raw.body["metadata"].is_object() &&
                 raw.body["metadata"].contains("recipe_type"),
             "recipe file must contain a 'metadata.recipe_type' field");
    const Json& rt = raw.body["metadata"]["recipe_type"];
    QF_CHECK(rt.is_string(), "metadata.recipe_type must be a string, got {}", Brief(rt));
    r.recipe_type = rt.get<std::string>();
    Schema schema = Schema::kNone;
    std::string section;
    if (r.recipe_type == "ptq") {
      schema = Schema::kPtqRecipe;
      section = "quantize";
    } else if (r.recipe_type == "auto_quantize") {
      schema = Schema::kAutoQuantizeRecipe;
      section = "auto_quantize";
    } else if (StartsWith(r.recipe_type, "speculative_")) {
      section = r.recipe_type.substr(std::string("speculative_").size());
    } else {
      ValidateMetadata(raw.body["metadata"], "metadata");
    }
    QF_CHECK(raw.body.contains(section), "{} recipe file must contain '{}'", ToLower(r.recipe_type) == "ptq" ? "PTQ" : r.recipe_type, section);
    ImportedSnippet loaded = loader.Load(src, schema, false);
    Json doc = loaded.value;
    AcceptPtqCfgAlias(doc, src.Display());
    for (const auto& o : overrides) ApplyOverride(doc, o);
    if (schema == Schema::kPtqRecipe) {
      // Validated once here (NormalizeForSchema would parse `quantize` a second time and repeat warnings).
      RejectUnknownKeys(doc, {"metadata", "quantize"}, "", "PTQ recipe");
      ValidateMetadata(doc["metadata"], "metadata");
    } else if (schema != Schema::kNone) {
      NormalizeForSchema(doc, schema, "");
    }
    r.resolved = doc;
    r.description = NormalizeMetadata(doc["metadata"])["description"].get<std::string>();
    if (doc.contains("quantize") && !doc["quantize"].is_null()) {
      r.quantize = QuantizeConfig::FromJson(doc["quantize"], "quantize");
    }
    return r;
  } catch (const Error& e) {
    if (StartsWith(e.what(), src.Display())) throw;
    throw Error(fmt::format("{}: {}", src.Display(), e.what()));
  }
}

YamlFileReport LoadAnyYaml(const std::string& path, const LoaderOptions& options) {
  SourceRef src{false, FsPath(path, options).string()};
  YamlFileReport rep;
  std::string text = src.Text();
  std::optional<Schema> schema;
  try {
    schema = ReadSchemaComment(text, src.Display());
  } catch (const Error&) {
    schema.reset();
  }
  if (schema) {
    rep.kind = SchemaName(*schema);
    if (*schema == Schema::kAutoQuantizeRecipe) {
      Recipe r = LoadRecipe(src.path, options);
      rep.normalized = NormalizeForSchema(r.resolved, Schema::kAutoQuantizeRecipe, src.Display());
      rep.note = "AutoQuantize recipe (validated; not a PTQ config)";
      return rep;
    }
    LoadedConfig c = LoadConfig(src.path, std::nullopt, options);
    rep.is_ptq = *schema != Schema::kLayerPatternList;
    rep.normalized = c.value;
    if (!rep.is_ptq) rep.note = "layer pattern list (AutoQuantize unit; not a PTQ config)";
    return rep;
  }
  RecipeInfo info = PeekRecipe(src.path, options);
  if (!info.is_recipe) {
    rep.kind = "unknown";
    rep.note = "no modelopt-schema comment and no metadata.recipe_type: not a ModelOpt PTQ file";
    return rep;
  }
  rep.kind = info.recipe_type + " recipe";
  if (info.recipe_type == "ptq" || info.recipe_type == "auto_quantize") {
    Recipe r = LoadRecipe(src.path, options);
    rep.is_ptq = r.is_ptq();
    rep.normalized = r.is_ptq() ? r.Normalized() : NormalizeForSchema(r.resolved, Schema::kAutoQuantizeRecipe, src.Display());
    if (!rep.is_ptq) rep.note = "AutoQuantize recipe (validated; not a PTQ config)";
    return rep;
  }
  rep.note = "recipe type '" + info.recipe_type + "' is not PTQ";
  return rep;
}

Json NormalizedContent(const std::string& name, const LoaderOptions& options) {
  RecipeInfo info = PeekRecipe(name, options);
  if (info.is_recipe) {
    Recipe r = LoadRecipe(name, options);
    return r.is_ptq() ? r.Normalized() : NormalizeForSchema(r.resolved, Schema::kAutoQuantizeRecipe, r.source);
  }
  SourceRef src = ResolveRecipePath(name, options);
  LoadedConfig c = src.builtin ? LoadConfig(src.path, std::nullopt, options) : LoadConfig(src.path, std::nullopt, options);
  QF_CHECK(c.schema != Schema::kNone, "{}: neither a recipe (metadata.recipe_type) nor a file with a modelopt-schema comment",
           c.source);
  switch (c.schema) {
    case Schema::kQuantizeConfig: return QuantizeConfig::FromJson(c.value).ToJson();
    case Schema::kQuantizerCfgList: return QuantCfgToJson(NormalizeQuantCfgList(c.value));
    case Schema::kQuantizerCfgEntry: return QuantizerCfgEntry::FromJson(c.value, "").ToJson();
    default: return c.value;
  }
}

std::vector<std::string> CheckRecipe(const std::string& name, const LoaderOptions& options) {
  std::vector<std::string> errors;
  std::optional<SourceRef> src;
  try {
    src = ResolveRecipePath(name, options);
    if (IsDirectory(*src)) {
      LoadRecipe(name, options);
      return errors;
    }
    RawFile raw = ReadRawFile(*src);
    bool is_ptq_recipe = raw.body.is_object() && raw.body.contains("metadata") && raw.body["metadata"].is_object() &&
                         raw.body["metadata"].value("recipe_type", Json()) == "ptq";
    if (!is_ptq_recipe) {
      if (src->builtin) {
        LoadRecipe(name, options);
      } else {
        LoadAnyYaml(src->path, options);
      }
      return errors;
    }
  } catch (const Error& e) {
    errors.push_back(e.what());
    return errors;
  }
  const std::string where = src->Display();
  auto collect = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      std::string m = e.what();
      errors.push_back(StartsWith(m, where) ? m : where + ": " + m);
    }
  };
  Json doc;
  collect([&] {
    Loader loader(options);
    doc = loader.Load(*src, Schema::kPtqRecipe, false).value;
    AcceptPtqCfgAlias(doc, where);
  });
  if (!errors.empty()) return errors;
  collect([&] { RejectUnknownKeys(doc, {"metadata", "quantize"}, "", "PTQ recipe"); });
  collect([&] { ValidateMetadata(doc["metadata"], "metadata"); });
  if (!doc.contains("quantize") || !doc["quantize"].is_object()) {
    errors.push_back(where + ": PTQ recipe must contain 'quantize' (a dict with quant_cfg and algorithm)");
    return errors;
  }
  const Json& q = doc["quantize"];
  collect([&] { RejectUnknownKeys(q, FieldNamesOf<QuantizeConfig>(), "quantize", "quantize config"); });
  if (q.contains("algorithm")) collect([&] { AlgorithmSpec::FromJson(q["algorithm"], "quantize.algorithm"); });
  if (q.contains("effective_bits")) {
    collect([&] {
      std::optional<double> b;
      ParseValue(q["effective_bits"], &b, "quantize.effective_bits");
      CheckEffectiveBits(b, "quantize.effective_bits");
    });
  }
  if (q.contains("quant_cfg")) {
    const Json& l = q["quant_cfg"];
    if (l.is_array()) {
      ScopedLogCapture quiet;
      for (size_t i = 0; i < l.size(); ++i) {
        collect([&] { NormalizeQuantCfgElement(l[i], "quantize.quant_cfg[" + std::to_string(i) + "]", nullptr); });
      }
    } else {
      collect([&] { NormalizeQuantCfgList(l, "quantize.quant_cfg"); });
    }
  }
  return errors;
}

}  // namespace qforge::config
