// Every SIMD/OpenMP quantization kernel against the scalar reference of numerics/, bit for bit.
#include "qforge/runtime/cpu/quant_kernels.h"

#include <gtest/gtest.h>
#include <omp.h>

#include "hwy/targets.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "qforge/numerics/encode.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/format_probe.h"

namespace qforge::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void ExpectSame(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& x,
                const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = Bits(got[i]) == Bits(want[i]) || (std::isnan(got[i]) && std::isnan(want[i]));
    ASSERT_TRUE(same) << what << " index " << i << " x=" << x[i] << " fast=" << got[i] << " ref=" << want[i];
  }
}

// The rounding probe of a format (tests/support/format_probe.h) plus far-saturating values and specials.
std::vector<float> GridProbe(Format f) {
  std::vector<float> probe = testing_support::RoundingProbe(f, {1.01f, 1e6f});
  for (float s : {kInf, -kInf, kNaN, -0.0f, 1e-45f, -1e-40f, 1e-30f}) probe.push_back(s);
  return probe;
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-30, 30);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng) * std::ldexp(1.0f, ex(rng) / 6);
  return x;
}

QuantSpec Spec(NumBits nb) {
  QuantSpec s;
  s.num_bits = nb;
  return s;
}
QuantSpec BlockSpecOf(NumBits nb, int block, bool dynamic, std::optional<NumBits> scale) {
  QuantSpec s;
  s.num_bits = nb;
  s.block = BlockSpec{{{-1, block}}, dynamic, scale, false};
  return s;
}

// Runs the fast path directly (asserting it accepts) and the reference, and compares.
void CheckFakeQuant(const QuantSpec& spec, const std::vector<float>& x, const std::vector<int64_t>& shape,
                    std::vector<float> amax, const char* what, std::optional<float> global = std::nullopt) {
  const QdqPlan plan = MakeQdqPlan(spec, shape);
  std::vector<float> fast(x.size()), ref(x.size());
  std::vector<float> resolved = amax;
  if (plan.kind != QdqKind::kMx && plan.kind != QdqKind::kNvfp4Dynamic && amax.size() == 1 && plan.num_groups > 1)
    resolved.assign(plan.num_groups, amax[0]);
  std::optional<float> g = global;
  if (plan.kind == QdqKind::kNvfp4Static && !g) {
    float m = 0;
    for (float a : resolved) m = std::isnan(a) || std::isnan(m) ? kNaN : std::max(m, a);
    g = m;
  }
  ASSERT_TRUE(FakeQuantFast(plan, x, resolved, g, fast)) << what;
  FakeQuant(spec, x, shape, amax, ref, global);  // no kernels: the scalar reference
  ExpectSame(fast, ref, x, what);
  // The public entry point with the kernels passed gives the same result.
  std::vector<float> via(x.size());
  FakeQuant(spec, x, shape, amax, via, global, "tensor", &HostKernels());
  ExpectSame(via, ref, x, what);
}

TEST(QuantKernels, Fp8PerTensorEveryRoundingDecision) {
  auto probe = GridProbe(Format::kE4M3);
  // Scale 1 (amax 448) probes the grid directly; other amaxes probe x*scale rounding paths.
  for (float amax : {448.0f, 1.0f, 3.7f, 1e-3f, 1e-30f, 0.0f}) {
    std::vector<float> x = probe;
    CheckFakeQuant(Spec(NumBits::Float(4, 3)), x, {static_cast<int64_t>(x.size())}, {amax}, "fp8 per tensor");
  }
  auto r = Random(100003, 1);
  CheckFakeQuant(Spec(NumBits::Float(4, 3)), r, {100003}, {2.5f}, "fp8 random");
}

