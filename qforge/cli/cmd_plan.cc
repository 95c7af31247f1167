// `qforge plan`: every quantizer of a model under a recipe (or --qformat), without loading weights. Refuses,
// as quantize does before calibrating, a config that quantizes nothing or that no export format can represent.
#include <fmt/format.h>

#include <cstdio>

#include "qforge/cli/command.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/export/hf_export.h"
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
      return [a, r, q] {
        QF_CHECK(r->count() > 0 || q->count() > 0, "plan needs --recipe or --qformat");
        QF_CHECK(r->count() == 0 || !a->recipe.empty(), "--recipe is empty; give a recipe name or YAML file");
        QF_CHECK(q->count() == 0 || !a->qformat.empty(),
                 "--qformat is empty; give a preset name (fp8, nvfp4, ...; qforge recipe list)");
        config::QuantizeConfig cfg;
        std::string what;
        if (!a->recipe.empty()) {
          auto rec = config::LoadRecipe(a->recipe);
          // PTQ recipes, and AutoQuantize's fixed baseline; distillation / speculative decoding are no quantization.
          const bool auto_quantize = rec.recipe_type == "auto_quantize";
          QF_CHECK(rec.is_ptq() || auto_quantize,
                   "recipe '{}' has recipe_type '{}', which is not a quantization recipe: plan and quantize run "
                   "'ptq' recipes", a->recipe, rec.recipe_type);
          QF_CHECK(rec.quantize.has_value(),
                   "recipe '{}' (recipe_type '{}') has no quantize section to plan{}", a->recipe, rec.recipe_type,
                   auto_quantize ? " (AutoQuantize's per-layer search is not run by qforge)" : "");
          cfg = *rec.quantize;
          what = fmt::format("recipe '{}'", a->recipe);
        } else {
          cfg = config::ResolveQformat(a->qformat, a->kv_qformat);
          what = fmt::format("--qformat {} --kv-cache-qformat {}", a->qformat, a->kv_qformat);
        }
        ModelLoadOptions lo;
        lo.load_all_layers = false;
        auto model = Model::Load(a->model, lo);
        QuantState state = QuantState::ForModel(*model);
        state.Apply(cfg.quant_cfg);
        CheckSomethingQuantized(cfg.quant_cfg, state, what);
        CheckExportable(*model, state);
        if (a->json) {
          std::printf("%s\n", PlanToJson(*model, state, &cfg.quant_cfg).dump(2).c_str());
        } else {
          std::printf("%s", PlanToText(*model, state, a->only_enabled, &cfg.quant_cfg).c_str());
        }
        return 0;
      };
    });

}  // namespace
}  // namespace qforge::cli
