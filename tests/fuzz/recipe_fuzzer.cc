// libFuzzer harness: a YAML recipe and one snippet it may `$import` (as `imports: {name: snippet}`), written
// to a scratch directory and loaded with config::LoadRecipe (YAML parse, alias/depth limits, import
// resolution, schema validation, quant_cfg normalization), then normalized and rendered back to YAML.
// Input: recipe.yaml [kPartSeparator snippet.yaml]. The built-in library stays reachable, so seeds may also
// import built-in presets and numerics.
#include <cstdint>

#include "qforge/base/error.h"
#include "qforge/config/yaml_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace qf = qforge::fuzz;
  const auto dir = qf::ScratchDir() / "recipe";
  qf::ResetDir(dir);
  const auto parts = qf::SplitParts(data, size, 2);
  qf::WriteFile(dir / "recipe.yaml", parts[0]);
  if (parts.size() > 1) qf::WriteFile(dir / "snippet.yaml", parts[1]);
  qforge::config::LoaderOptions options;
  options.base_dir = dir;
  try {
    qforge::config::Recipe r = qforge::config::LoadRecipe((dir / "recipe.yaml").string(), options);
    (void)qforge::config::ToYaml(r.Normalized());
  } catch (const qforge::Error&) {
  }
  try {
    (void)qforge::config::LoadAnyYaml((dir / "snippet.yaml").string(), options);
  } catch (const qforge::Error&) {
  }
  return 0;
}
