// qforge's recipe / preset / unit / numerics library, embedded in the binary at build time from
// qforge/config/recipes/**.yaml (EmbedRecipes.cmake). Paths mirror ModelOpt's `modelopt_recipes/` layout so
// recipes written for ModelOpt resolve the same names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qforge::config {

struct BuiltinFile {
  const char* path;  // relative, with suffix, e.g. "configs/numerics/fp8.yaml"
  const char* text;
};

// Every embedded file, sorted by path (generated table).
const std::vector<BuiltinFile>& BuiltinFiles();

// Exact path lookup (with suffix); nullptr if absent.
const BuiltinFile* FindBuiltinFile(std::string_view path);
// True if some embedded file lives under `dir`/.
bool BuiltinDirExists(std::string_view dir);

// Older recipe names used by the seed documents (e.g. "general/ptq/nvfp4_experts_only-fp8_kv") mapped to the
// released names; returns `name` unchanged when it has no alias.
std::string ResolveRecipeAlias(const std::string& name);

// Recipe names (paths without suffix) under general/ and huggingface/ with their one-line descriptions
// (metadata.description, first sentence), in path order. Loads every recipe; throws on a broken one.
struct RecipeListing {
  std::string name;
  std::string recipe_type;
  std::string description;
};
std::vector<RecipeListing> ListBuiltinRecipes();

}  // namespace qforge::config
