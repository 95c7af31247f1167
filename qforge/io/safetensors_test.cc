// Tests for io/safetensors: round trips, the real shared checkpoints, and every kind of damaged file.
#include "qforge/io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "qforge/base/file.h"

namespace qforge {
namespace {
namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qforge_st_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a raw safetensors file with the given header JSON and `data_bytes` bytes of data.
  fs::path Raw(const std::string& name, const std::string& header, size_t data_bytes, int64_t len_override = -1) {
    fs::path p = dir_ / name;
    std::ofstream out(p, std::ios::binary);
    uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
    out << header;
    out << std::string(data_bytes, '\0');
    return p;
  }

  void ExpectError(const fs::path& p, const std::string& needle) {
    try {
      SafetensorsFile::Open(p);
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripKeepsNamesShapesDtypesBytesAndMetadata) {
  Tensor a = Tensor::FromF32({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::Zeros(DType::kU8, {5});
  for (int i = 0; i < 5; ++i) b.mutable_data<uint8_t>()[i] = static_cast<uint8_t>(i * 50);
  Tensor c = Tensor::Zeros(DType::kBF16, {});
  Tensor e = Tensor::Zeros(DType::kI64, {0, 4});
  WriteSafetensors(dir_ / "x.safetensors", {{"b", b}, {"a.weight", a}, {"c", c}, {"empty", e}}, {{"format", "pt"}});
  auto f = SafetensorsFile::Open(dir_ / "x.safetensors");
  EXPECT_EQ(f->names().size(), 4u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  Tensor a2 = f->Get("a.weight");
  EXPECT_EQ(a2.shape(), (Shape{2, 3}));
  EXPECT_EQ(a2.dtype(), DType::kF32);
  EXPECT_EQ(std::memcmp(a2.raw(), a.raw(), a.nbytes()), 0);
  EXPECT_FALSE(a2.writable());
  EXPECT_EQ(f->Get("b").data<uint8_t>()[4], 200);
  EXPECT_EQ(f->Get("c").rank(), 0);
  EXPECT_EQ(f->Get("empty").numel(), 0);
  EXPECT_THROW(f->Get("nope"), Error);
  EXPECT_THROW(WriteSafetensors(dir_ / "d.safetensors", {{"a", a}, {"a", a}}), Error);
  EXPECT_FALSE(fs::exists(dir_ / "d.safetensors"));
}

TEST_F(SafetensorsTest, DamagedFilesGiveClearErrors) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(SafetensorsFile::Open(Raw("ok.safetensors", ok, 8)));
  ExpectError(Raw("short.safetensors", "", 0, 0).string() + "", "header");  // empty header: not JSON
  {
    fs::path p = dir_ / "tiny.safetensors";
    std::ofstream(p) << "abc";
    ExpectError(p, "shorter than the 8-byte header");
  }
  ExpectError(Raw("trunc_header.safetensors", ok, 8, 1000), "truncated");
  ExpectError(Raw("huge_header.safetensors", ok, 8, int64_t{1} << 40), "exceeds");
  ExpectError(Raw("trunc_data.safetensors", ok, 4), "truncated");
  ExpectError(Raw("badjson.safetensors", "{\"w\":", 0), "not valid JSON");
  ExpectError(Raw("dtype.safetensors", R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,8]}})", 8),
              "unsupported dtype 'F4'");
  ExpectError(Raw("size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
              "needs 12 bytes");
  ExpectError(Raw("overlap.safetensors",
                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  12),
              "overlaps");
  ExpectError(Raw("hole.safetensors", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
              "unused bytes");
  ExpectError(Raw("trailing.safetensors", ok, 16), "trailing bytes");
  ExpectError(Raw("reversed.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
              "reversed");
  ExpectError(Raw("negshape.safetensors", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
              "non-negative");
  ExpectError(Raw("missing.safetensors", R"({"w":{"dtype":"F32","shape":[2]}})", 8), "data_offsets");
  ExpectError(Raw("meta.safetensors", R"({"__metadata__":{"a":1}})", 0), "__metadata__");
  ExpectError(Raw("overflow.safetensors",
                  R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
              "overflows");
}

TEST_F(SafetensorsTest, SizesThatWrapAreErrors) {
  // Above INT64_MAX: nlohmann keeps it unsigned; it must not become a negative dimension.
  ExpectError(Raw("u64.safetensors", R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})", 0),
              "non-negative integers below 2^63");
  // 2^62 F64 elements are 2^65 bytes, which wraps to 0 in uint64 and used to match data_offsets [0, 0].
  ExpectError(Raw("wrap.safetensors", R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
              "overflows");
  ExpectError(Raw("wrap2.safetensors",
                  R"({"w":{"dtype":"BF16","shape":[4294967296,2147483648],"data_offsets":[0,0]}})", 0),
              "overflows");
  // A zero dimension keeps the product 0 whatever the other dimensions are.
  EXPECT_NO_THROW(SafetensorsFile::Open(
      Raw("zero.safetensors", R"({"w":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}})", 0)));
  // A header nesting deeper than kMaxJsonDepth is refused before any recursive code sees it.
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  ExpectError(Raw("deep.safetensors", R"({"__metadata__":)" + deep + "}", 0), "nest deeper");
}

TEST_F(SafetensorsTest, ShardedCheckpointIndexIsValidated) {
  Tensor a = Tensor::FromF32({2}, std::vector<float>{1, 2});
  WriteSafetensors(dir_ / "s1.safetensors", {{"a", a}});
  WriteSafetensors(dir_ / "s2.safetensors", {{"b", a}});
  WriteFileAtomic(dir_ / "model.safetensors.index.json",
                  R"({"metadata":{},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  auto c = CheckpointTensors::Open(dir_);
  EXPECT_EQ(c.names().size(), 2u);
  EXPECT_EQ(c.Get("b").data<float>()[1], 2.0f);
  EXPECT_EQ(c.shard_files().size(), 2u);

  WriteFileAtomic(dir_ / "model.safetensors.index.json",
                  R"({"weight_map":{"a":"s1.safetensors","b":"s3.safetensors"}})");
  try {
    CheckpointTensors::Open(dir_);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s3.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  WriteFileAtomic(dir_ / "model.safetensors.index.json",
                  R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  try {
    CheckpointTensors::Open(dir_);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
}

TEST(SharedCheckpoints, LlamaDense26MShardsOpen) {
  const fs::path dir = fs::path(QF_SHARED_DIR) / "data/models/llama-dense-26M";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared data not present";
  auto c = CheckpointTensors::Open(dir);
  EXPECT_EQ(c.shard_files().size(), 4u);
  const auto& info = c.Info("model.embed_tokens.weight");
  EXPECT_EQ(info.dtype, DType::kBF16);
  Tensor t = c.Get("model.embed_tokens.weight").ToF32();
  EXPECT_EQ(t.rank(), 2);
}

}  // namespace
}  // namespace qforge
