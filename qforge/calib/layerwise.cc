// Layerwise calibration driver and checkpoint resume.
#include "qforge/calib/layerwise.h"

#include <algorithm>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/hash.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/calib/activation_store.h"
#include "qforge/calib/layerwise_checkpoint.h"
#include "qforge/numerics/qdq.h"

namespace qforge {

namespace fs = std::filesystem;
using config::Json;

std::string_view LayerModeName(LayerMode m) {
  switch (m) {
    case LayerMode::kOriginal: return "original";
    case LayerMode::kCapture: return "capture";
    case LayerMode::kRun: return "run";
    case LayerMode::kSkip: return "skip";
  }
  return "?";
}

std::vector<LayerMode> LayerModesForStep(int num_layers, int step, bool have_collected_inputs) {
  QF_CHECK(step >= 0 && step < num_layers, "layer {} out of range (model has {} layers)", step, num_layers);
  QF_CHECK(step == 0 || have_collected_inputs, "layer {}: no collected inputs to replay (layer {} captured none)",
           step, step - 1);
  std::vector<LayerMode> modes(static_cast<size_t>(num_layers), LayerMode::kOriginal);
  for (int i = 0; i < step - 1; ++i) modes[static_cast<size_t>(i)] = LayerMode::kSkip;
  if (step > 0) modes[static_cast<size_t>(step - 1)] = LayerMode::kRun;
  modes[static_cast<size_t>(step)] = LayerMode::kCapture;
  return modes;
}

// ---------------------------------------------------------------------------------------------------------
// Fake quantization hooks (get_qdq_activations_from_prev_layer = true).

std::vector<std::pair<int, Tensor>> SetFakeQuantLayerWeights(Model& model, const QuantState& state, int layer,
                                                             const HostQuantKernels* kernels) {
  std::vector<std::pair<int, Tensor>> previous;
  for (int m : model.linear_modules()) {
    if (model.modules()[static_cast<size_t>(m)].layer != layer) continue;
    const Quantizer* q = state.Get(m, QuantizerRole::kWeight);
    if (q == nullptr || !q->enabled()) continue;
    QF_CHECK(!q->sequential(), "quantizer '{}': sequential weight quantizers are not supported", q->slot.name);
    Tensor w = model.LinearWeight(m);
    Tensor out = Tensor::Zeros(DType::kF32, w.shape());
    FakeQuant(q->spec(), w.span<float>(), w.shape(), q->amax, out.mutable_span<float>(), q->global_amax, q->slot.name,
              kernels);
    previous.emplace_back(m, std::move(w));
    model.SetLinearWeight(m, std::move(out));
  }
  return previous;
}

void RestoreLayerWeights(Model& model, std::vector<std::pair<int, Tensor>> previous, bool as_overrides) {
  for (auto& [m, w] : previous) {
    if (as_overrides) {
      model.SetLinearWeight(m, std::move(w));
    } else {
      model.RestoreLinearWeight(m);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Driver.

namespace {

std::string CalibHash(const CalibData& d, int64_t batch_size) {
  std::string s = fmt::format("bs={};seq={};n={};", batch_size, d.seq_len, d.samples.size());
  for (const auto& sample : d.samples) {
    s.append(reinterpret_cast<const char*>(sample.data()), sample.size() * sizeof(int32_t));
  }
  return HashHex(s);
}

Json ExpertTokensJson(const std::vector<ExpertTokenCounts>& counts) {
  Json j = Json::array();
  for (const auto& c : counts) j.push_back({{"layer", c.layer}, {"block", c.block}, {"tokens", c.tokens}});
  return j;
}

void ReadOutputMeta(const fs::path& layer_dir, MaxCalibReport* report) {
  const fs::path p = layer_dir / "output_meta.json";
  Json j;
  try {
    j = Json::parse(ReadFileToString(p));
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL("'{}': not valid JSON: {}", p.string(), e.what());
  }
  for (const auto& e : j.at("expert_tokens")) {
    ExpertTokenCounts c;
    c.layer = e.at("layer").get<int>();
    c.block = e.at("block").get<std::string>();
    c.tokens = e.at("tokens").get<std::vector<int64_t>>();
    report->expert_tokens.push_back(std::move(c));
  }
  for (const auto& n : j.at("notes")) report->notes.push_back(n.get<std::string>());
  report->batches = j.value("batches_total", report->batches);
  report->tokens = j.value("tokens_total", report->tokens);
}

// Removes what a previous run of the driver left in `dir` (only qforge's own names).
void ClearCheckpointDir(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "manifest.json" || name == "config.json" || name.rfind("layer_", 0) == 0 ||
        name.rfind("manifest.json.tmp", 0) == 0 || name.rfind("config.json.tmp", 0) == 0 ||
        name.rfind("activations_", 0) == 0) {
      fs::remove_all(e.path(), ec);
    }
  }
}

// Temporary files of a killed run (layer directories and files under their .tmp.<pid> names).
void RemoveStaleTemporaries(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp.") != std::string::npos || name.rfind("activations_", 0) == 0) fs::remove_all(e.path(), ec);
  }
}

// Head calibration, promotion and the final checks, shared by the driver and RestoreLayerwiseCheckpoint.
void FinishCalibration(ForwardModel& fm, QuantState& state, const ActivationStore& final_states,
                       const MaxCalibOptions& mo, MaxCalibReport* report, const LayerwiseOptions::RefineLayer& refine,
                       const LayerwiseOptions::PrepareLayer& prepare) {
  Model& model = fm.model();
  if (prepare) prepare(state, -1);
  if (report->ran_forward && HeadNeedsCalibration(model, state)) {
    MaxCalibHooks hooks(state, mo);
    for (int64_t b = 0; b < final_states.size(); ++b) (void)fm.Logits(final_states.Get(b), &hooks);
    hooks.Flush(fm.backend());
  }
  if (report->ran_forward) CheckActivationAmax(model, state);
  FinalizeSharedStateAndPromote(model, state, mo.shared_patterns, report);
  if (refine) refine(fm, state, -1, final_states);
}

bool HasMoeLayer(const Model& model) {
  for (int l = 0; l < model.num_layers(); ++l) {
    if (model.layer_modules(l).moe) return true;
  }
  return false;
}

}  // namespace

LayerwiseReport LayerwiseMaxCalibrate(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                                      const MaxCalibOptions& mo, const LayerwiseOptions& lo) {
  Model& model = fm.model();
  Backend& be = fm.backend();
  QF_CHECK(lo.save_every >= 1, "layerwise.save_every must be >= 1, got {}", lo.save_every);
  QF_CHECK(lo.activation_memory >= 0, "--activation-memory must be >= 0, got {}", lo.activation_memory);
  LayerwiseReport report;
  MaxCalibReport& mr = report.max;
  const int L = model.num_layers();
  // A refinement that reads the layer's inputs needs them even when no activation quantizer does (GPTQ and
  // AWQ of weight-only formats).
  const bool needs_forward = NeedsCalibrationData(state) || (lo.refine_layer && lo.refine_reads_inputs);
  CalibData calib;
  if (needs_forward) {
    calib = data();
    report.used_data = true;
    QF_CHECK(!calib.samples.empty(), "calibration needs data: no calibration samples");
  }
  const int64_t bs = std::max<int64_t>(1, mo.batch_size);
  const fs::path& dir = lo.checkpoint_dir;
  const bool ckpt = !dir.empty();

  LayerwiseManifest now;
  now.num_layers = L;
  now.save_every = lo.save_every;
  now.save_quantizers_only = lo.save_quantizers_only;
  now.qdq_from_prev = lo.qdq_from_prev;
  now.method = lo.method;
  now.config_hash = lo.config_hash;
  now.calib_hash = needs_forward ? CalibHash(calib, bs) : "none";
  now.model_fingerprint = ModelFingerprint(model.dir());
  now.qforge_version = std::string(kQforgeVersion);

  // Weights of the modules outside the decoder layers (lm_head) first: errors about unsupported weight
  // quantizers come before any work, as in MaxCalibrate.
  CalibrateWeightAmax(fm, state, -1);
  // Max calibration changes no weight (unless an algorithm updates them): a staged export encodes and
  // writes each layer's weights as soon as their amax is final, from the copy resident for the forward.
  WeightsFinalSink* sink = lo.weight_update || lo.refine_layer ? nullptr : mo.weights_final;
  // Weights changed by the calibration (weight_update, or a refinement that sets them: GPTQ) are Model
  // overrides that the checkpoint stores.
  const bool mutates_weights = static_cast<bool>(lo.weight_update) || lo.refine_mutates_weights;
  // The weight-side steps of the end of calibration for `layer` (idempotent: the same again after its
  // forward), then the sink.
  auto layer_weights_final = [&](int layer) {
    if (sink == nullptr) return;
    Timer ts;
    SyncMoeExperts(model, {}, state, mo.sync_expert_weight_amax, nullptr, layer,
                   mo.moe_calib_experts_ratio.has_value());
    FinalizeSharedStateAndPromote(model, state, mo.shared_patterns, nullptr);
    mr.reduce_seconds += ts.Seconds();
    ts.Reset();
    sink->LayerWeights(state, layer);
    mr.on_weights_final_seconds += ts.Seconds();
  };
  layer_weights_final(-1);
  // On a device only the current layer stays resident: the head uploads again if FinishCalibration needs it.
  if (!be.host_accessible()) {
    fm.ReleaseHead();
    fm.ReleaseEmbedding();
    be.TrimCache();
  }

  int start = 0;
  std::optional<DirectoryLock> lock;  // one run per checkpoint directory, held to the end
  if (ckpt) {
    QF_CHECK(IsUsableCheckpointDir(dir),
             "--checkpoint-dir '{}' is not empty and is not a qforge layerwise checkpoint directory (no {} or "
             "manifest.json); qforge never deletes files it did not write: choose an empty or new directory",
             dir.string(), kCheckpointLockFile);
    fs::create_directories(dir);
    lock.emplace(dir, kCheckpointLockFile, /*exclusive=*/true, "checkpoint directory");
    if (lo.restart) ClearCheckpointDir(dir);
    RemoveStaleTemporaries(dir);  // safe: with the lock held, every temporary here is a dead run's
    std::string note;
    start = DetectResumeLayer(dir, now, &note);
    if (!note.empty()) LogWarning("layerwise: {}", note);
    if (start == 0) {
      // A fresh start over an old manifest: drop it first, so a crash before the first commit cannot leave a
      // manifest that names layer directories this run is rewriting.
      std::error_code ec;
      fs::remove(dir / "manifest.json", ec);
    }
    report.resumed = start > 0;
    const std::string config_text = lo.config_json + "\n";
    WriteFileAtomic(dir / "config.json", config_text);
    now.config_checksum = Xxh3Hex(config_text);
  }
  report.start_layer = start;
  auto spill = [&](std::string_view which) {
    return ckpt ? dir / fmt::format("activations_{}.bin", which) : fs::path();
  };

  // The inputs stay for a pass after the max step: the fake-quantized one, or the refinement's.
  const bool keep_inputs = lo.qdq_from_prev || (lo.refine_layer && lo.refine_reads_inputs);
  fm.ResetRowsSeen();
  // One set of activations, updated in place layer by layer, in the compute dtype's storage (bf16 on a bf16
  // backend: exact, half the bytes). Device memory for it: half of what is free now (head and embedding
  // released), leaving room for the layer being calibrated and its workspace.
  const int64_t device_budget =
      be.host_accessible() ? 0
      : lo.device_activation_memory >= 0 ? lo.device_activation_memory
                                         : be.MemoryInfo().first / 2;
  const DType storage = ActivationStorageDType(be);
  struct ChunkRestore {
    ForwardModel& fm;
    int64_t before;
    int64_t before_mlp;
    ~ChunkRestore() {
      fm.set_max_chunk_rows(before);
      fm.set_max_mlp_rows(before_mlp);
    }
  } chunk_restore{fm, fm.max_chunk_rows(), fm.max_mlp_rows()};
  fm.set_max_chunk_rows(lo.device_chunk_rows);
  fm.set_max_mlp_rows(lo.device_mlp_rows);
  ActivationStore inputs(be, lo.activation_memory, spill("a"), device_budget, storage);
  if (start > 0) {
    LogInfo("layerwise: resuming {} at layer {} of {}", dir.string(), start, L);
    for (int l = 0; l < start; ++l) {
      const fs::path ld = LayerDir(dir, l);
      VerifyLayerChecksums(ld);
      LoadLayerQuantizers(ld, model, state, l);
      if (fs::exists(ld / "weights.safetensors")) LoadLayerWeights(ld, model, l);
      ReadOutputMeta(ld, &mr);
      layer_weights_final(l);  // (the encoder uploads the weights it needs for this alone)
    }
    if (needs_forward) {
      const fs::path ni = LayerDir(dir, start - 1) / (start == L ? "final_hidden.safetensors" : "next_inputs.safetensors");
      QF_CHECK(fs::exists(ni), "cannot resume from '{}': the manifest names layer {} as completed but '{}' is missing",
               dir.string(), start - 1, ni.string());
      inputs = ActivationStore::Load(ni, be, lo.activation_memory, spill("a"), device_budget, storage);
      mr.ran_forward = true;
    }
  } else if (needs_forward) {
    const int64_t n = static_cast<int64_t>(calib.samples.size());
    // On a device the table is not uploaded: each batch's rows come from the host table.
    struct HostRowsRestore {
      ForwardModel& fm;
      ~HostRowsRestore() { fm.set_embed_rows_from_host(false); }
    } host_rows_restore{fm};
    if (!be.host_accessible()) {
      fm.ReleaseEmbedding();
      fm.set_embed_rows_from_host(true);
    }
    // On a device a dense layer computes each batch in parts of about device_chunk_rows rows anyway (the
    // forward's chunking, for hooks whose effect does not depend on how rows are grouped). Storing the
    // activations in parts of that many whole sequences gives the same values and keeps only one part's f32
    // hidden states on the device beside the stored set, not a whole batch's. Kept whole: MoE blocks (their
    // expert GEMMs take the whole batch), passes that re-read the inputs (fake-quantized or refinement passes,
    // whose hooks may depend on the batch), and the CPU.
    int64_t part = bs;
    if (!be.host_accessible() && lo.device_chunk_rows > 0 && !keep_inputs && !HasMoeLayer(model) &&
        MaxCalibHooks(state, mo).RowLocal()) {
      part = std::clamp<int64_t>(lo.device_chunk_rows / std::max<int64_t>(calib.seq_len, 1), 1, bs);
    }
    Timer te;  // embedding is part of the calibration forward, as in MaxCalibrate
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
      const int64_t b = std::min(bs, n - b0);
      for (int64_t p0 = 0; p0 < b; p0 += part) {
        const int64_t pb = std::min(part, b - p0);
        inputs.Append(fm.Embed(BatchIds(calib, b0 + p0, pb), pb, calib.seq_len));
      }
      ++mr.batches;
      mr.tokens += b * calib.seq_len;
    }
    mr.ran_forward = true;
    if (!be.host_accessible()) fm.ReleaseEmbedding();  // (if an Embed before this call uploaded it)
    mr.forward_seconds += te.Seconds();
  }

