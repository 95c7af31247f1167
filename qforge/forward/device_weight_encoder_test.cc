// The device weight encoder against the host one: on a device-shaped backend (HostDeviceBackend: device
// paths, CPU kernels) every byte of every packed weight must equal PackWeight's, and the error sums must
// agree to double rounding; formats the device does not pack, and non-finite weights, go to the host.
#include "qforge/forward/device_weight_encoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/host_device_backend.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = fs::path(QF_SHARED_DIR) / "data" / "models";

void ExpectSame(const EncodedWeight& got, const EncodedWeight& want, const std::string& what) {
  const PackedWeight &g = got.packed, &w = want.packed;
  EXPECT_EQ(g.format, w.format) << what;
  EXPECT_EQ(g.shape, w.shape) << what;
  EXPECT_EQ(g.weight_shape, w.weight_shape) << what;
  EXPECT_EQ(g.scale_shape, w.scale_shape) << what;
  EXPECT_TRUE(g.weight == w.weight) << what;
  EXPECT_TRUE(g.scale_bytes == w.scale_bytes) << what;
  EXPECT_EQ(g.scale_f32, w.scale_f32) << what;
  EXPECT_EQ(g.weight_scale_2, w.weight_scale_2) << what;
  EXPECT_NEAR(got.sq_err, want.sq_err, 1e-9 * want.sq_err) << what;
  EXPECT_NEAR(got.sq_ref, want.sq_ref, 1e-9 * want.sq_ref) << what;
  EXPECT_GT(got.sq_err, 0) << what;
}

// PackInputs as the export gives them: the calibrated (max) amax of the format's weight quantizer, and
// NVFP4's per-tensor global amax.
PackInputs InputsFor(PackFormat f, const Tensor& w) {
  PackInputs in;
  if (f == PackFormat::kNvfp4) {
    in.global_amax = ComputeAmax(WeightSpecFor(PackFormat::kFp8), w.span<float>(), w.shape(), "w")[0];
  } else {
    in.amax = ComputeAmax(WeightSpecFor(f), w.span<float>(), w.shape(), "w");
  }
  return in;
}

