// Lookup over the embedded recipe library and the table of older recipe names.
#include "qforge/config/builtin_library.h"

#include <algorithm>
#include <utility>

#include "qforge/base/strings.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::config {

const BuiltinFile* FindBuiltinFile(std::string_view path) {
  const auto& files = BuiltinFiles();
  for (const auto& f : files) {
    if (path == f.path) return &f;
  }
  return nullptr;
}

bool BuiltinDirExists(std::string_view dir) {
  if (dir.empty()) return false;
  std::string prefix = std::string(dir);
  if (prefix.back() != '/') prefix += '/';
  for (const auto& f : BuiltinFiles()) {
    if (StartsWith(f.path, prefix)) return true;
  }
  return false;
}

std::string ResolveRecipeAlias(const std::string& name) {
  // The seed documents named the KV part "<format>_kv"; released ModelOpt names it "kv_<format>".
  static const std::pair<const char*, const char*> kAliases[] = {
      {"general/ptq/fp8_default-fp8_kv", "general/ptq/fp8_default-kv_fp8"},
      {"general/ptq/nvfp4_default-fp8_kv", "general/ptq/nvfp4_default-kv_fp8"},
      {"general/ptq/nvfp4_experts_only-fp8_kv", "general/ptq/nvfp4_experts_only-kv_fp8"},
      {"general/ptq/nvfp4_mlp_only-fp8_kv", "general/ptq/nvfp4_mlp_only-kv_fp8"},
      {"general/ptq/nvfp4_omlp_only-fp8_kv", "general/ptq/nvfp4_omlp_only-kv_fp8"},
  };
  std::string base = name;
  std::string suffix;
  for (const char* s : {".yml", ".yaml"}) {
    if (EndsWith(base, s)) {
      suffix = s;
      base = base.substr(0, base.size() - suffix.size());
    }
  }
  for (const auto& [from, to] : kAliases) {
    if (base == from) return std::string(to) + suffix;
  }
  return name;
}

std::vector<RecipeListing> ListBuiltinRecipes() {
  std::vector<RecipeListing> out;
  for (const auto& f : BuiltinFiles()) {
    std::string p = f.path;
    if (!(StartsWith(p, "general/") || StartsWith(p, "huggingface/"))) continue;
    std::string name = p.substr(0, p.size() - 5);
    RecipeInfo info = PeekRecipe(name);
    if (!info.is_recipe) continue;
    std::string desc = info.description;
    if (auto dot = desc.find(". "); dot != std::string::npos) desc = desc.substr(0, dot + 1);
    out.push_back({name, info.recipe_type, desc});
  }
  return out;
}

}  // namespace qforge::config
