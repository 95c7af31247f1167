// Layerwise calibration: bit equality with whole-model max, checkpoint contents, activation spilling and the
// layerwise_* conformance cases.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <limits>
#include <sstream>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/calib/activation_store.h"
#include "qforge/calib/calibrate.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/layerwise_checkpoint.h"
#include "qforge/calib/layerwise_conformance.h"
#include "qforge/calib/synthetic_model.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/io/safetensors.h"
#include "qforge/numerics/half.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/host_device_backend.h"
#include "tests/support/temp_dir.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

std::string ModelDir(const char* name) { return std::string(QF_SHARED_DIR) + "/data/models/" + name; }

CalibData Samples() {
  std::vector<int32_t> ids(4 * 32);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % 1000 + 10);
  return CutCalibSamples(ids, 4, 32);
}

config::QuantizeConfig Recipe() { return *config::LoadRecipe("general/ptq/nvfp4_default-kv_fp8").quantize; }

MaxCalibOptions MaxOptions(const config::QuantizeConfig& c) {
  MaxCalibOptions mo;
  mo.batch_size = 2;
  mo.show_progress = false;
  mo.shared_patterns = config::ResolveSharedPatterns(c.algorithm.configs[0].As<config::MaxCalibConfig>()->shared_states);
  return mo;
}

// A fresh state of `model` with the recipe applied (uncalibrated).
QuantState Fresh(Model& model, const config::QuantizeConfig& c) {
  QuantState s = QuantState::ForModel(model);
  s.Apply(c.quant_cfg);
  return s;
}

// Whole-model max calibration on the CPU backend: the reference the device paths must equal.
QuantState CpuMaxReference(Model& model, const config::QuantizeConfig& c, const CalibData& data) {
  QuantState ref = Fresh(model, c);
  ForwardModel cpu(model, DefaultCpuBackend());
  MaxCalibrate(cpu, ref, data, MaxOptions(c));
  return ref;
}

void ExpectSameState(const QuantState& a, const QuantState& b, const std::string& what) {
  ASSERT_EQ(a.quantizers().size(), b.quantizers().size());
  int with_amax = 0;
  for (size_t i = 0; i < a.quantizers().size(); ++i) {
    const Quantizer& x = a.quantizers()[i];
    const Quantizer& y = b.quantizers()[i];
    EXPECT_EQ(x.has_amax, y.has_amax) << what << " " << x.slot.name;
    EXPECT_EQ(x.amax_shape, y.amax_shape) << what << " " << x.slot.name;
    EXPECT_TRUE(x.amax == y.amax) << what << " " << x.slot.name;  // bit equality (no NaN in amax)
    EXPECT_EQ(x.global_amax, y.global_amax) << what << " " << x.slot.name;
    with_amax += x.has_amax;
  }
  EXPECT_GT(with_amax, 10) << what;
}

class LayerwiseModels : public ::testing::TestWithParam<const char*> {};

TEST_P(LayerwiseModels, NoQdqFromPrevEqualsWholeModelMaxBitForBit) {
  const config::QuantizeConfig c = Recipe();
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(ModelDir(GetParam()), lo);
  ForwardModel fm(*model, DefaultCpuBackend());
  QuantState whole = Fresh(*model, c);
  const CalibData data = Samples();
  MaxCalibrate(fm, whole, data, MaxOptions(c));

  QuantState lw = Fresh(*model, c);
  LayerwiseOptions o;
  o.show_progress = false;
  o.activation_memory = 50000;  // forces spilling part of every activation set
  LayerwiseReport r = LayerwiseMaxCalibrate(fm, lw, [&] { return data; }, MaxOptions(c), o);
  EXPECT_GT(r.spilled_bytes, 0);
  ExpectSameState(whole, lw, "layerwise vs whole-model");

  // With the next layer's inputs captured through the quantized layer, later layers see other activations.
  QuantState q = Fresh(*model, c);
  o.qdq_from_prev = true;
  LayerwiseMaxCalibrate(fm, q, [&] { return data; }, MaxOptions(c), o);
  bool any_differs = false;
  for (size_t i = 0; i < q.quantizers().size(); ++i) any_differs |= q.quantizers()[i].amax != whole.quantizers()[i].amax;
  EXPECT_TRUE(any_differs);
}

