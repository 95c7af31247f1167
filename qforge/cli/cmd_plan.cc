// `qforge plan`: every quantizer of a model under a recipe (or --qformat), without loading weights.
#include <cstdio>

#include "qforge/cli/command.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/model/model.h"
#include "qforge/quant/plan.h"

namespace qforge::cli {
namespace {

struct PlanArgs {
  std::string model, recipe, qformat, kv_qformat = "fp8";
  bool json = false, only_enabled = false;
};

CommandRegistrar reg(
    "plan", "show which quantizers a recipe enables on a model, with the config entry that decided each",
    [](CLI::App& sub) -> RunFn {
      auto a = std::make_shared<PlanArgs>();
      sub.add_option("--model", a->model, "HF model directory")->required();
      auto* r = sub.add_option("--recipe", a->recipe, "built-in recipe name or YAML file");
      auto* q = sub.add_option("--qformat", a->qformat, "preset name (instead of --recipe)");
      r->excludes(q);
      sub.add_option("--kv-cache-qformat", a->kv_qformat, "KV preset with --qformat")->capture_default_str();
      sub.add_flag("--json", a->json, "print JSON");
      sub.add_flag("--enabled", a->only_enabled, "list enabled quantizers only (text mode)");
      return [a] {
        QF_CHECK(!a->recipe.empty() || !a->qformat.empty(), "plan needs --recipe or --qformat");
        config::QuantizeConfig cfg;
        if (!a->recipe.empty()) {
          auto rec = config::LoadRecipe(a->recipe);
          QF_CHECK(rec.quantize.has_value(), "recipe '{}' has no quantize section (type '{}')", a->recipe,
                   rec.recipe_type);
          cfg = *rec.quantize;
        } else {
          cfg = config::ResolveQformat(a->qformat, a->kv_qformat);
        }
        ModelLoadOptions lo;
        lo.load_all_layers = false;
        auto model = Model::Load(a->model, lo);
        QuantState state = QuantState::ForModel(*model);
        state.Apply(cfg.quant_cfg);
        if (a->json) {
          std::printf("%s\n", PlanToJson(*model, state).dump(2).c_str());
        } else {
          std::printf("%s", PlanToText(*model, state, a->only_enabled).c_str());
        }
        return 0;
      };
    });

}  // namespace
}  // namespace qforge::cli
