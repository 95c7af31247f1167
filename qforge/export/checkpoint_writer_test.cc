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

fs::path FreshRoot(const std::string& tag) {
  // (appended, not "literal" + std::string&&: GCC 12 gives that a false -Wrestrict at -O3)
  std::string name = "qforge_ckw_";
  name += tag;
  name += "_";
  name += std::to_string(::getpid());
  fs::path root = fs::temp_directory_path() / name;
  fs::remove_all(root);
  fs::create_directories(root);
  return root;
}

std::vector<PlannedTensor> PlanOf(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<PlannedTensor> plan;
  for (const auto& [n, t] : tensors) plan.push_back({n, t.dtype(), t.shape()});
  return plan;
}

Tensor Filled(DType dtype, Shape shape, int seed) {
  Tensor t = Tensor::Zeros(dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.mutable_raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 7 + 3 + seed);
  return t;
}

TEST(CheckpointWriter, ShardsWithIndexAndCopiesAuxFiles) {
  fs::path root = FreshRoot("shards");
  fs::create_directories(root / "src");
  WriteFileAtomic(root / "src" / "tokenizer.json", "{}");
  WriteFileAtomic(root / "src" / "model.safetensors", "not copied");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int i = 0; i < 5; ++i) {
    std::string tensor = "t";
    tensor += std::to_string(i);
    tensors.emplace_back(tensor, Filled(DType::kF32, {10}, i));  // 40 B each
  }
  {
    CheckpointWriterOptions o;
    o.max_shard_bytes = 64;
    CheckpointWriter w(root / "out", PlanOf(tensors), o);
    EXPECT_EQ(w.num_shards(), 3);
    for (const auto& [n, t] : tensors) w.Add(n, t);
    w.Commit({{"model_type", "llama"}}, nlohmann::ordered_json{{"quantization", {{"quant_algo", "FP8"}}}},
             root / "src");
    EXPECT_EQ(w.bytes_written(), 200u);
  }
  EXPECT_TRUE(fs::exists(root / "out" / "model-00001-of-00003.safetensors"));
  EXPECT_TRUE(fs::exists(root / "out" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(root / "out" / "hf_quant_config.json"));
  EXPECT_TRUE(fs::exists(root / "out" / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(root / "out" / "model.safetensors"));
  auto c = CheckpointTensors::Open(root / "out");
  EXPECT_EQ(c.names().size(), 5u);
  for (const auto& [n, t] : tensors) {
    Tensor back = c.Get(n);
    ASSERT_EQ(back.nbytes(), t.nbytes()) << n;
    EXPECT_EQ(std::memcmp(back.raw(), t.raw(), t.nbytes()), 0) << n;
  }
  EXPECT_EQ(c.FileOf("t0"), "model-00001-of-00003.safetensors");  // 40 B < 64: t1 joins it
  EXPECT_EQ(c.FileOf("t1"), "model-00001-of-00003.safetensors");
  EXPECT_EQ(c.FileOf("t2"), "model-00002-of-00003.safetensors");
  EXPECT_EQ(c.FileOf("t4"), "model-00003-of-00003.safetensors");

  // A writer destroyed without Commit (with writes still queued) leaves nothing behind and keeps the old
  // export.
  {
    CheckpointWriterOptions o;
    o.max_shard_bytes = 64;
    CheckpointWriter w(root / "out", {{"x", DType::kF32, {100}}, {"y", DType::kF32, {100}}}, o);
    w.Add("x", Tensor::Zeros(DType::kF32, {100}));
  }
  EXPECT_TRUE(fs::exists(root / "out" / "model-00001-of-00003.safetensors"));
  for (const auto& e : fs::directory_iterator(root)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
  fs::remove_all(root);
}

// Tensors added in any order, from a queue one tensor deep, by several writer threads, land at their
// planned offsets: every tensor aligned to its element size and intact.
TEST(CheckpointWriter, TensorsAddedOutOfOrderLandAlignedAndIntact) {
  fs::path root = FreshRoot("align");
  std::vector<std::pair<std::string, Tensor>> tensors;
  // Plan order mixes element sizes; odd byte counts force misalignment if classes were not separated.
  tensors.emplace_back("a.u8", Filled(DType::kU8, {3}, 1));
  tensors.emplace_back("b.f32", Filled(DType::kF32, {5}, 2));
  tensors.emplace_back("c.bf16", Filled(DType::kBF16, {3}, 3));
  tensors.emplace_back("d.i64", Filled(DType::kI64, {2}, 4));
  tensors.emplace_back("e.f8", Filled(DType::kF8E4M3, {1}, 5));
  tensors.emplace_back("f.scalar", Tensor::Scalar(0.25f));
  tensors.emplace_back("g.empty", Tensor::Zeros(DType::kF32, {0, 4}));
  tensors.emplace_back("h.big", Filled(DType::kBF16, {1000, 33}, 6));
  {
    CheckpointWriterOptions o;
    o.max_shard_bytes = 1ull << 30;
    o.threads = 3;
    o.max_queued_bytes = 1;  // every Add waits for the queue to empty
    CheckpointWriter w(root / "out", PlanOf(tensors), o);
    for (size_t i = tensors.size(); i-- > 0;) w.Add(tensors[i].first, tensors[i].second);
    w.Commit({{"model_type", "llama"}}, std::nullopt, root);
  }
  auto f = SafetensorsFile::Open(root / "out" / "model.safetensors");
  for (const auto& [n, t] : tensors) {
    const TensorInfo& info = f->Info(n);
    EXPECT_EQ(info.begin % DTypeSize(t.dtype()), 0u) << n;
    EXPECT_EQ(info.dtype, t.dtype());
    EXPECT_EQ(info.shape, t.shape());
    Tensor back = f->Get(n);
    ASSERT_EQ(back.nbytes(), t.nbytes()) << n;
    if (t.nbytes()) {
      EXPECT_EQ(std::memcmp(back.raw(), t.raw(), t.nbytes()), 0) << n;
    }
  }
  EXPECT_FALSE(fs::exists(root / "out" / "hf_quant_config.json"));
  fs::remove_all(root);
}

// The shard's bytes, rebuilt independently: the 8-byte little-endian header length, the JSON header
// (keys sorted, __metadata__ format pt, offsets by element size then plan order) padded with spaces to a
// multiple of 8, then the data.
TEST(CheckpointWriter, ShardBytesAreTheSafetensorsLayout) {
  fs::path root = FreshRoot("bytes");
  const Tensor a = Filled(DType::kU8, {3}, 1), b = Filled(DType::kF32, {2}, 2), c = Filled(DType::kBF16, {1}, 3);
  {
    CheckpointWriter w(root / "out", {{"z", DType::kU8, {3}}, {"y", DType::kF32, {2}}, {"x", DType::kBF16, {1}}});
    w.Add("y", b);
    w.Add("z", a);
    w.Add("x", c);
    w.Commit({{"model_type", "llama"}}, std::nullopt, root);
  }
  std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"data_offsets":[8,10],"dtype":"BF16","shape":[1]},)"
      R"("y":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},"z":{"data_offsets":[10,13],"dtype":"U8","shape":[3]}})";
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');
  std::string want(8, '\0');
  for (int i = 0; i < 8; ++i) want[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  want += header;
  want.append(static_cast<const char*>(b.raw()), b.nbytes());
  want.append(static_cast<const char*>(c.raw()), c.nbytes());
  want.append(static_cast<const char*>(a.raw()), a.nbytes());
  EXPECT_EQ(ReadFileToString(root / "out" / "model.safetensors"), want);
  fs::remove_all(root);
}

}  // namespace
}  // namespace qforge