TEST(QuantKernels, Fp8AndIntGroupLayouts) {
  const std::vector<int64_t> shape = {37, 300};
  auto x = Random(37 * 300, 2);
  x[5] = kNaN;
  x[17] = kInf;
  x[400] = -0.0f;
  for (NumBits nb : {NumBits::Float(4, 3), NumBits::Int(8), NumBits::Int(4)}) {
    QuantSpec pc = Spec(nb);
    pc.axis = std::vector<int>{0};
    auto xc = x;
    xc[5] = 1.0f;  // calibration rejects NaN; keep it in the fake-quant input only
    xc[17] = 1.0f;
    CheckFakeQuant(pc, x, shape, ComputeAmax(pc, xc, shape), "per channel");
    QuantSpec pt = Spec(nb);
    pt.axis = std::vector<int>{-1};
    CheckFakeQuant(pt, x, shape, ComputeAmax(pt, xc, shape), "per column");
    QuantSpec blk = Spec(nb);
    blk.block = BlockSpec{{{-1, 128}, {-2, 16}}, false, std::nullopt, false};  // partial blocks both ways
    auto amax = ComputeAmax(blk, xc, shape);
    amax[1] = 0.0f;   // a zero-amax block
    amax[2] = 1e-30f; // a tiny-amax block
    CheckFakeQuant(blk, x, shape, amax, "static blocks");
    CheckFakeQuant(Spec(nb), x, shape, {3.0f}, "per tensor");
  }
  QuantSpec u = Spec(NumBits::Int(8));
  u.is_unsigned = true;
  auto pos = Random(5000, 3);
  for (float& v : pos) v = std::fabs(v);
  CheckFakeQuant(u, pos, {5000}, {1.5f}, "unsigned");
  QuantSpec narrow = Spec(NumBits::Int(4));
  narrow.narrow_range = true;
  CheckFakeQuant(narrow, x, shape, {1.0f}, "narrow");
}

TEST(QuantKernels, Nvfp4DynamicAdversarial) {
  const QuantSpec spec = BlockSpecOf(NumBits::Float(2, 1), 16, true, NumBits::Float(4, 3));
  const std::vector<int64_t> shape = {64, 272};
  auto x = Random(64 * 272, 4);
  for (int k = 0; k < 16; ++k) x[32 + k] = 0.0f;          // zero block
  for (int k = 0; k < 16; ++k) x[64 + k] = 1e-6f * k;      // tiny block
  for (int k = 0; k < 16; ++k) x[96 + k] = kNaN;           // all-NaN block
  x[200] = kNaN;
  x[300] = kInf;
  x[301] = -kInf;
  x[400] = -0.0f;
  x[401] = 500.0f;
  // Grid probe of E2M1 decisions: block max 6 with scale 1 when the global amax is 2688.
  auto probe = GridProbe(Format::kE2M1);
  for (size_t i = 0; i < 16 * 10 && i < probe.size(); ++i) x[1000 + i] = probe[i];
  float clean_max = 0;
  for (float v : x)
    if (std::isfinite(v)) clean_max = std::max(clean_max, std::fabs(v));
  for (float g : {clean_max, 2688.0f, 0.0f, 1e-3f, kInf, kNaN, 1e30f})
    CheckFakeQuant(spec, x, shape, {g}, "nvfp4 dynamic");
}

TEST(QuantKernels, Nvfp4StaticBlockScalesAndZeroBlocks) {
  for (bool four_over_six : {false, true}) {
    QuantSpec spec = BlockSpecOf(NumBits::Float(2, 1), 16, false, NumBits::Float(4, 3));
    spec.block->four_over_six = four_over_six;
    const std::vector<int64_t> shape = {48, 160};
    auto x = Random(48 * 160, 9);
    x[7] = kNaN;
    x[8] = -0.0f;
    x[9] = kInf;
    auto xc = x;
    xc[7] = xc[9] = 1.0f;
    auto amax = ComputeAmax(spec, xc, shape);
    amax[3] = 0.0f;     // zero block scale -> all-zero block
    amax[4] = 1e-30f;   // tiny
    amax[5] = 1e6f;     // outlier block above the others
    CheckFakeQuant(spec, x, shape, amax, "nvfp4 static");
    CheckFakeQuant(spec, x, shape, amax, "nvfp4 static, explicit global", 3.0f);
    CheckFakeQuant(spec, x, shape, amax, "nvfp4 static, zero global", 0.0f);
  }
}

