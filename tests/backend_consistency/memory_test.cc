// Device backend memory: Alloc / Upload / Download round trips of odd and multi-chunk sizes, the counted
// transfers and allocation statistics (peak included), Copy / Zero, UploadWeight in each compute dtype,
// out-of-memory and factory errors. Each test that checks statistics creates its own backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/numerics/half.h"
#include "tests/backend_consistency/consistency_util.h"

namespace qforge::consistency {
namespace {

std::vector<uint8_t> Pattern(size_t n, uint32_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131 + salt + (i >> 12)) & 0xff);
  return v;
}

TEST_P(DeviceBackendTest, AllocUploadDownloadCountedRoundTrip) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  EXPECT_EQ(be->stats().allocated_bytes, 0);
  EXPECT_EQ(be->stats().h2d_copies, 0);
  // Odd sizes, a size class boundary, and more than one 32 MiB staging chunk.
  for (int64_t bytes : {int64_t{1}, int64_t{3}, int64_t{511}, int64_t{4099}, (int64_t{5} << 20) + 7,
                        int64_t{3} * (int64_t{32} << 20) + 12345}) {
    SCOPED_TRACE(::testing::Message() << bytes << " bytes");
    const auto host = Pattern(static_cast<size_t>(bytes), static_cast<uint32_t>(bytes));
    const MemoryStats s0 = be->stats();
    Buffer b = be->Alloc(bytes);
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b.bytes(), bytes);
    EXPECT_EQ(b.backend(), be.get());
    EXPECT_EQ(be->stats().allocated_bytes, s0.allocated_bytes + bytes);
    EXPECT_GE(be->stats().peak_allocated_bytes, be->stats().allocated_bytes);
    be->Upload(b.data(), host.data(), bytes);
    EXPECT_EQ(be->stats().h2d_bytes, s0.h2d_bytes + bytes);
    EXPECT_EQ(be->stats().h2d_copies, s0.h2d_copies + 1);
    std::vector<uint8_t> back(static_cast<size_t>(bytes), 0);
    be->Download(back.data(), b.data(), bytes);
    EXPECT_EQ(be->stats().d2h_bytes, s0.d2h_bytes + bytes);
    EXPECT_EQ(be->stats().d2h_copies, s0.d2h_copies + 1);
    EXPECT_TRUE(back == host) << "downloaded bytes differ from the uploaded ones";
    b.Reset();
    EXPECT_EQ(be->stats().allocated_bytes, s0.allocated_bytes);
  }
  EXPECT_TRUE(be->Alloc(0).empty());
}

// Background copies both ways, ordered after the ops issued before them: a buffer written by an op (Copy, Zero)
// and then downloaded in the background holds the op's result; several downloads in flight at once, of odd and
// multi-chunk sizes, each complete by its own AwaitDownload; a background upload awaited feeds the next op.
TEST_P(DeviceBackendTest, BackgroundDownloadsAndUploadsFollowTheOpsBeforeThem) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  const std::vector<int64_t> sizes = {1, 4099, (int64_t{32} << 20) - 1, int64_t{2} * (int64_t{32} << 20) + 777,
                                      int64_t{5} << 20};
  std::vector<Buffer> src, mid;
  std::vector<std::vector<uint8_t>> want, got;
  std::vector<int64_t> tickets;
  for (size_t j = 0; j < sizes.size(); ++j) {
    const int64_t bytes = sizes[j];
    want.push_back(Pattern(static_cast<size_t>(bytes), static_cast<uint32_t>(j + 1)));
    // An upload in the background, awaited, then an op that copies it on and zeroes its first bytes.
    src.push_back(be->Alloc(bytes));
    mid.push_back(be->Alloc(bytes));
    const int64_t up = be->UploadInBackground(src.back().data(), want.back().data(), bytes, nullptr);
    be->AwaitUpload(up);
    be->Copy(mid.back().data(), src.back().data(), bytes);
    const int64_t zeroed = std::min<int64_t>(bytes, 1000);
    be->Zero(mid.back().data(), zeroed);
    std::fill(want.back().begin(), want.back().begin() + zeroed, 0);
    got.emplace_back(static_cast<size_t>(bytes), 0xAB);
    const MemoryStats s0 = be->stats();
    tickets.push_back(be->DownloadInBackground(got.back().data(), mid.back().data(), bytes));
    EXPECT_EQ(be->stats().d2h_bytes, s0.d2h_bytes + bytes);
  }
  // Awaited out of order: a later ticket covers the earlier ones too.
  be->AwaitDownload(tickets[2]);
  for (size_t j = 0; j <= 2; ++j) EXPECT_TRUE(got[j] == want[j]) << "download " << j << " of " << sizes[j] << " bytes";
  be->AwaitDownload(tickets.back());
  for (size_t j = 0; j < sizes.size(); ++j) EXPECT_TRUE(got[j] == want[j]) << "download " << j;
}

