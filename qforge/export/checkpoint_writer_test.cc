// Tests for the atomic, sharded checkpoint writer.
#include "qforge/export/checkpoint_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"

namespace qforge {
namespace {
namespace fs = std::filesystem;

TEST(CheckpointWriter, ShardsWithIndexAndCopiesAuxFiles) {
  // (appended, not "literal" + std::string&&: GCC 12 gives that a false -Wrestrict at -O3)
  std::string name = "qforge_ckw_";
  name += std::to_string(::getpid());
  fs::path root = fs::temp_directory_path() / name;
  fs::remove_all(root);
  fs::create_directories(root / "src");
  WriteFileAtomic(root / "src" / "tokenizer.json", "{}");
  WriteFileAtomic(root / "src" / "model.safetensors", "not copied");
  {
    CheckpointWriter w(root / "out", /*max_shard_bytes=*/64);
    for (int i = 0; i < 5; ++i) {
      std::string tensor = "t";
      tensor += std::to_string(i);
      w.Add(tensor, Tensor::Zeros(DType::kF32, {10}));  // 40 B each
    }
    w.Commit({{"model_type", "llama"}}, nlohmann::ordered_json{{"quantization", {{"quant_algo", "FP8"}}}},
             root / "src");
    EXPECT_EQ(w.num_shards(), 3);
  }
  EXPECT_TRUE(fs::exists(root / "out" / "model-00001-of-00003.safetensors"));
  EXPECT_TRUE(fs::exists(root / "out" / "hf_quant_config.json"));
  EXPECT_TRUE(fs::exists(root / "out" / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(root / "out" / "model.safetensors"));
  auto c = CheckpointTensors::Open(root / "out");
  EXPECT_EQ(c.names().size(), 5u);
  EXPECT_EQ(c.Get("t4").numel(), 10);

  // A writer destroyed without Commit leaves nothing behind and keeps the old export.
  {
    CheckpointWriter w(root / "out", 64);
    w.Add("x", Tensor::Zeros(DType::kF32, {100}));
  }
  EXPECT_TRUE(fs::exists(root / "out" / "model-00001-of-00003.safetensors"));
  for (const auto& e : fs::directory_iterator(root)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

TEST(CheckpointWriter, StreamedShardKeepsEveryTensorAlignedAndIntact) {
  fs::path root = fs::temp_directory_path() / ("qforge_ckw_align_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  std::vector<std::pair<std::string, Tensor>> tensors;
  auto fill = [](Tensor t) {
    auto* p = static_cast<uint8_t*>(t.mutable_raw());
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 7 + 3);
    return t;
  };
  // Arrival order mixes element sizes; odd byte counts force misalignment if classes were not separated.
  tensors.emplace_back("a.u8", fill(Tensor::Zeros(DType::kU8, {3})));
  tensors.emplace_back("b.f32", fill(Tensor::Zeros(DType::kF32, {5})));
  tensors.emplace_back("c.bf16", fill(Tensor::Zeros(DType::kBF16, {3})));
  tensors.emplace_back("d.i64", fill(Tensor::Zeros(DType::kI64, {2})));
  tensors.emplace_back("e.f8", fill(Tensor::Zeros(DType::kF8E4M3, {1})));
  tensors.emplace_back("f.scalar", Tensor::Scalar(0.25f));
  {
    CheckpointWriter w(root / "out", 1ull << 30);
    for (const auto& [n, t] : tensors) w.Add(n, t);
    w.Commit({{"model_type", "llama"}}, std::nullopt, root);
  }
  auto f = SafetensorsFile::Open(root / "out" / "model.safetensors");
  for (const auto& [n, t] : tensors) {
    const TensorInfo& info = f->Info(n);
    EXPECT_EQ(info.begin % DTypeSize(t.dtype()), 0u) << n;
    EXPECT_EQ(info.dtype, t.dtype());
    EXPECT_EQ(info.shape, t.shape());
    Tensor back = f->Get(n);
    EXPECT_EQ(std::memcmp(back.raw(), t.raw(), t.nbytes()), 0) << n;
  }
  EXPECT_FALSE(fs::exists(root / "out" / "hf_quant_config.json"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace qforge