TEST(QuantKernels, MxEveryElementFormat) {
  struct Case {
    NumBits nb;
    Format f;
  } cases[] = {{NumBits::Float(4, 3), Format::kE4M3}, {NumBits::Float(5, 2), Format::kE5M2},
               {NumBits::Float(3, 2), Format::kE3M2}, {NumBits::Float(2, 3), Format::kE2M3},
               {NumBits::Float(2, 1), Format::kE2M1}, {NumBits::Int(8), Format::kInt8}};
  for (const Case& c : cases) {
    const QuantSpec spec = BlockSpecOf(c.nb, 32, true, NumBits::Float(8, 0));
    std::vector<float> probe = c.f == Format::kInt8 ? std::vector<float>{} : GridProbe(c.f);
    // Blocks of 32: element 0 pins the block max to the format max (scale 1), the rest probe the grid.
    std::vector<float> x;
    size_t i = 0;
    while (i < probe.size()) {
      x.push_back(GetTraits(c.f == Format::kInt8 ? Format::kInt8 : c.f).max_finite);
      for (int k = 1; k < 32; ++k) x.push_back(i < probe.size() ? probe[i++] : 0.0f);
    }
    auto r = Random(32 * 200, 5);
    r[3] = kNaN;
    r[40] = kInf;
    r[70] = -0.0f;
    for (int k = 0; k < 32; ++k) r[96 + k] = 0.0f;
    for (int k = 0; k < 32; ++k) r[128 + k] = 1e-42f;
    for (int k = 0; k < 32; ++k) r[160 + k] = kNaN;
    for (int k = 0; k < 32; ++k) r[192 + k] = static_cast<float>(k) + 0.5f;  // int8 ties
    x.insert(x.end(), r.begin(), r.end());
    CheckFakeQuant(spec, x, {static_cast<int64_t>(x.size() / 32), 32}, {}, GetTraits(c.f).name.data());
  }
}

TEST(QuantKernels, DeclinesWhatItDoesNotCover) {
  const QuantSpec nv = BlockSpecOf(NumBits::Float(2, 1), 16, true, NumBits::Float(4, 3));
  std::vector<float> x(40, 1.0f), out(40);
  EXPECT_FALSE(FakeQuantFast(MakeQdqPlan(nv, std::vector<int64_t>{2, 20}), x, std::vector<float>{1.0f},
                             std::nullopt, out));
  QuantSpec st = BlockSpecOf(NumBits::Float(2, 1), 16, false, NumBits::Float(4, 3));
  st.block->sizes = {{-1, 16}, {-2, 2}};  // 2-D static blocks: not the kernel's layout
  std::vector<float> y(64, 1.0f), out2(64);
  EXPECT_FALSE(FakeQuantFast(MakeQdqPlan(st, std::vector<int64_t>{4, 16}), y, std::vector<float>{1.0f, 1.0f}, 1.0f,
                             out2));
  // The public entry point still gives the reference result for declined cases.
  std::vector<float> ref(40);
  FakeQuant(nv, x, std::vector<int64_t>{2, 20}, {}, out, std::nullopt, "tensor", &HostKernels());
  FakeQuant(nv, x, std::vector<int64_t>{2, 20}, {}, ref);
  ExpectSame(out, ref, x, "declined nvfp4");
}