  Progress progress("layerwise", L - start, "layers");
  std::vector<std::string> notes_before = mr.notes;
  for (int l = start; l < L; ++l) {
    const auto modes = LayerModesForStep(L, l, !needs_forward || !inputs.empty());
    for (int j = 0; j < L; ++j) {
      const LayerMode m = modes[static_cast<size_t>(j)];
      if ((m == LayerMode::kSkip || m == LayerMode::kOriginal) && (fm.IsLayerLoaded(j) || model.IsLayerLoaded(j))) {
        fm.ReleaseLayer(j);
      }
    }
    fm.LoadLayer(l);
    // The next layer's weights cross while this one computes (a device only: two layers resident).
    if (l + 1 < L) fm.PrefetchLayer(l + 1);
    if (lo.prepare_layer) lo.prepare_layer(state, l);
    Timer tw;
    CalibrateWeightAmax(fm, state, l);
    mr.weight_amax_seconds += tw.Seconds();
    layer_weights_final(l);

    Timer tf;
    const bool last = l == L - 1;
    // Layer l's outputs replace its inputs in `inputs`, batch by batch (also for the last layer: head
    // calibration and its checkpoint read them).
    const bool want_next = needs_forward;
    if (needs_forward) {
      MaxCalibHooks hooks(state, mo);
      // Each loop over the batches starts the next batches' copies from host memory (where the activations do
      // not fit on the device) before it runs this one, so that the copies overlap the layer's ops.
      inputs.PrefetchAhead(0);
      for (int64_t b = 0; b < inputs.size(); ++b) {
        if (keep_inputs) {
          HiddenStates h = inputs.Get(b);
          inputs.PrefetchAhead(b + 1);
          fm.RunLayer(l, h, &hooks);
        } else {  // max hooks do not modify: these are the unquantized outputs
          HiddenStates h = inputs.Take(b);
          inputs.PrefetchAhead(b + 1);
          fm.RunLayer(l, h, &hooks);
          inputs.Put(b, std::move(h));
        }
      }
      hooks.Flush(be);
    }
    mr.forward_seconds += tf.Seconds();

    Timer tr;
    MaxCalibReport layer_report;
    SyncMoeExperts(model, fm.rows_seen(), state, mo.sync_expert_weight_amax, &layer_report, l,
                   mo.moe_calib_experts_ratio.has_value());
    if (needs_forward) CheckActivationAmax(model, state, l);
    FinalizeSharedStateAndPromote(model, state, mo.shared_patterns, nullptr);
    mr.reduce_seconds += tr.Seconds();
    // The next layer's inputs without qdq_from_prev are the layer's unquantized outputs from its weights as
    // they were before calibrating it (ModelOpt captures them first): weights a refinement changed are set
    // aside for that forward. The weight overrides held before the refinement, to put back for it.
    const bool set_aside = want_next && keep_inputs && !lo.qdq_from_prev && lo.refine_mutates_weights;
    std::map<int, Tensor> before;
    if (set_aside) {
      for (int m : model.linear_modules(l)) {
        if (model.HasWeightOverride(m)) before[m] = model.LinearWeight(m);
      }
    }
    if (lo.refine_layer) {
      Timer tq;
      lo.refine_layer(fm, state, l, inputs);
      mr.weight_amax_seconds += tq.Seconds();
    }
    if (lo.weight_update) lo.weight_update(model, state, l);
    if (want_next && keep_inputs && !lo.qdq_from_prev) {  // the unquantized outputs
      Timer tq;
      std::map<int, Tensor> refined;
      if (set_aside) {
        for (int m : model.linear_modules(l)) {
          if (model.HasWeightOverride(m)) refined[m] = model.LinearWeight(m);
          if (auto it = before.find(m); it != before.end()) {
            model.SetLinearWeight(m, it->second);
          } else {
            model.RestoreLinearWeight(m);
          }
        }
      }
      // Read-only hooks that want nothing: the forward then adds the residual as a hooked calibration forward
      // does, so that these outputs are the whole-model passes' bit for bit.
      struct PassiveHooks final : ForwardHooks {
        bool ModifiesActivations() const override { return false; }
        bool RowLocal() const override { return true; }
        bool WantsLinearOutput(int) const override { return false; }
        InputTap LinearInputTap(Backend&, int, int64_t, int64_t) override { return {false, nullptr}; }
      } passive;
      inputs.PrefetchAhead(0);
      for (int64_t b = 0; b < inputs.size(); ++b) {
        HiddenStates h = inputs.Take(b);
        inputs.PrefetchAhead(b + 1);
        fm.RunLayer(l, h, &passive);
        inputs.Put(b, std::move(h));
      }
      for (auto& [m, w] : refined) model.SetLinearWeight(m, std::move(w));
      mr.forward_seconds += tq.Seconds();
    }

    if (want_next && lo.qdq_from_prev) {
      Timer tq;
      auto previous = SetFakeQuantLayerWeights(model, state, l, be.host_kernels());
      FakeQuantHooks fq = FakeQuantHooks::FromState(model, state);
      inputs.PrefetchAhead(0);
      for (int64_t b = 0; b < inputs.size(); ++b) {
        HiddenStates h = inputs.Take(b);
        inputs.PrefetchAhead(b + 1);
        fm.RunLayer(l, h, &fq);
        inputs.Put(b, std::move(h));
      }
      RestoreLayerWeights(model, std::move(previous), mutates_weights);
      mr.forward_seconds += tq.Seconds();
    }
    report.peak_activation_bytes = std::max(report.peak_activation_bytes, inputs.bytes());
    report.peak_device_activation_bytes = std::max(report.peak_device_activation_bytes, inputs.device_bytes());
    report.spilled_bytes = std::max(report.spilled_bytes, inputs.spilled_bytes());
    KillPoint("layer_calibrated", l);

    if (ckpt) {
      const bool boundary = (l + 1) % lo.save_every == 0 || last;
      AtomicDirectory ad(LayerDir(dir, l));
      SaveLayerQuantizers(ad.path(), model, state, l);
      if (mutates_weights && !lo.save_quantizers_only) SaveLayerWeights(ad.path(), model, l);
      Json meta = Json::object();
      meta["layer"] = l;
      Json shapes = Json::array();
      for (int64_t b = 0; b < inputs.size(); ++b) shapes.push_back({inputs.shape(b).first, inputs.shape(b).second});
      meta["output_shapes"] = shapes;
      meta["dtype"] = std::string(DTypeName(storage));
      meta["expert_tokens"] = ExpertTokensJson(layer_report.expert_tokens);
      meta["notes"] = layer_report.notes;
      meta["batches_total"] = mr.batches;
      meta["tokens_total"] = mr.tokens;
      WriteFileAtomic(ad.path() / "output_meta.json", meta.dump(1) + "\n");
      KillPoint("layer_file", l);
      if (boundary && needs_forward) {
        inputs.Save(ad.path() / (last ? "final_hidden.safetensors" : "next_inputs.safetensors"),
                  [l] { KillPoint("next_inputs_batch", l); });
        KillPoint("layer_file", l);
      }
      WriteLayerChecksums(ad.path());
      KillPoint("before_layer_commit", l);
      ad.Commit();
      if (boundary) {
        KillPoint("before_manifest", l);
        now.last_completed_layer = l;
        WriteManifest(dir, now);
        KillPoint("after_manifest", l);
      }
    }
    for (auto& c : layer_report.expert_tokens) mr.expert_tokens.push_back(std::move(c));
    for (auto& n : layer_report.notes) mr.notes.push_back(std::move(n));
    if (sink != nullptr) sink->LayerDone(l);
    fm.ReleaseLayer(l);
    ++report.layers_calibrated;
    if (lo.show_progress) progress.Add(1, fmt::format("layer {}/{}", l + 1, L));
  }
  if (lo.show_progress && start < L) progress.Finish();