TEST_P(DeviceBackendTest, CopyZeroAndPeak) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  const auto host = Pattern(1000, 7);
  Buffer a = be->AllocCopy(host.data(), 1000), c = be->Alloc(1000);
  be->Copy(c.data(), a.as<uint8_t>() + 100, 500);
  be->Zero(c.as<uint8_t>() + 500, 500);
  std::vector<uint8_t> back(1000);
  be->Download(back.data(), c.data(), 1000);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(back[i], i < 500 ? host[100 + i] : 0) << "byte " << i;

  const int64_t base = be->stats().allocated_bytes;
  be->ResetPeak();
  EXPECT_EQ(be->stats().peak_allocated_bytes, base);
  void* first = nullptr;
  {
    Buffer p1 = be->Alloc(int64_t{1} << 20);
    Buffer p2 = be->Alloc(int64_t{3} << 20);
    first = p1.data();
    EXPECT_EQ(be->stats().allocated_bytes, base + (int64_t{4} << 20));
  }
  EXPECT_EQ(be->stats().allocated_bytes, base);
  EXPECT_EQ(be->stats().peak_allocated_bytes, base + (int64_t{4} << 20));
  // The caching allocator hands a freed block of the same size class to the next request.
  Buffer again = be->Alloc(int64_t{1} << 20);
  EXPECT_EQ(again.data(), first);

  const auto [free_b, total_b] = be->MemoryInfo();
  EXPECT_GT(total_b, 0);
  EXPECT_GT(free_b, 0);
  EXPECT_LE(free_b, total_b);
  EXPECT_NE(be->Describe().find(GetParam().name), std::string::npos) << be->Describe();
  std::printf("[ info     ] %s, %s: %.1f of %.1f GiB free\n", be->Describe().c_str(),
              std::string(ComputeDTypeName(GetParam().dtype)).c_str(), static_cast<double>(free_b) / (1 << 30),
              static_cast<double>(total_b) / (1 << 30));
}

TEST_P(DeviceBackendTest, OutOfMemoryIsAnErrorNamingTheSize) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  const int64_t huge = int64_t{1} << 50;  // 1 PiB
  try {
    Buffer b = be->Alloc(huge);
    FAIL() << "Alloc of 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of device memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(huge)), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
  }
  EXPECT_EQ(be->stats().allocated_bytes, 0);
  Buffer small = be->Alloc(4096);  // still usable
  EXPECT_FALSE(small.empty());
}

TEST_P(DeviceBackendTest, UploadWeightStoresTheComputeDtype) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  // One odd size and one spanning several staging chunks (80 MB of f32).
  for (int64_t n : {int64_t{1000003}, int64_t{20} << 20}) {
    SCOPED_TRACE(::testing::Message() << n << " weights");
    const auto w = RandomFloats(static_cast<size_t>(n), 40, -2.f, 2.f);
    const MemoryStats s0 = be->stats();
    Buffer dw = be->UploadWeight(w.data(), n, nullptr);
    EXPECT_EQ(be->stats().h2d_bytes, s0.h2d_bytes + n * 4) << "the f32 host values cross";
    if (bf16()) {
      ASSERT_EQ(be->weight_dtype(), DType::kBF16);
      ASSERT_EQ(dw.bytes(), n * 2);
      const auto got = FromDevice<uint16_t>(*be, dw);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], F32ToBf16Rne(w[i])) << "weight " << i << " = " << w[i];
    } else {
      ASSERT_EQ(be->weight_dtype(), DType::kF32);
      ASSERT_EQ(dw.bytes(), n * 4);
      const auto got = FromDevice<float>(*be, dw);
      EXPECT_TRUE(std::memcmp(got.data(), w.data(), static_cast<size_t>(n) * 4) == 0);
    }
  }
}

TEST_P(DeviceBackendTest, UploadWeightStoredConvertsOnTheDevice) {
  auto be = CreateBackend(GetParam().name, GetParam().dtype);
  // One odd size and one spanning two staging chunks of 2-byte values.
  for (int64_t n : {int64_t{1000003}, int64_t{20} << 20}) {
    const auto w = RandomFloats(static_cast<size_t>(n), 41, -3.f, 3.f);
    std::vector<uint16_t> f16(w.size()), b16(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      f16[i] = F32ToF16Rne(w[i]);
      b16[i] = F32ToBf16Rne(w[i]);
    }
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      SCOPED_TRACE(::testing::Message() << n << " weights stored as " << DTypeName(dt));
      const void* host = dt == DType::kF32 ? static_cast<const void*>(w.data())
                                           : (dt == DType::kF16 ? static_cast<const void*>(f16.data()) : b16.data());
      auto value = [&](size_t i) {  // the stored value, exactly, as f32
        return dt == DType::kF32 ? w[i] : (dt == DType::kF16 ? F16ToF32(f16[i]) : Bf16ToF32(b16[i]));
      };
      const MemoryStats s0 = be->stats();
      Buffer dw = be->UploadWeightStored(host, dt, n, nullptr);
      EXPECT_EQ(be->stats().h2d_bytes, s0.h2d_bytes + n * static_cast<int64_t>(DTypeSize(dt))) << "the stored bytes cross";
      if (bf16()) {
        ASSERT_EQ(dw.bytes(), n * 2);
        const auto got = FromDevice<uint16_t>(*be, dw);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], F32ToBf16Rne(value(i))) << "weight " << i;
      } else {
        ASSERT_EQ(dw.bytes(), n * 4);
        const auto got = FromDevice<float>(*be, dw);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(value(i))) << "weight " << i;
      }
    }
  }
  EXPECT_NE(be->host_kernels(), nullptr);
}

// Runs without a GPU too: the factory's errors name the problem.
TEST(CudaBackendFactory, ErrorsNameTheProblem) {
  int gpus = 0;
  for (const std::string& name : AvailableBackends()) gpus += name.rfind("cuda:", 0) == 0 ? 1 : 0;
  const std::string name = "cuda:" + std::to_string(gpus);  // one past the last GPU (cuda:0 without any)
  try {
    auto be = CreateBackend(name, ComputeDType::kBF16);
    FAIL() << "CreateBackend(" << name << ") succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    std::printf("[ info     ] CreateBackend(%s): %s\n", name.c_str(), msg.c_str());
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find("GPU"), std::string::npos) << msg;
  }
  EXPECT_EQ(DefaultComputeDType("cuda:0"), ComputeDType::kBF16);
}

}  // namespace
}  // namespace qforge::consistency