TEST(QuantKernels, AbsMax) {
  auto x = Random(100001, 6);
  float ref = 0;
  for (float v : x) ref = std::max(ref, std::fabs(v));
  float got = -1;
  ASSERT_TRUE(AbsMaxFast(x, true, &got));
  EXPECT_EQ(got, ref);
  x[77777] = kNaN;
  ASSERT_TRUE(AbsMaxFast(x, true, &got));
  EXPECT_TRUE(std::isnan(got));
  ASSERT_TRUE(AbsMaxFast(x, false, &got));
  EXPECT_EQ(got, ref);
  ASSERT_TRUE(AbsMaxFast(std::span<const float>(), true, &got));
  EXPECT_EQ(got, 0.0f);
}

TEST(QuantKernels, PackingMatchesReferenceEncoders) {
  const std::vector<int64_t> shape = {96, 512};
  auto w = Random(96 * 512, 7);
  for (int k = 0; k < 16; ++k) w[16 + k] = 0.0f;
  for (int k = 0; k < 16; ++k) w[48 + k] = 1e-7f * k;
  w[3] = 900.0f;
  w[100] = 0.75f * w[3] / 448.0f * 6.0f / 6.0f;  // lands near an E2M1 tie
  w[101] = -0.0f;
  for (PackFormat f : {PackFormat::kNvfp4, PackFormat::kFp8, PackFormat::kFp8PerChannel}) {
    const PackedWeight ref = PackWeight(f, w, shape);
    const PackedWeight fast = PackWeight(f, w, shape, {}, "weight", &HostKernels());
    EXPECT_EQ(fast.weight, ref.weight) << GetTraits(f).name;
    EXPECT_EQ(fast.scale_bytes, ref.scale_bytes) << GetTraits(f).name;
    EXPECT_EQ(fast.scale_f32, ref.scale_f32) << GetTraits(f).name;
    EXPECT_EQ(fast.weight_scale_2, ref.weight_scale_2) << GetTraits(f).name;
  }
  // Non-finite weights are still reported (the NVFP4 kernel declines, the reference path names the index).
  for (PackFormat f : {PackFormat::kNvfp4, PackFormat::kFp8, PackFormat::kFp8PerChannel}) {
    for (float bad : {kNaN, kInf, -kInf}) {
      auto wb = w;
      wb[12345] = bad;
      PackInputs in;
      if (f != PackFormat::kNvfp4) in.amax = std::vector<float>(f == PackFormat::kFp8 ? 1 : 96, 1.0f);
      try {
        PackWeight(f, wb, shape, in, "w", &HostKernels());
        ADD_FAILURE() << "no error for " << bad;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("index 12345"), std::string::npos) << e.what();
      }
    }
  }
  // FP8 export casts of every grid value, tie and overflow (non-saturating): direct kernel call.
  std::vector<float> probe;
  for (float v : GridProbe(Format::kE4M3))
    if (std::isfinite(v)) probe.push_back(v);
  probe.push_back(464.0f);
  probe.push_back(464.5f);
  probe.push_back(3e38f);  // finite input, overflows the cast -> NaN code
  std::vector<uint8_t> codes(probe.size());
  const std::vector<float> scales = {1.0f};
  ASSERT_TRUE(EncodeFp8Fast(probe, scales, static_cast<int64_t>(probe.size()), codes));
  for (size_t i = 0; i < probe.size(); ++i)
    ASSERT_EQ(codes[i], EncodeE4M3(probe[i], Overflow::kNonSat)) << probe[i];
  // Tiny scales make finite weights overflow (NaN codes) without counting as non-finite input...
  const std::vector<float> tiny = {1e-30f};
  EXPECT_TRUE(EncodeFp8Fast(probe, tiny, static_cast<int64_t>(probe.size()), codes));
  // ...while a non-finite weight makes the kernel decline.
  probe[40] = kInf;
  EXPECT_FALSE(EncodeFp8Fast(probe, scales, static_cast<int64_t>(probe.size()), codes));
}