// Seed 001's first bug: window saves that wrote stand-ins for the earlier layers of a window. Every layer
// directory must hold that layer's real calibrated state, whatever the window size.
TEST_P(LayerwiseModels, EveryLayerDirectoryHoldsTheLayersRealState) {
  const config::QuantizeConfig c = Recipe();
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(ModelDir(GetParam()), lo);
  ForwardModel fm(*model, DefaultCpuBackend());
  testing_support::TempDir tmp("qf_layerwise_test");
  QuantState full = Fresh(*model, c);
  LayerwiseOptions o;
  o.show_progress = false;
  o.checkpoint_dir = tmp.path;
  o.save_every = 3;
  const CalibData data = Samples();
  LayerwiseMaxCalibrate(fm, full, [&] { return data; }, MaxOptions(c), o);
  QuantState restored = Fresh(*model, c);
  for (int l = -1; l < model->num_layers(); ++l) {
    if (l >= 0) {
      LoadLayerQuantizers(LayerDir(tmp.path, l), *model, restored, l);
      EXPECT_EQ(fs::exists(LayerDir(tmp.path, l) / "next_inputs.safetensors"),
                (l + 1) % 3 == 0 && l != model->num_layers() - 1)
          << l;
    }
  }
  // Head quantizers (layer -1) are recomputed, not stored: compare the decoder layers only.
  for (size_t i = 0; i < full.quantizers().size(); ++i) {
    const Quantizer& x = full.quantizers()[i];
    if (model->modules()[static_cast<size_t>(x.module)].layer < 0) continue;
    EXPECT_TRUE(x.amax == restored.quantizers()[i].amax) << x.slot.name;
    EXPECT_EQ(x.global_amax, restored.quantizers()[i].global_amax) << x.slot.name;
  }
  // Seed 001's second bug: a manifest advanced before next_inputs existed. Rewind to every boundary and
  // resume: each must find its inputs and reproduce the one-shot state.
  auto m = ReadManifest(tmp.path);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->last_completed_layer, model->num_layers() - 1);
  for (int k = 2; k < model->num_layers() - 1; k += 3) {
    LayerwiseManifest rewound = *m;
    rewound.last_completed_layer = k;
    WriteManifest(tmp.path, rewound);
    QuantState resumed = Fresh(*model, c);
    LayerwiseReport r = LayerwiseMaxCalibrate(fm, resumed, [&] { return data; }, MaxOptions(c), o);
    EXPECT_EQ(r.start_layer, k + 1);
    ExpectSameState(full, resumed, "resumed at " + std::to_string(k + 1));
  }
  // A manifest naming a layer whose next_inputs is missing is refused, not silently recalibrated wrong.
  LayerwiseManifest bad = *m;
  bad.last_completed_layer = 0;  // layer 0 is not a window boundary with save_every 3: no next_inputs
  WriteManifest(tmp.path, bad);
  QuantState s = Fresh(*model, c);
  try {
    LayerwiseMaxCalibrate(fm, s, [&] { return data; }, MaxOptions(c), o);
    ADD_FAILURE() << "resume without next_inputs succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("next_inputs.safetensors' is missing"), std::string::npos) << e.what();
  }
}