TEST(DeviceWeightEncoder, PacksEveryByteAsTheHostDoes) {
  testing_support::HostDeviceBackend dev;
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M", {}, &dev);
  Model& m = fm->model();
  HostWeightEncoder host(m, dev.host_kernels());
  DeviceWeightEncoder device(*fm, dev.host_kernels());
  fm->LoadLayer(0);  // layer 0 resident, layer 1 not: both paths
  const int64_t resident = fm->resident_weight_bytes();
  for (const char* name : {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"}) {
    const int mod = m.FindModule(name);
    const Tensor w = m.LinearWeight(mod);
    for (PackFormat f : {PackFormat::kNvfp4, PackFormat::kFp8, PackFormat::kFp8PerChannel}) {
      const PackInputs in = InputsFor(f, w);
      const EncodedWeight want = host.Encode(mod, f, in, name);
      for (int64_t chunk : {int64_t{7}, int64_t{4096}}) {
        auto got = fm->EncodeWeight(mod, f, in, name, chunk);
        ASSERT_TRUE(got.has_value()) << name << " " << GetTraits(f).name;
        ExpectSame(*got, want, std::string(name) + " " + std::string(GetTraits(f).name) + " chunk " +
                                   std::to_string(chunk));
      }
      ExpectSame(device.Encode(mod, f, in, name), want, name);
    }
    // The device encoder never leaves a weight resident that was not (layerwise memory stays one layer).
    EXPECT_EQ(fm->resident_weight_bytes(), resident) << name;
  }
  EXPECT_EQ(device.on_device(), 6);
  EXPECT_EQ(device.on_host(), 0);

  // Formats the device does not pack, static NVFP4 and missing amax go to the host encoder, same bytes.
  const int q = m.FindModule("model.layers.0.self_attn.q_proj");
  const Tensor w = m.LinearWeight(q);
  for (PackFormat f : {PackFormat::kMxfp8, PackFormat::kInt8, PackFormat::kFp8Block}) {
    const PackInputs in = f == PackFormat::kMxfp8 ? PackInputs{} : InputsFor(f, w);
    EXPECT_FALSE(fm->EncodeWeight(q, f, in, "q").has_value()) << GetTraits(f).name;
    ExpectSame(device.Encode(q, f, in, "q"), host.Encode(q, f, in, "q"), std::string(GetTraits(f).name));
  }
  EXPECT_FALSE(fm->EncodeWeight(q, PackFormat::kFp8, PackInputs{}, "q").has_value());
  EXPECT_EQ(device.on_host(), 3);
}

// On a Fork of the backend, from another thread while the forward runs on the original one (the whole-model
// export beside the calibration forward): the same bytes; the fork does the device work and its copies, the
// original's stats see none of them; a weight that is not resident goes to the host instead of being uploaded.
TEST(DeviceWeightEncoder, OnAForkBesideTheForward) {
  testing_support::HostDeviceBackend dev;
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M", {}, &dev);
  Model& m = fm->model();
  for (int l = 0; l < m.num_layers(); ++l) fm->LoadLayer(l);
  std::unique_ptr<Backend> fork = dev.Fork();
  ASSERT_NE(fork, nullptr);
  HostWeightEncoder host(m, dev.host_kernels());
  DeviceWeightEncoder device(*fm, dev.host_kernels(), fork.get());
  std::vector<int> mods;
  for (int mod : m.linear_modules()) {
    if (m.modules()[static_cast<size_t>(mod)].layer >= 0) mods.push_back(mod);
  }
  std::vector<PackInputs> ins;
  for (int mod : mods) ins.push_back(InputsFor(PackFormat::kNvfp4, m.LinearWeight(mod)));
  std::vector<EncodedWeight> got(mods.size());
  const MemoryStats before = dev.stats();
  std::thread encoder([&] {
    for (size_t i = 0; i < mods.size(); ++i) got[i] = device.Encode(mods[i], PackFormat::kNvfp4, ins[i], "w");
  });
  // The forward meanwhile, on the original backend.
  std::vector<int32_t> ids(2 * 16);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i * 7 % 256);
  HiddenStates h = fm->Embed(ids, 2, 16);
  for (int l = 0; l < m.num_layers(); ++l) fm->RunLayer(l, h);
  encoder.join();
  for (size_t i = 0; i < mods.size(); ++i) {
    ExpectSame(got[i], host.Encode(mods[i], PackFormat::kNvfp4, ins[i], "w"), m.modules()[static_cast<size_t>(mods[i])].name);
  }
  EXPECT_EQ(device.on_device(), static_cast<int>(mods.size()));
  EXPECT_EQ(fork->stats().d2h_copies, static_cast<int64_t>(2 * mods.size()));  // codes and scales
  EXPECT_EQ(dev.stats().d2h_copies, before.d2h_copies);
  EXPECT_EQ(fork->stats().allocated_bytes, 0);  // every buffer of the fork freed

  fm->ReleaseLayer(1);
  const int64_t resident = fm->resident_weight_bytes();
  const int down = m.FindModule("model.layers.1.mlp.down_proj");
  const Tensor w = m.LinearWeight(down);
  const PackInputs in = InputsFor(PackFormat::kNvfp4, w);
  EXPECT_FALSE(fm->EncodeWeight(down, PackFormat::kNvfp4, in, "w", 4096, fork.get()).has_value());
  EXPECT_EQ(fm->resident_weight_bytes(), resident);  // not uploaded for the fork
  ExpectSame(device.Encode(down, PackFormat::kNvfp4, in, "w"), host.Encode(down, PackFormat::kNvfp4, in, "w"), "down");
  EXPECT_EQ(device.on_host(), 1);
}

TEST(DeviceWeightEncoder, NonFiniteWeightsAreNamedByTheHost) {
  testing_support::HostDeviceBackend dev;
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M", {}, &dev);
  Model& m = fm->model();
  DeviceWeightEncoder device(*fm, dev.host_kernels());
  const int q = m.FindModule("model.layers.1.self_attn.q_proj");
  const Tensor w = m.LinearWeight(q);
  for (PackFormat f : {PackFormat::kNvfp4, PackFormat::kFp8}) {
    const PackInputs in = InputsFor(f, w);
    Tensor bad = w.Clone();
    bad.mutable_data<float>()[w.numel() - 3] = std::numeric_limits<float>::quiet_NaN();
    m.SetLinearWeight(q, bad);
    EXPECT_FALSE(fm->EncodeWeight(q, f, in, "q", 7).has_value()) << GetTraits(f).name;
    try {
      device.Encode(q, f, in, "model.layers.1.self_attn.q_proj.weight");
      ADD_FAILURE() << "no error for a NaN weight";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("q_proj.weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(w.numel() - 3)), std::string::npos) << e.what();
    }
    m.RestoreLinearWeight(q);
  }
}

}  // namespace
}  // namespace qforge