// Runs `body` once per SIMD target compiled into the kernels and supported by this CPU (AVX-512, AVX2,
// SSE4, SSSE3, scalar, ...), so every target's code is checked, not only the one dispatch picks.
template <typename F>
void ForEachTarget(F&& body) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    body(hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Blocks of 16 whose first element is the block max m * 6 with weight_scale_2 = 1, so that the block
// scale is m and w / denominator is exactly the probe value: every E2M1 rounding decision (values, ties
// and their fp32 neighbours), scaled by powers of two, plus zero, tiny, clamped and saturating blocks.
std::vector<float> Nvfp4Probe() {
  std::vector<float> e2m1;
  for (float v : GridProbe(Format::kE2M1))
    if (std::fabs(v) <= 6.0f) e2m1.push_back(v);  // NaN and the beyond-max probes drop out here
  std::vector<float> w;
  for (float m : {1.0f, 0.5f, 4.0f, 0x1p-6f, 448.0f}) {
    for (size_t i = 0; i < e2m1.size(); i += 15) {
      w.push_back(6.0f * m);
      for (size_t k = i; k < i + 15; ++k) w.push_back(k < e2m1.size() ? e2m1[k] * m : 0.0f);
    }
  }
  for (int k = 0; k < 16; ++k) w.push_back(0.0f);                       // zero block: scale 1
  for (int k = 0; k < 16; ++k) w.push_back(k % 2 ? -0.0f : 1e-30f);     // tiny block: scale clamped to 2^-9
  for (int k = 0; k < 16; ++k) w.push_back(k % 2 ? 3e4f : -1e3f * k);   // scale clamped to 448: codes saturate
  return w;
}

TEST(QuantKernels, PackingKernelsMatchReferenceOnEveryTarget) {
  auto random = Random(16 * 16 * 300 + 16 * 5, 10);  // several OpenMP chunks and a partial group of blocks
  random[7] = -0.0f;
  random[8] = 1e-40f;
  const std::vector<float> probe = Nvfp4Probe();
  ForEachTarget([&](const char* target) {
    // NVFP4: the probe with weight_scale_2 = 1; random weights with a realistic and an extreme ws2 (tiny:
    // quotients overflow to inf and saturate).
    for (auto [w, ws2] : {std::pair{probe, 1.0f}, std::pair{random, 0.01f}, std::pair{random, 0x1p-139f},
                          std::pair{random, 1e30f}}) {
      const size_t n = w.size();
      std::vector<uint8_t> fp(n / 2), fs(n / 16), rp(n / 2), rs(n / 16);
      const int64_t rows = static_cast<int64_t>(n / 16);
      ASSERT_TRUE(PackNvfp4Fast(w, rows, 16, ws2, fp, fs)) << target;
      ASSERT_TRUE(PackNvfp4Reference(w, rows, 16, ws2, rp, rs)) << target;
      for (size_t b = 0; b < n / 16; ++b) ASSERT_EQ(fs[b], rs[b]) << target << " ws2 " << ws2 << " block " << b;
      for (size_t i = 0; i < n / 2; ++i)
        ASSERT_EQ(fp[i], rp[i]) << target << " ws2 " << ws2 << " elements " << 2 * i << ": " << w[2 * i] << ", "
                                << w[2 * i + 1];
    }
    for (float bad : {kNaN, kInf, -kInf}) {
      for (size_t at : {size_t{0}, size_t{16 * 16 * 7 + 5}, random.size() - 1}) {  // first, middle, tail block
        auto w = random;
        w[at] = bad;
        std::vector<uint8_t> p(w.size() / 2), sc(w.size() / 16);
        EXPECT_FALSE(PackNvfp4Fast(w, static_cast<int64_t>(w.size() / 16), 16, 0.01f, p, sc)) << target << " " << at;
      }
    }
    // FP8: every E4M3 decision at scale 1, random weights with per-group scales from tiny (overflow -> NaN
    // code) to huge (subnormal codes), and -0.
    std::vector<float> grid;
    for (float v : GridProbe(Format::kE4M3))
      if (std::isfinite(v)) grid.push_back(v);
    for (float v : {464.0f, 464.5f, -464.5f, 3e38f, -0.0f}) grid.push_back(v);
    std::vector<uint8_t> fc(grid.size()), rc(grid.size());
    ASSERT_TRUE(EncodeFp8Fast(grid, std::vector<float>{1.0f}, static_cast<int64_t>(grid.size()), fc)) << target;
    ASSERT_TRUE(EncodeFp8Reference(grid, std::vector<float>{1.0f}, static_cast<int64_t>(grid.size()), rc));
    for (size_t i = 0; i < grid.size(); ++i) ASSERT_EQ(fc[i], rc[i]) << target << " " << grid[i];
    const int64_t group = 16 * 16 * 3 + 7;  // groups straddle vectors and OpenMP chunks
    std::vector<float> scales;
    for (int64_t g = 0; g * group < static_cast<int64_t>(random.size()); ++g)
      scales.push_back(std::ldexp(1.7f, static_cast<int>(g % 60) - 30) * (g % 7 == 0 ? 1e-30f : 1.0f));
    std::vector<uint8_t> fr(random.size()), rr(random.size());
    ASSERT_TRUE(EncodeFp8Fast(random, scales, group, fr)) << target;
    ASSERT_TRUE(EncodeFp8Reference(random, scales, group, rr));
    for (size_t i = 0; i < random.size(); ++i) ASSERT_EQ(fr[i], rr[i]) << target << " " << random[i];
    auto bad = random;
    bad[12345] = kNaN;
    EXPECT_FALSE(EncodeFp8Fast(bad, scales, group, fr)) << target;
  });
}

TEST(QuantKernels, ResultsDoNotDependOnThreadCount) {
  const QuantSpec spec = BlockSpecOf(NumBits::Float(2, 1), 16, true, NumBits::Float(4, 3));
  auto x = Random(1 << 18, 8);
  const std::vector<int64_t> shape = {256, 1024};
  const QdqPlan plan = MakeQdqPlan(spec, shape);
  std::vector<float> one(x.size()), many(x.size());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  ASSERT_TRUE(FakeQuantFast(plan, x, std::vector<float>{5.0f}, std::nullopt, one));
  omp_set_num_threads(std::max(2, saved));
  ASSERT_TRUE(FakeQuantFast(plan, x, std::vector<float>{5.0f}, std::nullopt, many));
  omp_set_num_threads(saved);
  ExpectSame(many, one, x, "threads");
  // Packing shares pieces of the input out among the threads: any thread count gives the reference bytes
  // (a size that is no multiple of the piece size, and a partial group of blocks at the end).
  const auto w = Random(16 * 16 * 1000 + 16 * 3 + 16, 11);
  std::vector<uint8_t> rp(w.size() / 2), rs(w.size() / 16), rc(w.size());
  const std::vector<float> scales = {0.01f, 0.02f, 0.03f};
  const int64_t group = static_cast<int64_t>(w.size() + 2) / 3;
  ASSERT_TRUE(PackNvfp4Reference(w, static_cast<int64_t>(w.size() / 16), 16, 0.01f, rp, rs));
  ASSERT_TRUE(EncodeFp8Reference(w, scales, group, rc));
  for (int threads : {1, 2, 3, 7}) {
    omp_set_num_threads(threads);
    std::vector<uint8_t> p(w.size() / 2), sc(w.size() / 16), c(w.size());
    ASSERT_TRUE(PackNvfp4Fast(w, static_cast<int64_t>(w.size() / 16), 16, 0.01f, p, sc));
    ASSERT_TRUE(EncodeFp8Fast(w, scales, group, c));
    EXPECT_EQ(p, rp) << threads;
    EXPECT_EQ(sc, rs) << threads;
    EXPECT_EQ(c, rc) << threads;
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace qforge::cpu
