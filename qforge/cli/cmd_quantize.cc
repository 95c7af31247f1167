// `qforge quantize`: calibrate a model with a recipe (or --qformat) on text and export a ModelOpt-format
// checkpoint, in the spirit of ModelOpt's hf_ptq.py. Wiring only: config/, calib/ and export/ do the work.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/calib/calibrate.h"
#include "qforge/cli/command.h"
#include "qforge/cli/device.h"
#include "qforge/forward/device_weight_encoder.h"
#include "qforge/forward/forward_model.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/export/hf_export.h"
#include "qforge/model/model.h"
#include "qforge/model/tokenizer.h"
#include "qforge/quant/plan.h"
#include "qforge/quant/quant_state.h"

namespace qforge::cli {
namespace {

// What a staged export may hold in memory, encoded and waiting for its writer threads: a quarter of the
// available RAM, between 1 and 32 GiB (an 8B NVFP4 model's weights are 4.3 GiB).
uint64_t StagedQueueBytes() {
  const uint64_t pages = static_cast<uint64_t>(::sysconf(_SC_AVPHYS_PAGES));
  const uint64_t avail = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return std::clamp<uint64_t>(avail / 4, uint64_t{1} << 30, uint64_t{32} << 30);
}

struct QuantizeArgs {
  std::string model;
  std::string recipe;
  std::string qformat;
  bool qformat_given = false;  // --qformat appeared (possibly as '')
  std::string kv_qformat = "fp8";
  std::string algorithm;  // --algorithm: replaces the config's algorithm (empty: keep it)
  std::vector<std::string> calib;
  int64_t calib_size = 512;
  int64_t calib_seq_len = 512;
  int64_t batch_size = 4;
  std::string export_dir;
  bool overwrite = false;
  double max_shard_gb = 5.0;
  bool no_progress = false;
  // Layerwise calibration (issue 6); unset values leave the config's `layerwise` block in charge.
  bool layerwise = false;
  std::string checkpoint_dir;
  int64_t save_every = 0;
  bool save_quantizers_only = false;
  bool qdq_from_prev = false;
  bool no_qdq_from_prev = false;
  int64_t activation_memory = int64_t{2} << 30;
  int64_t device_activation_memory = LayerwiseOptions{}.device_activation_memory;
  bool restart = false;
  int64_t device_chunk_rows = LayerwiseOptions{}.device_chunk_rows;
  int64_t device_mlp_rows = LayerwiseOptions{}.device_mlp_rows;
  DeviceArgs device;
};

// Peak resident set size of this process in MiB (VmHWM), or -1 if unknown.
double PeakRssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// Flag values that would fail late or silently do something else. Reads only config.json.
void ValidateQuantizeFlags(const QuantizeArgs& a) {
  QF_CHECK(!a.qformat_given || !a.qformat.empty(),
           "--qformat is empty; give a preset name (fp8, nvfp4, nvfp4_mlp_only, ...; qforge recipe list)");
  QF_CHECK(a.batch_size >= 1, "--batch-size must be >= 1, got {}", a.batch_size);
  QF_CHECK(a.calib_size >= 1, "--calib-size must be >= 1, got {}", a.calib_size);
  QF_CHECK(a.calib_seq_len >= 1, "--calib-seq-len must be >= 1, got {}", a.calib_seq_len);
  (void)MaxShardBytesFromGiB(a.max_shard_gb, "--max-shard-size");
  const ModelConfig mc = LoadModelConfig(a.model);
  if (a.calib_seq_len > mc.max_position_embeddings) {
    LogWarning("--calib-seq-len {} is above the model's max_position_embeddings {} ({}/config.json): calibration "
               "would see positions the model was never trained on", a.calib_seq_len, mc.max_position_embeddings,
               a.model);
  }
}

int RunQuantize(const QuantizeArgs& a) {
  Timer total;
  ValidateQuantizeFlags(a);
  // Data safety first, before any work: the export never replaces an input or a directory the user did not
  // ask to replace, and the checkpoint directory never holds (or is) one of the inputs or lies in the export.
  std::vector<std::filesystem::path> inputs = {a.model};
  inputs.insert(inputs.end(), a.calib.begin(), a.calib.end());
  if (!a.checkpoint_dir.empty()) {
    CheckNotInputOrAncestor(a.checkpoint_dir, "--checkpoint-dir", inputs);
    CheckNotInputOrAncestor(a.checkpoint_dir, "--checkpoint-dir", {a.export_dir});
    inputs.push_back(a.checkpoint_dir);
  }
  const ReplaceMode replace = CheckOutputDirectory(a.export_dir, "--export", a.overwrite, inputs);
  QF_CHECK(a.recipe.empty() || a.qformat.empty(), "give either --recipe or --qformat, not both");
  config::QuantizeConfig qcfg;
  std::string what;
  if (!a.recipe.empty()) {
    config::Recipe r = config::LoadRecipe(a.recipe);
    QF_CHECK(r.is_ptq() && r.quantize.has_value(), "recipe '{}' is a '{}' recipe, not a PTQ recipe", a.recipe,
             r.recipe_type);
    qcfg = *r.quantize;
    what = fmt::format("recipe {} ({})", a.recipe, r.source);
  } else {
    const std::string q = a.qformat.empty() ? "fp8" : a.qformat;
    qcfg = config::ResolveQformat(q, a.kv_qformat);
    what = fmt::format("--qformat {} --kv-cache-qformat {}", q, a.kv_qformat);
  }
  if (!a.algorithm.empty()) {
    // A bare method name, or an inline YAML / JSON mapping (or list) in the config's `algorithm` syntax.
    const bool bare = a.algorithm.find_first_of("{[:,") == std::string::npos;
    const config::Json j = bare ? config::Json(a.algorithm) : config::ParseYaml(a.algorithm, "--algorithm");
    qcfg.algorithm = config::AlgorithmSpec::FromJson(j, "--algorithm");
    what += fmt::format(", --algorithm {}", a.algorithm);
  }
  LogInfo("quantize {} with {}", a.model, what);
  // The device first: a missing GPU or driver is reported before any work.
  std::unique_ptr<Backend> backend = a.device.Create();

  Timer t;
  const bool layerwise =
      a.layerwise || (qcfg.algorithm.configs.size() == 1 && qcfg.algorithm.configs[0].layerwise().enable);
  // Layerwise calibration loads one decoder layer at a time: no layer is converted at load. A device backend
  // uploads each layer on first use and keeps no host copy, so nothing is converted at load either.
  ModelLoadOptions mlo;
  mlo.load_all_layers = !layerwise && backend->host_accessible();
  auto model = Model::Load(a.model, mlo);
  if (!backend->host_accessible() && !layerwise) {
    // The whole model stays resident on the device: refuse early (before calibration) when it cannot.
    const int64_t need = model->num_parameters() * static_cast<int64_t>(DTypeSize(backend->weight_dtype()));
    const int64_t free_bytes = backend->MemoryInfo().first;
    QF_CHECK(need < free_bytes * 9 / 10,
             "model '{}' needs {:.1f} GiB of {} weights on {} but only {:.1f} GiB are free; use --layerwise (one "
             "decoder layer on the device at a time) or --compute-dtype bf16",
             a.model, need / double(1 << 30), DTypeName(backend->weight_dtype()), backend->name(),
             free_bytes / double(1 << 30));
  }
  ForwardModel fm(*model, *backend);
  const double load_s = t.Seconds();
  QuantState state = QuantState::ForModel(*model);
  state.Apply(qcfg.quant_cfg);
  CheckSomethingQuantized(qcfg.quant_cfg, state, what);  // before calibration: never calibrate what cannot export
  CheckExportable(*model, state);

  HfExportOptions eo;
  eo.max_shard_bytes = static_cast<uint64_t>(a.max_shard_gb * (1ull << 30));
  eo.show_progress = !a.no_progress;
  eo.replace = replace;
  eo.kernels = DefaultCpuBackend().host_kernels();  // host packing (and the device's fallback)
  // A device packs the weights it holds and sends back only the packed bytes.
  std::optional<DeviceWeightEncoder> device_encoder;
  if (!backend->host_accessible()) {
    device_encoder.emplace(fm, eo.kernels);
    eo.encoder = &*device_encoder;
  }

  CalibrateOptions co;
  co.batch_size = a.batch_size;
  co.show_progress = !a.no_progress;
  if (a.layerwise) co.layerwise.enable = true;
  if (!a.checkpoint_dir.empty()) co.layerwise.checkpoint_dir = a.checkpoint_dir;
  if (a.save_every > 0) co.layerwise.save_every = a.save_every;
  if (a.save_quantizers_only) co.layerwise.save_quantizers_only = true;
  if (a.qdq_from_prev) co.layerwise.qdq_from_prev = true;
  if (a.no_qdq_from_prev) co.layerwise.qdq_from_prev = false;
  co.layerwise.activation_memory = a.activation_memory;
  co.layerwise.device_activation_memory = a.device_activation_memory;
  co.layerwise.restart = a.restart;
  co.layerwise.device_chunk_rows = a.device_chunk_rows;
  co.layerwise.device_mlp_rows = a.device_mlp_rows;
  double tokenize_s = 0;
  auto data = [&]() {
    QF_CHECK(!a.calib.empty(), "this config calibrates activations: give calibration text with --calib FILE...");
    Timer tt;
    const Tokenizer tok = Tokenizer::FromFile(a.model);
    CheckTokenizerFitsModel(tok, a.model, *model);
    std::vector<std::filesystem::path> files(a.calib.begin(), a.calib.end());
    CalibData d = BuildCalibData(tok, files, a.calib_size, a.calib_seq_len);
    tokenize_s = tt.Seconds();
    LogInfo("calibration: {} samples of {} tokens from {} file(s)", d.samples.size(), d.seq_len, files.size());
    return d;
  };
  // Max calibration never changes a weight: once the weight amax is final the export is planned, and the
  // weights are encoded and handed to the writer threads, which write them while the forward runs (whole
  // model: all of them before the forward; layerwise: each layer's before its forward, from the weights
  // resident for it).
  // Whole model on a device: the encoding runs on a thread of its own, on a second stream of the device
  // (Backend::Fork), beside the calibration forward; the packed bytes cross and are handed to the writers
  // there, off the forward's critical path. (Declared before `staged`, which joins that thread first.)
  std::unique_ptr<Backend> encode_backend;
  std::optional<DeviceWeightEncoder> background_encoder;
  std::optional<StagedHfExport> staged;
  struct Sink final : WeightsFinalSink {
    std::function<void(const QuantState&, std::optional<int>)> fn;
    std::function<void()> done;
    void AllWeights(const QuantState& s) override { fn(s, std::nullopt); }
    void LayerWeights(const QuantState& s, int layer) override { fn(s, layer); }
    void LayerDone(int /*layer*/) override { done(); }
  } sink;
  sink.done = [&] {
    if (staged) staged->WaitLayer();
  };
  sink.fn = [&](const QuantState& s, std::optional<int> layer) {
    if (!staged) {
      HfExportOptions so = eo;
      so.max_queued_bytes = StagedQueueBytes();  // encode everything before the forward, if memory allows
      staged.emplace(*model, s, a.export_dir, so, /*calibrated=*/false, /*by_layer=*/layer.has_value());
    }
    if (device_encoder && !encode_backend) encode_backend = backend->Fork();
    if (layer) {
      // Layerwise on a device: a decoder layer's weights are encoded on the second stream while the layer's
      // forward runs (LayerDone waits before they are released). The head (-1) and layers resumed from a
      // checkpoint are not resident and are encoded here.
      if (encode_backend && *layer >= 0 && fm.IsLayerLoaded(*layer)) {
        if (!background_encoder) background_encoder.emplace(fm, eo.kernels, encode_backend.get());
        backend->Synchronize();  // the layer's uploads and weight amax are done before the other stream reads
        staged->EncodeLayerInBackground(s, *layer, *background_encoder);
      } else {
        staged->EncodeLayer(s, *layer);
      }
      return;
    }
    if (encode_backend) {  // whole model on a device
      backend->Synchronize();  // the weights' uploads and their amax are done before the other stream reads them
      background_encoder.emplace(fm, eo.kernels, encode_backend.get());
      staged->EncodeWeightsInBackground(*background_encoder);
    } else {
      staged->EncodeWeights();
    }
  };
  co.weights_final = &sink;
  const CalibrateReport cr = Calibrate(fm, state, qcfg, data, co);
  backend->Synchronize();
  const double calib_peak_rss = PeakRssMiB();
  Timer export_timer;
  std::optional<HfExportReport> staged_report;
  if (staged) {
    staged_report = staged->Finish(state);
    if (!staged_report) {  // the calibrated state asks for other tensors or scales than were staged
      LogInfo("export: the staged export does not match the calibrated state; exporting again");
      staged.reset();
    }
  }
  const HfExportReport er = staged_report ? std::move(*staged_report) : ExportHfCheckpoint(*model, state, a.export_dir, eo);
  const double export_after_calib_s = export_timer.Seconds();

  std::printf("\n== qforge quantize summary ==\n");
  std::printf("model: %s -> %s\n", a.model.c_str(), a.export_dir.c_str());
  std::printf("config: %s; algorithm: %s\n", what.c_str(),
              cr.methods.empty() ? "none" : fmt::format("{}", fmt::join(cr.methods, ", ")).c_str());
  if (cr.max.ran_forward) {
    std::printf("calibration: %lld batches, %lld tokens\n", static_cast<long long>(cr.max.batches),
                static_cast<long long>(cr.max.tokens));
  }
  if (cr.layerwise) {
    const LayerwiseReport& lr = cr.layerwise_report;
    std::printf("layerwise: layers %d..%d calibrated this run%s; checkpoint %s; peak activations %.1f MiB (spilled "
                "%.1f MiB)\n",
                lr.start_layer, model->num_layers() - 1, lr.resumed ? " (resumed)" : "",
                cr.checkpoint_dir.empty() ? "none" : cr.checkpoint_dir.c_str(),
                static_cast<double>(lr.peak_activation_bytes) / (1 << 20),
                static_cast<double>(lr.spilled_bytes) / (1 << 20));
  }
  for (const auto& e : cr.max.expert_tokens) {
    std::printf("expert tokens %s: [%s]\n", e.block.c_str(), fmt::format("{}", fmt::join(e.tokens, ", ")).c_str());
  }
  for (const auto& n : cr.max.notes) std::printf("note: %s\n", n.c_str());
  std::printf("%s", UnmatchedEntriesNote(qcfg.quant_cfg, state).c_str());
  if (!cr.max.shared_groups.empty()) {
    std::printf("shared weight global amax groups (calibration): %zu\n", cr.max.shared_groups.size());
  }
  std::printf("%s", FormatExportSummary(er).c_str());
  if (device_encoder) {
    const int bg_device = background_encoder ? background_encoder->on_device() : 0;
    const int bg_host = background_encoder ? background_encoder->on_host() : 0;
    std::printf("export encoding: %d weights on %s%s, %d on the host\n", device_encoder->on_device() + bg_device,
                std::string(backend->name()).c_str(),
                background_encoder ? fmt::format(" ({} on a second stream, beside the forward)", bg_device).c_str() : "",
                device_encoder->on_host() + bg_host);
  }
  // encode: the weights' encoding (staged: before the forward, or beside it on a device's second stream);
  // write threads: their busy time, which overlaps everything else; export: the wall time from the end of
  // calibration until the export is in place.
  std::printf("time: load %.2fs, tokenize %.2fs, weight amax %.2fs, encode %.2fs, calibration forward %.2fs, amax "
              "reduction %.3fs, write threads %.2fs, export %.2fs, total %.2fs\n",
              load_s, tokenize_s, cr.max.weight_amax_seconds, er.encode_seconds, cr.max.forward_seconds,
              cr.max.reduce_seconds, er.write_seconds, export_after_calib_s, total.Seconds());
  if (staged) {
    std::printf("export: staged (weights encoded %s, written during it); %.2fs from planning to the directory in "
                "place\n",
                cr.layerwise && background_encoder ? "during the calibration forward of their layer"
                : cr.layerwise                     ? "before the calibration forward of their layer"
                : background_encoder               ? "during the calibration forward"
                                                   : "before the calibration forward",
                er.total_seconds);
  }
  std::printf("peak RSS: %.1f MiB (%.1f MiB by the end of calibration)\n", PeakRssMiB(), calib_peak_rss);
  if (!backend->host_accessible()) {
    const MemoryStats& ms = backend->stats();
    std::printf("device %s (%s, compute %s): peak memory %.1f MiB; host->device %lld copies %.1f MiB, "
                "device->host %lld copies %.1f MiB\n",
                std::string(backend->name()).c_str(), backend->Describe().c_str(),
                std::string(ComputeDTypeName(backend->compute_dtype())).c_str(),
                ms.peak_allocated_bytes / double(1 << 20), static_cast<long long>(ms.h2d_copies),
                ms.h2d_bytes / double(1 << 20), static_cast<long long>(ms.d2h_copies), ms.d2h_bytes / double(1 << 20));
    if (encode_backend) {
      const MemoryStats& es = encode_backend->stats();
      std::printf("device %s, export encoding stream: peak memory %.1f MiB; device->host %lld copies %.1f MiB\n",
                  std::string(backend->name()).c_str(), es.peak_allocated_bytes / double(1 << 20),
                  static_cast<long long>(es.d2h_copies), es.d2h_bytes / double(1 << 20));
    }
  }
  return 0;
}

CommandRegistrar reg(
    "quantize", "calibrate a model and export a ModelOpt-format (unified HF) quantized checkpoint",
    [](CLI::App& sub) -> RunFn {
      auto a = std::make_shared<QuantizeArgs>();
      sub.add_option("--model", a->model, "HF model directory")->required();
      auto* recipe = sub.add_option("--recipe", a->recipe,
                                    "PTQ recipe: a built-in name (qforge recipe list) or a YAML file");
      auto* qformat = sub.add_option("--qformat", a->qformat,
                                     "preset name as hf_ptq.py's --qformat (fp8, nvfp4, nvfp4_mlp_only, ...)");
      recipe->excludes(qformat);
      sub.add_option("--kv-cache-qformat", a->kv_qformat, "KV-cache preset with --qformat (fp8, fp8_cast, nvfp4, none)")
          ->capture_default_str();
      sub.add_option("--algorithm", a->algorithm,
                     "calibration algorithm replacing the recipe's or preset's: a method (max, mse) or a mapping "
                     "in the config's syntax, e.g. '{method: mse, fp8_scale_sweep: true}'");
      sub.add_option("--calib", a->calib, "calibration text files, tokenized and concatenated in order");
      sub.add_option("--calib-size", a->calib_size, "number of calibration samples")->capture_default_str();
      sub.add_option("--calib-seq-len", a->calib_seq_len, "tokens per calibration sample")->capture_default_str();
      sub.add_option("--batch-size", a->batch_size, "samples per calibration forward pass")->capture_default_str();
      sub.add_option("--export", a->export_dir,
                     "output checkpoint directory (must not exist or be empty, unless --overwrite)")
          ->required();
      sub.add_flag("--overwrite", a->overwrite,
                   "replace an existing export at --export (only a directory holding config.json or "
                   "hf_quant_config.json, never the model or a parent of it; swapped in atomically)");
      sub.add_option("--max-shard-size", a->max_shard_gb, "shard size limit in GiB (1/1024 to 1024)")->capture_default_str();
      sub.add_flag("--no-progress", a->no_progress, "do not print progress lines");
      sub.add_flag("--layerwise", a->layerwise, "calibrate one decoder layer at a time (layerwise.enable)");
      sub.add_option("--checkpoint-dir", a->checkpoint_dir,
                     "layerwise checkpoint / resume directory (layerwise.checkpoint_dir)");
      sub.add_option("--save-every", a->save_every, "layerwise checkpoint commit window in layers (save_every)")
          ->check(CLI::PositiveNumber);
      sub.add_flag("--save-quantizers-only", a->save_quantizers_only,
                   "layerwise checkpoints keep only quantizer state (calib_mutates_weights: false)");
      auto* qp = sub.add_flag("--qdq-from-prev", a->qdq_from_prev,
                              "capture the next layer's inputs with this layer quantized");
      auto* nqp = sub.add_flag("--no-qdq-from-prev", a->no_qdq_from_prev,
                               "capture the next layer's inputs with this layer unquantized (max's default)");
      qp->excludes(nqp);
      sub.add_option("--activation-memory", a->activation_memory,
                     "bytes of captured activations per set kept in RAM before spilling to the checkpoint dir")
          ->capture_default_str();
      sub.add_option("--device-activation-memory", a->device_activation_memory,
                     "layerwise on a device: bytes of captured activations kept in device memory (-1: half of "
                     "what is free); the rest stay in RAM (--activation-memory) and cross to the device two "
                     "batches ahead of the compute, and back beside it")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
      sub.add_flag("--restart", a->restart, "discard an existing layerwise checkpoint and start over");
      sub.add_option("--device-chunk-rows", a->device_chunk_rows,
                     "layerwise on a device: rows of a batch (whole sequences) per attention part, and per stored "
                     "activation part of a dense model; 0: whole batches. Larger parts are faster and need more "
                     "device memory")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--device-mlp-rows", a->device_mlp_rows,
                     "layerwise on a device: at most this many rows per dense-MLP part (0: the attention part's)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      a->device.Add(sub);
      return [a, qformat] {
        a->qformat_given = qformat->count() > 0;
        return RunQuantize(*a);
      };
    });

}  // namespace
}  // namespace qforge::cli