  Timer tr;
  FinishCalibration(fm, state, inputs, mo, &mr, lo.refine_layer, lo.prepare_layer);
  mr.reduce_seconds += tr.Seconds();
  return report;
}

MaxCalibReport RestoreLayerwiseCheckpoint(ForwardModel& fm, QuantState& state, const fs::path& dir,
                                          const MaxCalibOptions& mo, const LayerwiseOptions::RefineLayer& refine_head,
                                          const LayerwiseOptions::PrepareLayer& prepare_head) {
  Model& model = fm.model();
  auto m = ReadManifest(dir);
  QF_CHECK(m.has_value(), "'{}' is not a layerwise checkpoint directory (no manifest.json)", dir.string());
  const int L = model.num_layers();
  QF_CHECK(m->num_layers == L, "checkpoint '{}' has {} layers, the model {}", dir.string(), m->num_layers, L);
  QF_CHECK(m->last_completed_layer == L - 1,
           "checkpoint '{}' is unfinished (last completed layer {} of {}); resume it with qforge quantize "
           "--layerwise --checkpoint-dir",
           dir.string(), m->last_completed_layer, L);
  DirectoryLock lock(dir, kCheckpointLockFile, /*exclusive=*/false, "checkpoint directory");
  if (!m->config_checksum.empty()) {
    const fs::path cj = dir / "config.json";
    QF_CHECK(fs::exists(cj) && Xxh3Hex(ReadFileToString(cj)) == m->config_checksum,
             "checkpoint '{}': config.json does not match the checksum in its manifest (edited or corrupted)",
             dir.string());
  }
  const std::string fp = ModelFingerprint(model.dir());
  QF_CHECK(m->model_fingerprint == fp,
           "checkpoint '{}' was written for another model (fingerprint {} there, {} for '{}')", dir.string(),
           m->model_fingerprint, fp, model.dir().string());
  MaxCalibReport report;
  CalibrateWeightAmax(fm, state, -1);
  fm.ResetRowsSeen();
  for (int l = 0; l < L; ++l) {
    const fs::path ld = LayerDir(dir, l);
    VerifyLayerChecksums(ld);
    LoadLayerQuantizers(ld, model, state, l);
    if (fs::exists(ld / "weights.safetensors")) LoadLayerWeights(ld, model, l);
    ReadOutputMeta(ld, &report);
  }
  const DType storage = ActivationStorageDType(fm.backend());
  ActivationStore final_states(fm.backend(), int64_t{2} << 30, {}, 0, storage);
  const fs::path ni = LayerDir(dir, L - 1) / "final_hidden.safetensors";
  if (m->calib_hash != "none") {
    QF_CHECK(fs::exists(ni), "checkpoint '{}': '{}' is missing", dir.string(), ni.string());
    final_states = ActivationStore::Load(ni, fm.backend(), int64_t{2} << 30, {}, 0, storage);
    report.ran_forward = true;
  }
  FinishCalibration(fm, state, final_states, mo, &report, refine_head, prepare_head);
  return report;
}

}  // namespace qforge
