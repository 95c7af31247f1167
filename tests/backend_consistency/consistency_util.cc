// The backend consistency suite's parameters, fixture and comparisons (consistency_util.h).
#include "tests/backend_consistency/consistency_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>

#include "qforge/numerics/half.h"

namespace qforge::consistency {

std::vector<BackendParam> DeviceBackendParams() {
  std::vector<BackendParam> out;
  for (const std::string& name : AvailableBackends()) {
    if (name == "cpu") continue;
    out.push_back({name, ComputeDType::kF32});
    out.push_back({name, ComputeDType::kBF16});
  }
  if (out.empty()) out.push_back({"", ComputeDType::kF32});
  return out;
}

void PrintTo(const BackendParam& p, std::ostream* os) {
  *os << (p.name.empty() ? std::string("none") : p.name) << " " << ComputeDTypeName(p.dtype);
}

std::string ParamName(const ::testing::TestParamInfo<BackendParam>& info) {
  if (info.param.name.empty()) return "none";
  std::string s;
  for (char c : info.param.name) {
    if (std::isalnum(static_cast<unsigned char>(c))) s += c;
  }
  return s + "_" + std::string(ComputeDTypeName(info.param.dtype));
}

void DeviceBackendTest::SetUp() {
  if (GetParam().name.empty()) GTEST_SKIP() << "no GPU backend is usable here (AvailableBackends() is cpu only)";
  // One backend per parameter for the whole binary: creating a CUDA context and cuBLAS handle per test
  // would dominate the run time. Tests that check memory statistics create their own (CreateBackend).
  static std::map<std::pair<std::string, ComputeDType>, std::unique_ptr<Backend>> backends;
  auto& slot = backends[{GetParam().name, GetParam().dtype}];
  if (!slot) slot = CreateBackend(GetParam().name, GetParam().dtype);
  dev_ = slot.get();
}

std::vector<float> DeviceBackendTest::Input(size_t n, uint32_t seed, float lo, float hi) const {
  std::vector<float> v = RandomFloats(n, seed, lo, hi);
  return bf16() ? RoundBf16(std::move(v)) : v;
}

std::vector<float> DeviceBackendTest::ReferenceOut(std::vector<float> v) const {
  return bf16() ? RoundBf16(std::move(v)) : v;
}

std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> RandomInts(size_t n, uint32_t seed, int32_t lo, int32_t hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

float RoundBf16(float x) { return Bf16ToF32(F32ToBf16Rne(x)); }

std::vector<float> RoundBf16(std::vector<float> v) {
  for (float& x : v) x = RoundBf16(x);
  return v;
}

namespace {

template <typename T>
::testing::AssertionResult NearImpl(std::string_view what, std::span<const T> got, std::span<const T> want,
                                    Tolerance tol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, expected " << want.size();
  }
  double err2 = 0, ref2 = 0, max_abs = 0;
  size_t bad = 0;
  std::vector<std::pair<double, size_t>> worst;  // (excess over the tolerance, index)
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    double excess;
    if (std::isnan(w) || std::isnan(g)) {
      excess = std::isnan(w) && std::isnan(g) ? 0.0 : HUGE_VAL;
    } else if (std::isinf(w) || std::isinf(g)) {
      excess = g == w ? 0.0 : HUGE_VAL;
    } else {
      const double d = std::fabs(g - w);
      err2 += d * d;
      ref2 += w * w;
      max_abs = std::max(max_abs, d);
      excess = d - (tol.abs + tol.rel * std::fabs(w));
    }
    if (excess > 0) {
      ++bad;
      worst.emplace_back(excess, i);
    }
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  const bool nmse_bad = tol.nmse >= 0 && nmse > tol.nmse;
  if (bad == 0 && !nmse_bad) return ::testing::AssertionSuccess();
  std::sort(worst.begin(), worst.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string msg = fmt::format("{}: {} of {} values outside |got-want| <= {:g} + {:g}*|want|; nmse {:.3g} (limit {:g}), "
                                "max |got-want| {:.3g}",
                                what, bad, got.size(), tol.abs, tol.rel, nmse, tol.nmse, max_abs);
  for (size_t j = 0; j < std::min<size_t>(worst.size(), 8); ++j) {
    const size_t i = worst[j].second;
    msg += fmt::format("\n    [{}] got {:.9g} want {:.9g}", i, static_cast<double>(got[i]), static_cast<double>(want[i]));
  }
  return ::testing::AssertionFailure() << msg;
}

}  // namespace

::testing::AssertionResult Near(std::string_view what, std::span<const float> got, std::span<const float> want,
                                Tolerance tol) {
  return NearImpl<float>(what, got, want, tol);
}

::testing::AssertionResult Near(std::string_view what, std::span<const double> got, std::span<const double> want,
                                Tolerance tol) {
  return NearImpl<double>(what, got, want, tol);
}

::testing::AssertionResult BitExact(std::string_view what, std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": " << got.size() << " values, expected " << want.size();
  }
  size_t bad = 0;
  std::string examples;
  for (size_t i = 0; i < got.size(); ++i) {
    uint32_t g, w;
    std::memcpy(&g, &got[i], 4);
    std::memcpy(&w, &want[i], 4);
    if (g == w || (std::isnan(got[i]) && std::isnan(want[i]))) continue;
    if (++bad <= 8) {
      examples += fmt::format("\n    [{}] got {:.9g} ({:08x}) want {:.9g} ({:08x})", i, got[i], g, want[i], w);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " values differ" << examples;
}

INSTANTIATE_TEST_SUITE_P(Backends, DeviceBackendTest, ::testing::ValuesIn(DeviceBackendParams()), ParamName);

}  // namespace qforge::consistency
