// YAML config loading (spec §4.2, §4.3): ModelOpt's recipe / preset / unit / numerics files, `imports` and
// `$import` composition, schema comments, multi-document snippets, ExMy strings, directory recipes.
//
// Values are converted to the generic Json model (json_util.h): YAML 1.1 plain scalars as PyYAML reads them
// (yes/no/on/off are bools), quoted scalars stay strings, integer mapping keys become "-1"-style strings.
// File resolution: for `imports`, a relative path is looked up relative to `base_dir` (the process CWD by
// default) then in the embedded library; for recipes, the embedded library first. Errors name the file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "qforge/config/json_util.h"
#include "qforge/config/quantize_config.h"

namespace qforge::config {

// Schemas a file may declare with `# modelopt-schema: <dotted.path>` (and the internal ones used for keys).
enum class Schema {
  kNone,
  kQuantizerAttributeConfig,
  kQuantizerCfgEntry,
  kQuantizerCfgList,
  kQuantizeConfig,
  kLayerPatternList,
  kPtqRecipe,
  kAutoQuantizeRecipe,
  kRecipeMetadata,
  kAutoQuantizeSection,
  kModuleSearchSpace,
  kModuleSearchSpaceList,
  kQuantizeConfigList,
  kAttributeOrList,  // `cfg` of an entry: a dict or a list of dicts
  kAttributeList,
};
const char* SchemaName(Schema s);

struct LoaderOptions {
  std::filesystem::path base_dir;  // relative paths resolve here first (empty: the current directory)
  bool use_builtin = true;         // consult the embedded library
};

struct LoadedConfig {
  Json value;  // imports resolved, ExMy converted, validated against `schema`
  Schema schema = Schema::kNone;
  std::string source;  // "<builtin>/configs/numerics/fp8.yaml" or a filesystem path
};

// load_config: loads one file (suffix optional) with `schema` (or the file's own schema comment).
LoadedConfig LoadConfig(const std::string& path, std::optional<Schema> schema = std::nullopt,
                        const LoaderOptions& options = {});

// Parses YAML text into Json (first document only; throws naming `source` on a syntax error).
Json ParseYaml(const std::string& text, const std::string& source = "<string>");
// Renders Json as block YAML that ParseYaml reads back to the same value (strings always quoted).
std::string ToYaml(const Json& v);

struct Recipe {
  std::string name;    // as requested
  std::string source;  // resolved file or directory
  std::string recipe_type;
  std::string description;
  std::optional<QuantizeConfig> quantize;  // PTQ recipes (and an AutoQuantize fixed baseline)
  Json resolved;                           // the whole document with imports resolved

  bool is_ptq() const { return recipe_type == "ptq"; }
  // {"metadata": {recipe_type, description}, "quantize": <normalized QuantizeConfig>} (PTQ), or the
  // resolved document for other recipe types.
  Json Normalized() const;
};

// load_recipe: a built-in name ("general/ptq/fp8_default-kv_fp8", older seed names accepted), a file or a
// directory (metadata.yml + quantize.yml). `ptq_cfg` (seed 004) is accepted for `quantize`.
// `overrides`: dotlist items "a.b.c=value" (value read as a YAML scalar or flow list/dict; list indices as
// numeric components) applied to the resolved document before validation; single-file recipes only.
Recipe LoadRecipe(const std::string& name_or_path, const LoaderOptions& options = {},
                  const std::vector<std::string>& overrides = {});

struct RecipeInfo {
  bool is_recipe = false;
  std::string recipe_type, description, source;
};
// Reads only metadata (no validation); is_recipe=false if the file has no metadata.recipe_type.
RecipeInfo PeekRecipe(const std::string& name_or_path, const LoaderOptions& options = {});

// The normalized content of a recipe (Recipe::Normalized) or of a preset / unit / numerics file given by
// built-in name or path (e.g. "configs/ptq/presets/model/nvfp4"): quant_cfg entries with all four keys.
Json NormalizedContent(const std::string& name_or_path, const LoaderOptions& options = {});

// Validates a PTQ recipe (name or path) and returns every error found, each located by file, section,
// entry index and key (quant_cfg entries are checked one by one so one typo does not hide the next).
// Empty when the recipe is valid. Files that are not PTQ recipes are checked with LoadAnyYaml.
std::vector<std::string> CheckRecipe(const std::string& name_or_path, const LoaderOptions& options = {});

// Any ModelOpt YAML file: recognises its kind and loads + validates PTQ ones.
struct YamlFileReport {
  std::string kind;  // schema name, "ptq recipe", "auto_quantize recipe", "speculative_* recipe", "unknown"
  bool is_ptq = false;    // PTQ recipe, preset, unit or numerics (validated and normalized)
  Json normalized;        // for PTQ kinds: the normalized content
  std::string note;       // why a non-PTQ file was not loaded as PTQ
};
YamlFileReport LoadAnyYaml(const std::string& path, const LoaderOptions& options = {});

// Validates `v` against `schema` and returns its normalized form (quant_cfg lists with all four keys,
// attribute dicts as given). Errors are prefixed with `where`.
Json NormalizeForSchema(const Json& v, Schema schema, const std::string& where);

}  // namespace qforge::config
