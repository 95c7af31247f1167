// Shared pieces of the backend consistency suite (ggml test-backend-ops style): every device backend this
// binary can create, in f32 and in bf16, runs each op on random inputs and is compared with the CPU
// reference backend.
//
// Use: derive nothing; write TEST_P(DeviceBackendTest, Name) { Backend& be = dev(); ... } and the suite
// is instantiated once per (backend, compute dtype) by consistency_util.cc. With no usable GPU there is
// one parameter, "none", whose tests skip (GTEST_SKIP), so the binary passes on machines without one.
//
// bf16 mode: the device rounds every floating output to bf16, so the reference is the CPU (which
// computes in f32 only) on bf16-rounded inputs (Input() rounds when bf16() is set), its output rounded
// to bf16 (ReferenceOut()), compared with bf16 tolerances.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qforge/runtime/backend.h"

namespace qforge::consistency {

struct BackendParam {
  std::string name;     // "cuda:0"; empty: no device backend (the tests skip)
  ComputeDType dtype = ComputeDType::kF32;
};

// gtest's name for a parameter in messages: "cuda:0 bf16".
void PrintTo(const BackendParam& p, std::ostream* os);

// Every device backend of AvailableBackends() (all but "cpu") in f32 and bf16, or the single skipping
// parameter when there is none.
std::vector<BackendParam> DeviceBackendParams();
// "cuda0_f32", "cuda0_bf16", "none".
std::string ParamName(const ::testing::TestParamInfo<BackendParam>& info);

// The fixture: dev() is the device backend of the parameter (one per parameter, shared by the tests of
// the binary: check memory statistics on a backend of your own), cpu() the reference.
class DeviceBackendTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override;
  Backend& dev() { return *dev_; }
  static Backend& cpu() { return DefaultCpuBackend(); }
  bool bf16() const { return GetParam().dtype == ComputeDType::kBF16; }

  // n random values uniform in [lo, hi) (seeded), bf16-rounded when bf16().
  std::vector<float> Input(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) const;
  // The CPU result as the device should produce it: rounded to bf16 when bf16(), else unchanged.
  std::vector<float> ReferenceOut(std::vector<float> v) const;

  Backend* dev_ = nullptr;
};

// --- host data ----------------------------------------------------------------------------------------
std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f);
std::vector<int32_t> RandomInts(size_t n, uint32_t seed, int32_t lo, int32_t hi);  // uniform in [lo, hi]
float RoundBf16(float x);                                   // RNE, numerics/half.h
std::vector<float> RoundBf16(std::vector<float> v);

// --- device arrays ------------------------------------------------------------------------------------
template <typename T>
Buffer ToDevice(Backend& be, const std::vector<T>& host) {
  return be.AllocCopy(host.data(), static_cast<int64_t>(host.size() * sizeof(T)));
}
template <typename T>
std::vector<T> FromDevice(Backend& be, const void* device, size_t n) {
  std::vector<T> host(n);
  be.Download(host.data(), device, static_cast<int64_t>(n * sizeof(T)));
  return host;
}
template <typename T>
std::vector<T> FromDevice(Backend& be, const Buffer& b) {
  return FromDevice<T>(be, b.data(), static_cast<size_t>(b.bytes()) / sizeof(T));
}

// --- comparison ---------------------------------------------------------------------------------------
// Elementwise |got - want| <= abs + rel * |want| for every element, and, when nmse >= 0, the normalized
// mean squared error Σ(got - want)² / Σ want² <= nmse. NaN equals NaN; inf must match exactly.
struct Tolerance {
  double rel = 0.0;
  double abs = 0.0;
  double nmse = -1.0;
};
inline constexpr double kBf16Ulp = 1.0 / 128;  // spacing of bf16 values in [1, 2) (2^-7)

// On failure the message names `what`, the error statistics and the worst elements (index, got, want).
::testing::AssertionResult Near(std::string_view what, std::span<const float> got, std::span<const float> want,
                                Tolerance tol);
::testing::AssertionResult Near(std::string_view what, std::span<const double> got, std::span<const double> want,
                                Tolerance tol);
// Same bit patterns (any NaN matches any NaN).
::testing::AssertionResult BitExact(std::string_view what, std::span<const float> got, std::span<const float> want);

}  // namespace qforge::consistency