// The device-only paths (stored-weight uploads, weight amax on the device copy, the activation store's device
// tier, the released embedding / lm_head) on a backend that is a device to the code above it but computes
// with the CPU's kernels: the calibrated state must equal the CPU backend's bit for bit.
TEST_P(LayerwiseModels, DevicePathsEqualTheCpuBitForBit) {
  const config::QuantizeConfig c = Recipe();
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(ModelDir(GetParam()), lo);
  const CalibData data = Samples();
  const QuantState ref = CpuMaxReference(*model, c, data);
  testing_support::HostDeviceBackend dev;
  {
    ForwardModel fm(*model, dev);
    QuantState s = Fresh(*model, c);
    MaxCalibrate(fm, s, data, MaxOptions(c));
    ExpectSameState(ref, s, "device, whole model");
    EXPECT_GT(dev.stats().h2d_bytes, 0);  // weights and ids went up as uploads
  }
  // Device tier large enough, then one that holds a single batch of 2 x 32 tokens with the rest in host RAM
  // (1 GiB: every batch streams through the device, copied in a batch ahead and back in the background, which
  // the test backend does only when awaited), then one that holds a single batch with 50000 bytes of host RAM
  // (the rest spills). The first stores the activations of the dense model in parts of one sequence and runs
  // each layer on parts of 32 rows (the MoE model: whole batches, run in parts), the others store and run
  // whole batches: max hooks of per-tensor amax are row-local, so all are bit-identical.
  const int64_t one_batch = int64_t{2 * 32 * 4} * model->config().hidden_size;
  for (auto [device_budget, host_budget] :
       {std::pair<int64_t, int64_t>{-1, 50000}, {one_batch, int64_t{1} << 30}, {one_batch, 50000}}) {
    const int64_t downloads_before = dev.background_downloads;
    {
      ForwardModel fm(*model, dev);
      QuantState s = Fresh(*model, c);
      LayerwiseOptions o;
      o.show_progress = false;
      o.device_chunk_rows = device_budget < 0 ? 32 : 0;
      o.activation_memory = host_budget;
      o.device_activation_memory = device_budget;
      const LayerwiseReport r = LayerwiseMaxCalibrate(fm, s, [&] { return data; }, MaxOptions(c), o);
      const std::string what = "device, layerwise, device budget " + std::to_string(device_budget) + ", host budget " +
                               std::to_string(host_budget);
      ExpectSameState(ref, s, what);
      EXPECT_GT(r.peak_device_activation_bytes, 0) << what;
      if (device_budget > 0) {
        EXPECT_LE(r.peak_device_activation_bytes, device_budget) << what;  // one set, updated in place
        EXPECT_EQ(r.spilled_bytes > 0, host_budget < one_batch) << what;
      }
    }
    // Every background copy was awaited by the end.
    EXPECT_EQ(dev.pending_download_count(), 0);
    EXPECT_EQ(dev.pending_uploads(), 0);
    if (host_budget > one_batch) {
      // Each layer's forward puts back the batch that is not on the device (data: 2 batches).
      EXPECT_GE(dev.background_downloads - downloads_before, model->config().num_layers);
    } else {
      EXPECT_EQ(dev.background_downloads, downloads_before);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, LayerwiseModels, ::testing::Values("llama-dense-26M", "qwen2moe-25M"));

// On a device, layerwise calibration uploads layer l+1's weights in the background while layer l computes
// (ForwardModel::PrefetchLayer). The test backend copies a background upload only when it is awaited and
// fills its destination with NaN until then, so a weight used before its AwaitUpload would give NaN amax:
// the state must equal the CPU's bit for bit, with every prefetched weight awaited. (A checkpoint stored
// in f32: its bytes are the f32 backend's weights, which is what is prefetched.)
TEST(LayerwisePrefetch, NextLayerUploadsInTheBackgroundAndTheStateIsBitIdentical) {
  testing_support::TempDir tmp("qf_layerwise_test");
  SyntheticLlamaSpec spec;
  spec.layers = 3;
  spec.dtype = DType::kF32;
  WriteSyntheticLlama(tmp.path / "m", spec);
  const config::QuantizeConfig c = Recipe();
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(tmp.path / "m", lo);
  std::vector<int32_t> ids(4 * 32);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % 500 + 5);
  const CalibData data = CutCalibSamples(ids, 4, 32);
  const QuantState ref = CpuMaxReference(*model, c, data);
  testing_support::HostDeviceBackend dev;
  ForwardModel fm(*model, dev);
  QuantState s = Fresh(*model, c);
  LayerwiseOptions o;
  o.show_progress = false;
  LayerwiseMaxCalibrate(fm, s, [&] { return data; }, MaxOptions(c), o);
  ExpectSameState(ref, s, "layerwise with prefetch");
  EXPECT_EQ(dev.background_uploads, 2 * 7);  // layers 1 and 2, seven Linears each
  EXPECT_EQ(dev.awaited_uploads, dev.background_uploads);
  EXPECT_EQ(dev.pending_uploads(), 0);
}

TEST(ActivationStore, SpillsBeyondBudgetAndRoundTripsThroughAFile) {
  testing_support::TempDir tmp("qf_layerwise_test");
  Backend& be = DefaultCpuBackend();
  ActivationStore s(be, 100, tmp.path / "spill.bin");
  std::vector<Tensor> in;
  for (int b = 0; b < 3; ++b) {
    std::vector<float> v(12);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(b * 100 + i) * 0.5f;
    Tensor t = Tensor::FromF32({3, 4}, v);
    s.Append(UploadHidden(be, t, 1, 3));
    in.push_back(std::move(t));
  }
  EXPECT_EQ(s.bytes(), 3 * 48);
  EXPECT_EQ(s.spilled_bytes(), 48);  // the third batch exceeds 100 bytes
  s.Save(tmp.path / "a.safetensors");
  ActivationStore t = ActivationStore::Load(tmp.path / "a.safetensors", be, 0, tmp.path / "spill2.bin");
  EXPECT_EQ(t.spilled_bytes(), 3 * 48);
  for (int b = 0; b < 3; ++b) {
    for (const ActivationStore* st : {&s, &t}) {
      HiddenStates h = st->Get(b);
      EXPECT_EQ(h.batch, 1);
      EXPECT_EQ(h.seq, 3);
      const Tensor got = DownloadHidden(be, h);
      EXPECT_TRUE(std::equal(got.span<float>().begin(), got.span<float>().end(), in[b].span<float>().begin()));
    }
  }
}

// Take / Put update a batch in place in whichever tier holds it (backend memory, host memory, the spill
// file), in f32 and in bf16 storage; bf16 storage holds bf16 values exactly, and its files (BF16 tensors)
// load back into either storage.
TEST(ActivationStore, TakeAndPutUpdateInPlaceInEveryTierAndStorage) {
  testing_support::TempDir tmp("qf_layerwise_test");
  testing_support::HostDeviceBackend dev;
  auto batch = [](int b, float scale) {
    std::vector<float> v(24);
    for (size_t i = 0; i < v.size(); ++i) v[i] = Bf16ToF32(F32ToBf16Rne((static_cast<float>(b * 100 + i) - 7.f) * scale));
    return Tensor::FromF32({6, 4}, v);
  };
  for (DType storage : {DType::kF32, DType::kBF16}) {
    const int64_t per = 24 * static_cast<int64_t>(DTypeSize(storage));
    // Device budget: one batch; host budget: one batch; the third spills.
    ActivationStore s(dev, per, tmp.path / "spill.bin", per, storage);
    for (int b = 0; b < 3; ++b) s.Append(UploadHidden(dev, batch(b, 0.25f), 2, 3));
    ASSERT_EQ(s.device_bytes(), per);
    ASSERT_EQ(s.spilled_bytes(), per);
    EXPECT_EQ(s.bytes(), 3 * per);
    for (int b = 0; b < 3; ++b) {
      HiddenStates h = s.Take(b);
      EXPECT_EQ(h.rows(), 6);
      const Tensor want_in = batch(b, 0.25f);
      const Tensor got_in = DownloadHidden(dev, h);
      EXPECT_TRUE(std::equal(got_in.span<float>().begin(), got_in.span<float>().end(), want_in.span<float>().begin()))
          << DTypeName(storage) << " batch " << b;
      const Tensor updated = batch(b, -1.5f);
      dev.Upload(h.hidden.data(), updated.raw(), static_cast<int64_t>(updated.nbytes()));
      s.Put(b, std::move(h));
    }
    EXPECT_EQ(s.bytes(), 3 * per);  // nothing grew
    s.Save(tmp.path / "a.safetensors");
    for (DType load_as : {DType::kF32, DType::kBF16}) {
      ActivationStore t = ActivationStore::Load(tmp.path / "a.safetensors", dev, 0, tmp.path / "spill2.bin", 0, load_as);
      for (int b = 0; b < 3; ++b) {
        const Tensor want = batch(b, -1.5f);
        for (const ActivationStore* st : {&s, &t}) {
          const Tensor got = DownloadHidden(dev, st->Get(b));
          EXPECT_TRUE(std::equal(got.span<float>().begin(), got.span<float>().end(), want.span<float>().begin()))
              << DTypeName(storage) << " loaded as " << DTypeName(load_as) << " batch " << b;
        }
      }
    }
    const auto f = SafetensorsFile::Open(tmp.path / "a.safetensors");
    EXPECT_EQ(f->Get("batch_00000").dtype(), storage);
  }
}

TEST(LayerwiseConformance, LayerwiseCasesPass) {
  int layerwise = 0;
  for (const auto& r : testing_support::CalibConformanceResults()) {
    if (r.name.find("layerwise") == std::string::npos && r.name.find("sequential_checkpoint") == std::string::npos) {
      continue;
    }
    ++layerwise;
    EXPECT_NE(r.status, config::ConformanceCaseResult::Status::kSkip) << r.name << ": " << r.message;
    EXPECT_NE(r.status, config::ConformanceCaseResult::Status::kFail) << r.name << ": " << r.message;
  }
  EXPECT_GE(layerwise, 11);
}

// Resume detection in ModelOpt's order (spec §7.4): missing, corrupt, incomplete or complete => fresh start
// (before any mismatch check); otherwise the manifest must match the run.
TEST(LayerwiseCheckpoint, ResumeDetectionFollowsTheSpecsOrder) {
  testing_support::TempDir tmp("qf_layerwise_test");
  LayerwiseManifest now;
  now.num_layers = 4;
  now.save_every = 2;
  std::string note;
  EXPECT_EQ(DetectResumeLayer(tmp.path, now, &note), 0);  // missing
  EXPECT_TRUE(note.empty());
  WriteFileAtomic(tmp.path / "manifest.json", "{not json");
  EXPECT_EQ(DetectResumeLayer(tmp.path, now, &note), 0);  // corrupt
  EXPECT_NE(note.find("not valid JSON"), std::string::npos) << note;
  WriteFileAtomic(tmp.path / "manifest.json", R"({"format": "qforge-layerwise-checkpoint", "last_completed_layer": 1})");
  EXPECT_EQ(DetectResumeLayer(tmp.path, now, &note), 0);  // incomplete
  EXPECT_NE(note.find("missing"), std::string::npos) << note;
  LayerwiseManifest disk = now;
  disk.save_every = 3;  // a mismatch that must not matter for a complete manifest
  disk.last_completed_layer = 3;
  WriteManifest(tmp.path, disk);
  EXPECT_EQ(DetectResumeLayer(tmp.path, now, &note), 0);  // complete
  EXPECT_NE(note.find("complete run"), std::string::npos) << note;
  disk.last_completed_layer = 1;
  WriteManifest(tmp.path, disk);
  try {
    DetectResumeLayer(tmp.path, now);
    ADD_FAILURE() << "mismatch accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("save_every mismatch"), std::string::npos) << e.what();
  }
  disk.save_every = 2;
  WriteManifest(tmp.path, disk);
  EXPECT_EQ(DetectResumeLayer(tmp.path, now), 2);
  // A hand edit (the self-checksum no longer matches) is a corrupt manifest: fresh start, never trusted.
  std::string text = ReadFileToString(tmp.path / "manifest.json");
  text.replace(text.find("\"last_completed_layer\": 1"), 25, "\"last_completed_layer\": 2");
  WriteFileAtomic(tmp.path / "manifest.json", text);
  EXPECT_EQ(DetectResumeLayer(tmp.path, now, &note), 0);
  EXPECT_NE(note.find("checksum does not match"), std::string::npos) << note;
  EXPECT_THROW(ReadManifest(tmp.path), Error);  // export --from refuses it outright
}

TEST(LayerwiseCheckpoint, ChecksumsDetectEveryKindOfDamage) {
  testing_support::TempDir tmp("qf_layerwise_test");
  const fs::path d = tmp.path / "layer_0000";
  fs::create_directories(d);
  WriteFileAtomic(d / "a.json", "{\"x\": 1}\n");
  WriteFileAtomic(d / "b.bin", std::string(1000, 'b'));
  WriteLayerChecksums(d);
  EXPECT_NO_THROW(VerifyLayerChecksums(d));
  auto error_of = [&] {
    try {
      VerifyLayerChecksums(d);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string b = ReadFileToString(d / "b.bin");
  b[500] = 'c';  // same size, one byte changed
  WriteFileAtomic(d / "b.bin", b);
  EXPECT_NE(error_of().find("b.bin' does not match its checksum"), std::string::npos) << error_of();
  b[500] = 'b';
  WriteFileAtomic(d / "b.bin", b);
  EXPECT_EQ(error_of(), "");
  WriteFileAtomic(d / "extra", "x");
  EXPECT_NE(error_of().find("is not listed"), std::string::npos) << error_of();
  fs::remove(d / "extra");
  fs::remove(d / "a.json");
  EXPECT_NE(error_of().find("a.json' is missing"), std::string::npos) << error_of();
  fs::remove(d / "checksums.json");
  EXPECT_NE(error_of().find("has no checksums.json"), std::string::npos) << error_of();
}

TEST(LayerwiseCheckpoint, FingerprintFollowsContentNotPathOrMtime) {
  testing_support::TempDir tmp("qf_layerwise_test");
  const fs::path a = tmp.path / "a", b = tmp.path / "b";
  fs::copy(ModelDir("llama-dense-26M"), a, fs::copy_options::recursive);
  fs::copy(a, b, fs::copy_options::recursive);
  for (const auto& e : fs::directory_iterator(b)) {
    fs::last_write_time(e.path(), fs::file_time_type::clock::now() + std::chrono::hours(1));
  }
  const std::string fa = ModelFingerprint(a);
  EXPECT_EQ(fa, ModelFingerprint(b));  // copied and touched: same model
  // One byte of a shard's sampled data (its first byte after the header) changes the fingerprint.
  const fs::path shard = b / "model-00001-of-00004.safetensors";
  std::string bytes = ReadFileToString(shard);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  bytes[8 + n] = static_cast<char>(bytes[8 + n] ^ 1);
  WriteFileAtomic(shard, bytes);
  EXPECT_NE(fa, ModelFingerprint(b));
}

TEST(LayerwiseCheckpoint, NonFiniteAmaxInACheckpointIsRefused) {
  testing_support::TempDir tmp("qf_layerwise_test");
  ModelLoadOptions mlo;
  mlo.load_all_layers = false;
  auto model = Model::Load(ModelDir("llama-dense-26M"), mlo);
  config::QuantizeConfig c = Recipe();
  QuantState state = Fresh(*model, c);
  model->LoadLayer(0);
  CalibrateWeightAmax(*model, state, 0);
  for (auto& q : state.quantizers()) {  // a poisoned weight amax in layer 0
    if (model->modules()[static_cast<size_t>(q.module)].layer == 0 && q.has_amax && !q.amax.empty()) {
      q.amax[0] = std::numeric_limits<float>::infinity();
      break;
    }
  }
  SaveLayerQuantizers(tmp.path, *model, state, 0);
  QuantState fresh = Fresh(*model, c);
  try {
    LoadLayerQuantizers(tmp.path, *model, fresh, 0);
    ADD_FAILURE() << "non-finite amax accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite amax"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

// moe_calib_experts_ratio (spec §6.0) on qwen2moe-25M (8 experts, top 2, a shared expert): at ratio 1 every
// expert sees every token, so each expert's input amax is the shared expert's (the same normalized input);
// at 0.5 each token reaches round(4) = 4 experts. The block's output stays the original top-2 routing: every
// quantizer outside the routed experts equals plain max's. Layerwise equals whole-model.
TEST(MoeCalibExpertsRatio, WideRoutingForStatisticsOriginalRoutingForTheOutput) {
  const config::QuantizeConfig c = Recipe();
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(ModelDir("qwen2moe-25M"), lo);
  const CalibData data = Samples();
  const QuantState ref = CpuMaxReference(*model, c, data);
  const int64_t tokens = 4 * 32;
  ForwardModel cpu(*model, DefaultCpuBackend());
  for (double ratio : {1.0, 0.5}) {
    SCOPED_TRACE(::testing::Message() << "ratio " << ratio);
    MaxCalibOptions mo = MaxOptions(c);
    mo.moe_calib_experts_ratio = ratio;
    QuantState s = Fresh(*model, c);
    const MaxCalibReport r = MaxCalibrate(cpu, s, data, mo);
    ASSERT_FALSE(r.expert_tokens.empty());
    for (const auto& layer : r.expert_tokens) {
      int64_t sum = 0;
      for (int64_t t : layer.tokens) {
        if (ratio == 1.0) {
          EXPECT_EQ(t, tokens) << layer.block;
        }
        sum += t;
      }
      EXPECT_EQ(sum, tokens * (ratio == 1.0 ? 8 : 4)) << layer.block;
    }
    int experts = 0, others = 0;
    for (size_t i = 0; i < s.quantizers().size(); ++i) {
      const Quantizer& q = s.quantizers()[i];
      const ModuleInfo& m = model->modules()[static_cast<size_t>(q.module)];
      if (m.expert < 0) {  // attention, shared expert, KV: the original routing's inputs
        EXPECT_TRUE(q.amax == ref.quantizers()[i].amax) << q.slot.name;
        others += q.has_amax;
      } else if (ratio == 1.0 && q.role == QuantizerRole::kInput && m.role == LinearRole::kGate) {
        const std::string shared = fmt::format("model.layers.{}.mlp.shared_expert.gate_proj", m.layer);
        const Quantizer* sq = s.Get(model->FindModule(shared), QuantizerRole::kInput);
        ASSERT_NE(sq, nullptr) << shared;
        EXPECT_TRUE(q.amax == sq->amax) << q.slot.name;
        ++experts;
      }
    }
    EXPECT_GT(others, 10);
    if (ratio == 1.0) {
      EXPECT_EQ(experts, 4 * 8);
    }
    // Layer by layer: the same state.
    QuantState lw = Fresh(*model, c);
    LayerwiseOptions o;
    o.show_progress = false;
    LayerwiseMaxCalibrate(cpu, lw, [&] { return data; }, mo, o);
    ExpectSameState(s, lw, "layerwise");
  }
}

}  // namespace
}  // namespace qforge
