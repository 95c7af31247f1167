// `qforge recipe list|show|check`: the embedded recipe library and user recipe files.
#include <iostream>

#include "qforge/base/error.h"
#include "qforge/cli/command.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/builtin_library.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::cli {
namespace {

CommandRegistrar reg("recipe", "list, show and check quantization recipes", [](CLI::App& sub) -> RunFn {
  sub.require_subcommand(1);
  CLI::App* list = sub.add_subcommand("list", "list the built-in recipes (name and description)");
  CLI::App* show = sub.add_subcommand("show", "print a recipe's normalized quantize config");
  CLI::App* check = sub.add_subcommand("check", "validate a recipe or config file; exit 1 with located errors");
  auto name = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto as_yaml = std::make_shared<bool>(false);
  show->add_option("recipe", *name, "built-in recipe/preset name or path to a recipe file/directory")->required();
  show->add_flag("--json", *as_json, "print JSON");
  show->add_flag("--yaml", *as_yaml, "print YAML (default)");
  auto file = std::make_shared<std::string>();
  check->add_option("file", *file, "recipe, preset, unit or numerics YAML (or a built-in recipe name)")->required();
  return [list, show, check, name, as_json, file] {
    if (list->parsed()) {
      for (const auto& r : config::ListBuiltinRecipes()) {
        std::cout << r.name << "  [" << r.recipe_type << "]  " << r.description << "\n";
      }
      return 0;
    }
    if (show->parsed()) {
      config::Json n = config::NormalizedContent(*name);
      // Fields qforge adds to ModelOpt's algorithm configs: this recipe runs in qforge only.
      const config::Json* algo = n.contains("quantize") && n["quantize"].is_object() && n["quantize"].contains("algorithm")
                                     ? &n["quantize"]["algorithm"]
                                 : n.contains("algorithm") ? &n["algorithm"]
                                                           : nullptr;
      if (algo != nullptr) {
        for (const auto& f : config::QforgeExtensionFieldsSet(*algo)) {
          std::cerr << "note: algorithm field '" << f << "' is a qforge extension: ModelOpt refuses this recipe "
                       "(its configs forbid unknown fields); qforge runs it\n";
        }
      }
      if (*as_json) {
        std::cout << n.dump(2) << "\n";
      } else {
        std::cout << config::ToYaml(n);
      }
      return 0;
    }
    if (check->parsed()) {
      std::vector<std::string> errors = config::CheckRecipe(*file);
      if (errors.empty()) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(*file, ec)) {
          config::YamlFileReport rep = config::LoadAnyYaml(*file);
          std::cout << *file << ": OK (" << rep.kind << ")" << (rep.note.empty() ? "" : "; " + rep.note) << "\n";
        } else {
          config::Recipe r = config::LoadRecipe(*file);
          std::cout << r.source << ": OK (" << r.recipe_type << " recipe, "
                    << (r.quantize ? r.quantize->quant_cfg.size() : 0) << " quant_cfg entries)\n";
        }
        return 0;
      }
      for (const auto& e : errors) std::cout << "error: " << e << "\n";
      std::cout << errors.size() << " error(s)\n";
      return 1;
    }
    return 2;
  };
});

}  // namespace
}  // namespace qforge::cli
