// The backend factory's errors, Buffer ownership and the memory statistics, on the CPU backend (the CUDA
// backend's are in tests/backend_consistency).
#include "qforge/runtime/backend.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "qforge/base/error.h"

namespace qforge {
namespace {

std::string ErrorOf(std::string_view name, ComputeDType dt = ComputeDType::kF32) {
  try {
    (void)CreateBackend(name, dt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Backend, FactoryNamesAndErrors) {
  auto cpu = CreateBackend("cpu");
  EXPECT_EQ(cpu->name(), "cpu");
  EXPECT_EQ(cpu->device(), Device::kCpu);
  EXPECT_EQ(cpu->compute_dtype(), ComputeDType::kF32);
  EXPECT_NE(ErrorOf("tpu").find("unknown backend (choices: cpu, cuda, cuda:N)"), std::string::npos);
  EXPECT_NE(ErrorOf("cuda:x").find("expected cuda or cuda:N"), std::string::npos);
  EXPECT_NE(ErrorOf("cpu", ComputeDType::kBF16).find("the CPU backend computes in f32 only"), std::string::npos);
  // Without a usable GPU (or without CUDA compiled in) "cuda" is an error that says which.
  const std::string cuda = ErrorOf("cuda");
  if (AvailableBackends().size() == 1) {
    EXPECT_FALSE(cuda.empty());
    EXPECT_TRUE(cuda.find("built without CUDA; build it with scripts/build_cuda.sh") != std::string::npos ||
                cuda.find("GPU") != std::string::npos || cuda.find("driver") != std::string::npos)
        << cuda;
  }
  EXPECT_EQ(DefaultComputeDType("cuda:1"), ComputeDType::kBF16);
  EXPECT_EQ(DefaultComputeDType("cpu"), ComputeDType::kF32);
  EXPECT_EQ(ParseComputeDType("bf16"), ComputeDType::kBF16);
  EXPECT_EQ(ParseComputeDType("f32"), ComputeDType::kF32);
  EXPECT_FALSE(ParseComputeDType("fp16").has_value());
}

TEST(Backend, BuffersAreOwnedAndCounted) {
  auto be = CreateBackend("cpu");
  EXPECT_EQ(be->stats().allocated_bytes, 0);
  {
    Buffer a = be->Alloc(1000);
    EXPECT_EQ(be->stats().allocated_bytes, 1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);  // SIMD alignment
    const char text[] = "backend memory";
    be->Upload(a.data(), text, sizeof text);
    char back[sizeof text] = {};
    be->Download(back, a.data(), sizeof text);
    EXPECT_STREQ(back, text);
    Buffer b = std::move(a);  // moves ownership, frees once
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(b.bytes(), 1000);
    Buffer c = be->Alloc(24);
    EXPECT_EQ(be->stats().peak_allocated_bytes, 1024);
  }
  EXPECT_EQ(be->stats().allocated_bytes, 0);
  // The CPU's memory is the host's: nothing crosses, so nothing is counted.
  EXPECT_EQ(be->stats().h2d_copies, 0);
  EXPECT_EQ(be->stats().d2h_copies, 0);
  // Adopted host memory is a view: not allocated, not freed.
  auto owner = std::make_shared<std::vector<float>>(8, 2.5f);
  Buffer v = be->Adopt(owner->data(), 32, owner);
  EXPECT_EQ(v.as<float>()[3], 2.5f);
  EXPECT_EQ(be->stats().allocated_bytes, 0);
  v.Reset();
  EXPECT_EQ((*owner)[0], 2.5f);
  // Weights of a bf16 checkpoint become f32 on the CPU.
  const uint16_t bf16[2] = {0x3F80, 0xC000};  // 1.0, -2.0
  Buffer w = be->UploadWeightStored(bf16, DType::kBF16, 2, nullptr);
  EXPECT_EQ(w.as<float>()[0], 1.0f);
  EXPECT_EQ(w.as<float>()[1], -2.0f);
}

}  // namespace
}  // namespace qforge
