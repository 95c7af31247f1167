// `qforge export --from DIR --model M --export OUT`: re-exports a finished layerwise checkpoint directory
// without recalibrating. Wiring only: calib/ restores the quantizer state, export/ writes the checkpoint.
#include <cstdio>
#include <string>

#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/calib/calibrate.h"
#include "qforge/cli/command.h"
#include "qforge/export/hf_export.h"
#include "qforge/forward/forward_model.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"
#include "qforge/runtime/cpu/quant_kernels.h"

namespace qforge::cli {
namespace {

struct ExportArgs {
  std::string from;
  std::string model;
  std::string export_dir;
  bool overwrite = false;
  double max_shard_gb = 5.0;
  bool no_progress = false;
};

int RunExport(const ExportArgs& a) {
  (void)MaxShardBytesFromGiB(a.max_shard_gb, "--max-shard-size");  // flag validation before any work
  const ReplaceMode replace = CheckOutputDirectory(a.export_dir, "--export", a.overwrite, {a.from, a.model});
  const config::QuantizeConfig qcfg = LoadLayerwiseCheckpointConfig(a.from);
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(a.model, lo);
  QuantState state = QuantState::ForModel(*model);
  state.Apply(qcfg.quant_cfg);
  ForwardModel fm(*model, DefaultCpuBackend());  // the head's amax needs a forward over the saved hidden states
  const CalibrateReport cr = RestoreFromLayerwiseCheckpoint(fm, state, qcfg, a.from);
  LogInfo("restored {} layers from {}", model->num_layers(), a.from);
  HfExportOptions eo;
  eo.max_shard_bytes = static_cast<uint64_t>(a.max_shard_gb * (1ull << 30));
  eo.show_progress = !a.no_progress;
  eo.replace = replace;
  eo.kernels = &cpu::HostKernels();
  const HfExportReport er = ExportHfCheckpoint(*model, state, a.export_dir, eo);
  std::printf("\n== qforge export summary ==\n");
  std::printf("checkpoint: %s (model %s) -> %s\n", a.from.c_str(), a.model.c_str(), a.export_dir.c_str());
  for (const auto& n : cr.max.notes) std::printf("note: %s\n", n.c_str());
  std::printf("%s", FormatExportSummary(er).c_str());
  return 0;
}

CommandRegistrar reg("export", "export a finished layerwise checkpoint directory without recalibrating",
                     [](CLI::App& sub) -> RunFn {
                       auto a = std::make_shared<ExportArgs>();
                       sub.add_option("--from", a->from, "layerwise checkpoint directory (--checkpoint-dir)")
                           ->required();
                       sub.add_option("--model", a->model, "the HF model directory it was calibrated on")->required();
                       sub.add_option("--export", a->export_dir,
                                      "output checkpoint directory (must not exist or be empty, unless --overwrite)")
                           ->required();
                       sub.add_flag("--overwrite", a->overwrite,
                                    "replace an existing export at --export (never the model or the checkpoint)");
                       sub.add_option("--max-shard-size", a->max_shard_gb, "shard size limit in GiB")
                           ->capture_default_str();
                       sub.add_flag("--no-progress", a->no_progress, "do not print progress lines");
                       return [a] { return RunExport(*a); };
                     });

}  // namespace
}  // namespace qforge::cli
