// The quantization ops of the CUDA backend against the CPU backend, byte for byte (NaN payloads aside):
// QuantAmax, FakeQuant (f32; bf16 = the CPU's f32 result rounded to bf16), PackNvfp4 and EncodeFp8, with
// the errors they throw (same qforge::Error text), on random inputs with edge values (+-0, subnormals,
// rounding ties of every format, huge values, NaN / inf where legal), odd shapes and every group layout.
// Also checks that the calibration paths move no activation to the host. Runs on every device backend of
// consistency_util.h's DeviceBackendTest (f32 and bf16); skips without one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "qforge/numerics/amax_search.h"

#include "qforge/base/error.h"
#include "qforge/numerics/format.h"
#include "qforge/numerics/half.h"
#include "qforge/numerics/qdq.h"
#include "qforge/runtime/backend.h"
#include "tests/backend_consistency/consistency_util.h"
#include "tests/support/format_probe.h"

namespace qforge {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using Shape = std::vector<int64_t>;

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Same bit patterns, or both NaN; reports the first difference with its input.
::testing::AssertionResult SameFloats(const std::vector<float>& got, const std::vector<float>& want,
                                      const std::vector<float>& x) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << got.size() << " vs " << want.size() << " values";
  for (size_t i = 0; i < got.size(); ++i) {
    if (Bits(got[i]) == Bits(want[i]) || (std::isnan(got[i]) && std::isnan(want[i]))) continue;
    return ::testing::AssertionFailure() << "index " << i << ": x=" << (i < x.size() ? x[i] : 0.0f) << " cuda=" << got[i]
                                         << " (0x" << std::hex << Bits(got[i]) << ") cpu=" << want[i] << " (0x"
                                         << Bits(want[i]) << ")" << std::dec;
  }
  return ::testing::AssertionSuccess();
}

// Normal values over many binades, with edge values sprinkled in: +-0, fp32 subnormals, huge values,
// and (with `specials`) NaN and +-inf. `nonneg`: magnitudes only (unsigned specs).
std::vector<float> Inputs(size_t n, uint32_t seed, float scale = 1.0f, bool specials = false, bool nonneg = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-8, 8);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng) * std::ldexp(scale, ex(rng));
  const float edge[] = {0.0f, -0.0f, 1e-40f, -1e-45f, 3e-39f, 1e30f * scale, -3e38f, 0.5f, -2.5f, 1e-30f};
  std::uniform_int_distribution<size_t> pos(0, n == 0 ? 0 : n - 1);
  for (size_t k = 0; n > 0 && k < n / 23 + 1; ++k) x[pos(rng)] = edge[k % std::size(edge)];
  if (specials && n > 0) {
    const float sp[] = {kNaN, kInf, -kInf, -kNaN};
    for (size_t k = 0; k < n / 97 + 1; ++k) x[pos(rng)] = sp[k % 4];
  }
  if (nonneg)
    for (float& v : x) v = std::fabs(v);
  return x;
}

// Every rounding decision of a format at scale 1 (tests/support/format_probe.h), both signs.
std::vector<float> GridProbe(Format f) { return testing_support::RoundingProbe(f, {1.01f}); }

QuantSpec Spec(NumBits nb) {
  QuantSpec s;
  s.num_bits = nb;
  return s;
}
QuantSpec Axis(NumBits nb, std::vector<int> axis) {
  QuantSpec s = Spec(nb);
  s.axis = std::move(axis);
  return s;
}
QuantSpec Blocks(NumBits nb, std::vector<std::pair<int, std::optional<int64_t>>> sizes, bool dynamic = false,
                 std::optional<NumBits> scale = std::nullopt, bool four_over_six = false) {
  QuantSpec s = Spec(nb);
  s.block = BlockSpec{std::move(sizes), dynamic, scale, four_over_six};
  return s;
}
QuantSpec Nvfp4(int block = 16, int axis = -1) {
  return Blocks(NumBits::Float(2, 1), {{axis, block}}, true, NumBits::Float(4, 3));
}
QuantSpec Nvfp4Static(bool four_over_six = false) {
  return Blocks(NumBits::Float(2, 1), {{-1, 16}}, false, NumBits::Float(4, 3), four_over_six);
}
QuantSpec Mx(NumBits elem, int block = 32, int axis = -1) {
  return Blocks(elem, {{axis, block}}, true, NumBits::Float(8, 0));
}
const NumBits kFp8 = NumBits::Float(4, 3);

using consistency::DeviceBackendTest;

// The comparisons of one device backend `gpu` with the CPU reference `cpu` (bf16: the CPU's f32 result
// rounded to bf16, consistency::RoundBf16).
struct QuantCheck {
  Backend& gpu;
  Backend& cpu;
  bool bf16;

  template <typename T>
  Buffer ToGpu(const std::vector<T>& h) {
    return consistency::ToDevice(gpu, h);
  }
  template <typename T>
  std::vector<T> FromGpu(const void* d, size_t n) {
    return consistency::FromDevice<T>(gpu, d, n);
  }

  // CPU FakeQuant (rounded to bf16 in bf16 mode) against the GPU's, out of place, in place, and from an
  // input that is not 16-byte aligned.
  void ExpectQdq(const QuantSpec& s, const std::vector<float>& x, const Shape& shape, const std::vector<float>& amax,
                 std::optional<float> global = std::nullopt, const std::string& what = "") {
    SCOPED_TRACE(what);
    const size_t n = x.size();
    std::vector<float> want(n);
    std::string cpu_err, gpu_err;
    try {
      cpu.FakeQuant(s, x.data(), shape, amax, want.data(), global, "t");
    } catch (const Error& e) {
      cpu_err = e.what();
    }
    if (bf16) want = consistency::RoundBf16(std::move(want));
    Buffer dx = ToGpu(x), dout = gpu.Alloc(static_cast<int64_t>(n * 4));
    try {
      gpu.FakeQuant(s, dx.as<float>(), shape, amax, dout.as<float>(), global, "t");
    } catch (const Error& e) {
      gpu_err = e.what();
    }
    ASSERT_EQ(gpu_err, cpu_err);
    if (!cpu_err.empty()) return;
    EXPECT_TRUE(SameFloats(FromGpu<float>(dout.data(), n), want, x)) << "out of place";
    gpu.FakeQuant(s, dx.as<float>(), shape, amax, dx.as<float>(), global, "t");
    EXPECT_TRUE(SameFloats(FromGpu<float>(dx.data(), n), want, x)) << "in place";
    if (n > 0) {  // one float past an aligned start: the kernels' scalar paths
      std::vector<float> padded(n + 1, 0.0f);
      std::copy(x.begin(), x.end(), padded.begin() + 1);
      Buffer dp = ToGpu(padded), dq = gpu.Alloc(static_cast<int64_t>((n + 1) * 4));
      gpu.FakeQuant(s, dp.as<float>() + 1, shape, amax, dq.as<float>() + 1, global, "t");
      EXPECT_TRUE(SameFloats(FromGpu<float>(dq.as<float>() + 1, n), want, x)) << "unaligned";
    }
  }

  // QuantAmax on both backends: the same values (bitwise) or the same error.
  std::vector<float> ExpectAmax(const QuantSpec& s, const std::vector<float>& x, const Shape& shape,
                                const std::string& what = "") {
    SCOPED_TRACE(what);
    std::vector<float> want, got;
    std::string cpu_err, gpu_err;
    try {
      want = cpu.QuantAmax(s, x.data(), shape, "t");
    } catch (const Error& e) {
      cpu_err = e.what();
    }
    Buffer dx = ToGpu(x);
    try {
      got = gpu.QuantAmax(s, dx.as<float>(), shape, "t");
    } catch (const Error& e) {
      gpu_err = e.what();
    }
    EXPECT_EQ(gpu_err, cpu_err);
    EXPECT_TRUE(SameFloats(got, want, {}));
    return want;
  }

  // Calibrates on the CPU (finite copy of x) and fake-quantizes x on both backends with that amax.
  void ExpectCalibratedQdq(const QuantSpec& s, const std::vector<float>& x, const Shape& shape,
                           const std::string& what) {
    std::vector<float> xc = x;
    for (float& v : xc)
      if (!std::isfinite(v)) v = 1.0f;
    const std::vector<float> amax = ExpectAmax(s, xc, shape, what + " (amax)");
    ExpectQdq(s, x, shape, amax, std::nullopt, what);
  }

};

const Shape kShapes[] = {{}, {1}, {5}, {1, 16}, {3, 7}, {7, 100}, {5, 37}, {64, 48}, {2, 3, 40}, {129, 32}, {300, 1000}};

// mse's FP8 scale sweep: the device's choice per 16-element row block equals the CPU reference's exactly
// (same QDQ, double losses in the same order), with a padded last block, zero blocks, outliers and tiny
// values, for plain and four-over-six scales.
TEST_P(DeviceBackendTest, Nvfp4SweepBlocksEqualsTheReference) {
  Backend& be = dev();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 16}, {7, 37}, {65, 256}, {300, 1000}}) {
    for (bool four_over_six : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " 4/6 " << four_over_six);
      std::vector<float> w = Input(static_cast<size_t>(rows * cols), 61, -3.f, 3.f);
      for (int64_t j = 0; j < std::min<int64_t>(16, cols); ++j) w[static_cast<size_t>(j)] = 0.f;  // a zero block
      w[static_cast<size_t>(rows * cols / 2)] = 250.f;
      if (rows * cols > 40) w[40] = 1e-30f;
      float global = 0;
      for (float v : w) global = std::max(global, std::fabs(v));
      const std::vector<float> scales = Fp8SweepBlockScales(global, four_over_six);
      const int64_t nb = (cols + 15) / 16;
      std::vector<int32_t> want(static_cast<size_t>(rows * nb));
      Nvfp4SweepRowBlocks(w.data(), rows, cols, scales, want.data());
      Buffer dw = consistency::ToDevice(be, w), di = be.Alloc(rows * nb * 4);
      ASSERT_TRUE(be.Nvfp4SweepBlocks(dw.as<float>(), rows, cols, scales, di.as<int32_t>()));
      EXPECT_EQ(consistency::FromDevice<int32_t>(be, di), want);
    }
  }
}

TEST_P(DeviceBackendTest, QuantIntegerEveryLayout) {
  QuantCheck c{dev(), cpu(), bf16()};
  for (const Shape& shape : kShapes) {
    const int rank = static_cast<int>(shape.size());
    const std::vector<float> x = Inputs(Numel(shape), 10 + rank, 3.0f, true);
    const std::string name = "shape rank " + std::to_string(rank) + " numel " + std::to_string(Numel(shape));
    for (NumBits nb : {NumBits::Int(8), NumBits::Int(4), NumBits::Int(2), NumBits::Int(16)}) {
      c.ExpectCalibratedQdq(Spec(nb), x, shape, name + " per tensor");
      QuantSpec narrow = Spec(nb);
      narrow.narrow_range = true;
      c.ExpectQdq(narrow, x, shape, {1.7f}, std::nullopt, name + " narrow");
      if (rank >= 1) {
        c.ExpectCalibratedQdq(Axis(nb, {0}), x, shape, name + " axis 0");
        c.ExpectCalibratedQdq(Axis(nb, {-1}), x, shape, name + " axis -1");
        c.ExpectCalibratedQdq(Blocks(nb, {{-1, 16}}), x, shape, name + " blocks 16");
      }
      if (rank >= 2) {
        c.ExpectCalibratedQdq(Blocks(nb, {{-1, 128}}), x, shape, name + " blocks 128");
        c.ExpectCalibratedQdq(Blocks(nb, {{-1, 4}, {-2, 3}}), x, shape, name + " 2-D blocks");
        c.ExpectCalibratedQdq(Blocks(nb, {{0, 2}}), x, shape, name + " blocks on the first dim");
      }
      if (rank >= 3) c.ExpectCalibratedQdq(Axis(nb, {0, 2}), x, shape, name + " axis (0, 2)");
    }
  }
}

TEST_P(DeviceBackendTest, QuantIntegerEdgeAmaxAndTies) {
  QuantCheck c{dev(), cpu(), bf16()};
  std::vector<float> ties;
  for (int k = -140; k <= 140; ++k) ties.push_back(static_cast<float>(k) + 0.5f);  // x*scale ties at amax 127
  ties.insert(ties.end(), {0.0f, -0.0f, 1e-40f, kNaN, kInf, -kInf, 126.5f, -128.5f, 1e30f});
  const Shape shape = {static_cast<int64_t>(ties.size())};
  for (float a : {127.0f, 1.0f, 0.0f, 0x1p-24f, 0x1.000002p-24f, -3.0f, kNaN, kInf, 1e-30f, 3e38f})
    c.ExpectQdq(Spec(NumBits::Int(8)), ties, shape, {a}, std::nullopt, "amax " + std::to_string(a));
  // Per-group amax with the edge values in it.
  const std::vector<float> x = Inputs(6 * 50, 3, 1.0f, true);
  c.ExpectQdq(Axis(NumBits::Int(8), {0}), x, {6, 50}, {1.0f, 0.0f, kNaN, kInf, 1e-30f, -1.0f});
}

TEST_P(DeviceBackendTest, QuantUnsignedInteger) {
  QuantCheck c{dev(), cpu(), bf16()};
  QuantSpec u = Spec(NumBits::Int(8));
  u.is_unsigned = true;
  const std::vector<float> pos = Inputs(7 * 100, 4, 2.0f, false, true);
  c.ExpectCalibratedQdq(u, pos, {7, 100}, "unsigned per tensor");
  QuantSpec u1 = Axis(NumBits::Int(1), {0});
  u1.is_unsigned = true;
  c.ExpectCalibratedQdq(u1, pos, {7, 100}, "unsigned 1-bit per channel");
  // Negative inputs (first one at index 123; -inf later): the same "unsigned ... negative input" error.
  std::vector<float> neg = pos;
  neg[123] = -0.5f;
  neg[456] = -kInf;
  neg[50] = kNaN;  // NaN is not negative; calibration would reject it after the unsigned check
  c.ExpectAmax(u, neg, {7, 100}, "unsigned amax");
  c.ExpectAmax(u1, neg, {7, 100}, "unsigned per-channel amax");
  c.ExpectQdq(u, neg, {7, 100}, {3.0f}, std::nullopt, "unsigned qdq");
  std::vector<float> negzero = pos;
  negzero[9] = -0.0f;  // -0 is not negative
  c.ExpectAmax(u, negzero, {7, 100}, "unsigned -0");
  c.ExpectQdq(u, negzero, {7, 100}, {3.0f}, std::nullopt, "unsigned -0 qdq");
}

TEST_P(DeviceBackendTest, QuantFp8EveryLayout) {
  QuantCheck c{dev(), cpu(), bf16()};
  for (const Shape& shape : kShapes) {
    const int rank = static_cast<int>(shape.size());
    const std::vector<float> x = Inputs(Numel(shape), 20 + rank, 5.0f, true);
    const std::string name = "rank " + std::to_string(rank) + " numel " + std::to_string(Numel(shape));
    c.ExpectCalibratedQdq(Spec(kFp8), x, shape, name + " per tensor");
    QuantSpec dyn = Spec(kFp8);
    dyn.dynamic = true;
    c.ExpectQdq(dyn, x, shape, {}, std::nullopt, name + " dynamic per tensor");
    QuantSpec cst = Spec(kFp8);
    cst.use_constant_amax = true;
    c.ExpectQdq(cst, x, shape, {}, std::nullopt, name + " use_constant_amax");
    c.ExpectAmax(cst, x, shape, name + " use_constant_amax amax");
    QuantSpec c35 = Spec(kFp8);
    c35.constant_amax = 3.5;
    c.ExpectQdq(c35, x, shape, {}, std::nullopt, name + " constant_amax");
    if (rank >= 1) {
      c.ExpectCalibratedQdq(Axis(kFp8, {0}), x, shape, name + " axis 0");
      c.ExpectCalibratedQdq(Axis(kFp8, {-1}), x, shape, name + " axis -1 (columns)");
      QuantSpec tok = Blocks(kFp8, {{-1, std::nullopt}});  // all-null block_sizes: per-token axis
      tok.dynamic = true;
      c.ExpectQdq(tok, x, shape, {}, std::nullopt, name + " dynamic per token");
    }
    if (rank >= 2) c.ExpectCalibratedQdq(Blocks(kFp8, {{-1, 128}, {-2, 128}}), x, shape, name + " 128x128 blocks");
    if (rank >= 2) {
      QuantSpec dynblk = Blocks(kFp8, {{-1, 16}});
      dynblk.dynamic = true;
      c.ExpectQdq(dynblk, x, shape, {}, std::nullopt, name + " dynamic static-blocks");
    }
  }
  const Shape big = {3, 130, 260};  // experts x out x in, partial 128-blocks both ways
  c.ExpectCalibratedQdq(Blocks(kFp8, {{-1, 128}, {-2, 128}}), Inputs(Numel(big), 7, 1.0f, true), big, "3-D blocks");
}

TEST_P(DeviceBackendTest, QuantFp8RoundingDecisions) {
  QuantCheck c{dev(), cpu(), bf16()};
  const std::vector<float> probe = GridProbe(Format::kE4M3);
  const Shape shape = {static_cast<int64_t>(probe.size())};
  for (float a : {448.0f, 1.0f, 3.7f, 1e-3f, 1e-30f, 0.0f, 0x1p-24f, kNaN, kInf})
    c.ExpectQdq(Spec(kFp8), probe, shape, {a}, std::nullopt, "amax " + std::to_string(a));
}

TEST_P(DeviceBackendTest, QuantNvfp4Dynamic) {
  QuantCheck c{dev(), cpu(), bf16()};
  const Shape shapes[] = {{1, 16}, {4, 64}, {3, 40}, {33, 80}, {5}, {2, 3, 48}, {257, 1024}};
  for (const Shape& shape : shapes) {
    const std::string name = "numel " + std::to_string(Numel(shape));
    std::vector<float> x = Inputs(Numel(shape), 30 + shape.size(), 2.0f, true);
    if (x.size() >= 32) std::fill(x.begin() + 16, x.begin() + 32, 0.0f);  // an all-zero block
    if (x.size() >= 48) std::fill(x.begin() + 32, x.begin() + 48, kNaN);  // an all-NaN block
    c.ExpectAmax(Nvfp4(), x, shape, name + " amax with NaN");
    c.ExpectCalibratedQdq(Nvfp4(), x, shape, name + " calibrated global amax");
    c.ExpectQdq(Nvfp4(), x, shape, {}, std::nullopt, name + " own global amax (NaN-propagating)");
    std::vector<float> finite = x;
    for (float& v : finite)
      if (!std::isfinite(v)) v = -1.0f;
    c.ExpectQdq(Nvfp4(), finite, shape, {}, std::nullopt, name + " own global amax");
    for (float g : {0.0f, -1.0f, 1e-30f, kInf, kNaN, 2688.0f})
      c.ExpectQdq(Nvfp4(), finite, shape, {g}, std::nullopt, name + " global " + std::to_string(g));
    QuantSpec top = Nvfp4();
    top.dynamic = true;  // amax ignored, recomputed
    c.ExpectQdq(top, finite, shape, {123.0f}, std::nullopt, name + " type dynamic");
    c.ExpectQdq(Nvfp4(32), finite, shape, {5.0f}, std::nullopt, name + " block 32");
    c.ExpectQdq(Nvfp4(8), finite, shape, {5.0f}, std::nullopt, name + " block 8 (generic path)");
    c.ExpectQdq(Nvfp4(16, 0), finite, shape, {5.0f}, std::nullopt, name + " blocks along dim 0");
  }
  // Partial blocks whose real elements are all NaN: the padding zero makes the block max 0 (scale 1), so
  // the NaNs come out as -6 instead of -6 * 448 * g.
  std::vector<float> cols = Inputs(20 * 3, 77);
  for (int r = 16; r < 20; ++r) cols[r * 3 + 1] = kNaN;
  c.ExpectQdq(Nvfp4(16, 0), cols, {20, 3}, {5.0f}, std::nullopt, "all-NaN partial block along dim 0");
  std::vector<float> rows = Inputs(3 * 40, 78);
  for (int c = 32; c < 40; ++c) rows[40 + c] = kNaN;
  c.ExpectQdq(Nvfp4(), rows, {3, 40}, {5.0f}, std::nullopt, "all-NaN partial block along the last dim");
  c.ExpectQdq(Nvfp4(16), rows, {120}, {5.0f}, std::nullopt, "all-NaN partial block, rank 1");
  // Every E2M1 decision at scale 1: G = 2688 and a block max of 6 give s = 1.
  std::vector<float> probe;
  for (float v : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f}) {
    for (float t : {v, std::nextafter(v, 0.0f), std::nextafter(v, kInf)}) {
      probe.insert(probe.end(), {6.0f, t, -t, 0.0f, -0.0f, 1e-40f, t * 0.5f, -t, -6.0f, t, t, t, t, t, t, t});
    }
  }
  c.ExpectQdq(Nvfp4(), probe, {static_cast<int64_t>(probe.size() / 16), 16}, {2688.0f}, std::nullopt, "E2M1 ties");
}

TEST_P(DeviceBackendTest, QuantNvfp4Static) {
  QuantCheck c{dev(), cpu(), bf16()};
  const Shape shapes[] = {{1, 16}, {4, 64}, {7, 48}, {2, 3, 32}, {130, 256}};
  for (const Shape& shape : shapes) {
    const std::string name = "numel " + std::to_string(Numel(shape));
    const std::vector<float> x = Inputs(Numel(shape), 40 + shape.size(), 1.5f, true);
    for (bool four_over_six : {false, true}) {
      const QuantSpec s = Nvfp4Static(four_over_six);
      std::vector<float> xc = x;
      for (float& v : xc)
        if (!std::isfinite(v)) v = 0.5f;
      std::vector<float> amax = c.ExpectAmax(s, xc, shape, name + " block amax");
      c.ExpectQdq(s, x, shape, amax, std::nullopt, name + " promoted global");
      c.ExpectQdq(s, x, shape, amax, 7.0f, name + " global 7");
      if (amax.size() >= 3) {
        amax[0] = 0.0f;  // zero scale: an all-zero block
        amax[1] = kNaN;  // NaN scale -> 1
        amax[2] = 1e-30f;
        c.ExpectQdq(s, x, shape, amax, 7.0f, name + " edge block amax");
        c.ExpectQdq(s, x, shape, amax, std::nullopt, name + " NaN promoted global");
      }
      c.ExpectQdq(s, x, shape, {2.0f}, std::nullopt, name + " broadcast amax");
      c.ExpectQdq(s, x, shape, {0.0f}, std::nullopt, name + " zero amax");
      QuantSpec dyn = s;
      dyn.dynamic = true;
      c.ExpectQdq(dyn, x, shape, {}, std::nullopt, name + " type dynamic");
      c.ExpectQdq(dyn, x, shape, {}, 3.0f, name + " type dynamic, global 3");
      QuantSpec cst = s;
      cst.constant_amax = 6.0;
      c.ExpectQdq(cst, x, shape, {}, std::nullopt, name + " constant amax");
    }
  }
}

TEST_P(DeviceBackendTest, QuantMxEveryElementFormat) {
  QuantCheck c{dev(), cpu(), bf16()};
  const NumBits elems[] = {NumBits::Float(4, 3), NumBits::Float(5, 2), NumBits::Float(3, 2), NumBits::Float(2, 3),
                           NumBits::Float(2, 1), NumBits::Int(8)};
  const Shape shapes[] = {{1, 32}, {4, 64}, {3, 40}, {5}, {2, 3, 96}, {65, 1024}};
  for (NumBits e : elems) {
    for (const Shape& shape : shapes) {
      const std::string name = e.ToString() + " numel " + std::to_string(Numel(shape));
      std::vector<float> x = Inputs(Numel(shape), 50 + shape.size(), 1e3f, true);
      if (x.size() >= 64) std::fill(x.begin() + 32, x.begin() + 64, kNaN);
      c.ExpectQdq(Mx(e), x, shape, {}, std::nullopt, name);
      c.ExpectAmax(Mx(e), x, shape, name + " amax (none)");
      c.ExpectQdq(Mx(e, 16), x, shape, {}, std::nullopt, name + " block 16");
      c.ExpectQdq(Mx(e, 8), x, shape, {}, std::nullopt, name + " block 8 (generic path)");
      c.ExpectQdq(Mx(e, 32, 0), x, shape, {}, std::nullopt, name + " blocks along dim 0");
    }
    // Every rounding decision of the element grid with exponent 0 (block max = the format's max).
    if (e.is_float()) {
      const Format f = *FormatFromExMy(e.exponent, e.mantissa);
      std::vector<float> probe = GridProbe(f);
      probe.resize((probe.size() + 31) / 32 * 32, 0.0f);
      for (size_t b = 0; b < probe.size(); b += 32) probe[b] = GetTraits(f).max_finite;
      c.ExpectQdq(Mx(e), probe, {static_cast<int64_t>(probe.size())}, {}, std::nullopt, e.ToString() + " grid");
    }
  }
}

TEST_P(DeviceBackendTest, QuantAmaxErrorsNameTheFirstBadValue) {
  QuantCheck c{dev(), cpu(), bf16()};
  for (const QuantSpec& s : {Spec(kFp8), Axis(kFp8, {0}), Axis(NumBits::Int(8), {-1}), Nvfp4(), Nvfp4Static(),
                             Blocks(NumBits::Int(4), {{-1, 128}})}) {
    std::vector<float> x = Inputs(9 * 160, 5);
    x[1000] = kInf;
    x[777] = kNaN;
    x[1200] = -kInf;
    c.ExpectAmax(s, x, {9, 160}, "NaN first");
    x[777] = 1.0f;
    c.ExpectAmax(s, x, {9, 160}, "inf first");
  }
}

TEST_P(DeviceBackendTest, QuantValidationErrors) {
  QuantCheck c{dev(), cpu(), bf16()};
  const std::vector<float> x = Inputs(4 * 64, 6);
  const Shape shape = {4, 64};
  c.ExpectQdq(Spec(kFp8), x, shape, {}, std::nullopt, "static without amax");
  c.ExpectQdq(Axis(kFp8, {0}), x, shape, {1.0f, 2.0f}, std::nullopt, "wrong amax count");
  c.ExpectQdq(Nvfp4(), x, shape, {1.0f, 2.0f}, std::nullopt, "two NVFP4 global amax");
  c.ExpectQdq(Axis(kFp8, {5}), x, shape, {1.0f}, std::nullopt, "axis out of range");
  c.ExpectQdq(Spec(NumBits::Float(5, 2)), x, shape, {1.0f}, std::nullopt, "static E5M2");
  c.ExpectQdq(Blocks(NumBits::Float(2, 1), {{-1, 16}}, false), x, shape, {1.0f}, std::nullopt, "static E2M1 w/o scale");
  c.ExpectAmax(Axis(kFp8, {2}), x, shape, "amax axis out of range");
}

TEST_P(DeviceBackendTest, QuantGroupLayoutBeyondTheKernelsRank) {
  QuantCheck c{dev(), cpu(), bf16()};
  // 18 dims alternating kept / reduced: 9 dims after merging, more than the kernels index; still exact.
  const Shape shape(18, 2);
  std::vector<int> axis;
  for (int d = 0; d < 18; d += 2) axis.push_back(d);
  c.ExpectCalibratedQdq(Axis(NumBits::Int(8), axis), Inputs(Numel(shape), 8, 1.0f, true), shape, "rank 18");
}

TEST_P(DeviceBackendTest, QuantPackNvfp4) {
  QuantCheck c{dev(), cpu(), bf16()};
  const Shape shapes[] = {{1, 16}, {3, 64}, {5, 48}, {128, 1024}};
  for (const Shape& shape : shapes) {
    const int64_t rows = shape[0], cols = shape[1], n = rows * cols;
    std::vector<float> w = Inputs(n, 60 + rows, 0.02f);
    std::fill(w.begin(), w.begin() + 16, 0.0f);  // an all-zero block (scale 0 -> 1)
    float m = 0;
    for (float v : w) m = std::max(m, std::fabs(v));
    // Degenerate weight_scale_2 too (0: 0/0 in the zero block; +-NaN; inf): the CPU's NaN signs.
    for (float ws2 : {m / 2688.0f, 1e-3f, 1.0f, 1e-30f, 0.0f, kNaN, -kNaN, kInf, 1e-44f}) {
      std::vector<uint8_t> want_p(n / 2), want_s(n / 16);
      ASSERT_TRUE(c.cpu.PackNvfp4(w.data(), rows, cols, ws2, want_p.data(), want_s.data()));
      Buffer dw = c.ToGpu(w), dp = c.gpu.Alloc(n / 2), ds = c.gpu.Alloc(n / 16);
      const bool regular = ws2 >= 0x1p-100f && ws2 <= std::numeric_limits<float>::max();
      // The device declines degenerate weight_scale_2 (its callers then run the host reference).
      ASSERT_EQ(c.gpu.PackNvfp4(dw.as<float>(), rows, cols, ws2, dp.as<uint8_t>(), ds.as<uint8_t>()), regular)
          << "ws2 " << ws2;
      if (!regular) continue;
      EXPECT_EQ(c.FromGpu<uint8_t>(dp.data(), n / 2), want_p) << "packed, ws2 " << ws2;
      EXPECT_EQ(c.FromGpu<uint8_t>(ds.data(), n / 16), want_s) << "scales, ws2 " << ws2;
    }
    // Values at and next to the export rounding boundaries, blocks of max 7 (block scale 7 = e4m3(7)).
    std::vector<float> ties(n);
    const float pts[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, -0.75f, -0.0f, 0.0f, 3.5f, -5.0f, 7.0f};
    for (int64_t i = 0; i < n; ++i) ties[i] = pts[i % std::size(pts)] * (i % 16 == 0 ? 1.0f : 0.999999f);
    std::vector<uint8_t> want_p(n / 2), want_s(n / 16);
    ASSERT_TRUE(c.cpu.PackNvfp4(ties.data(), rows, cols, 1.0f / 6.0f, want_p.data(), want_s.data()));
    Buffer dt = c.ToGpu(ties), dp = c.gpu.Alloc(n / 2), ds = c.gpu.Alloc(n / 16);
    ASSERT_TRUE(c.gpu.PackNvfp4(dt.as<float>(), rows, cols, 1.0f / 6.0f, dp.as<uint8_t>(), ds.as<uint8_t>()));
    EXPECT_EQ(c.FromGpu<uint8_t>(dp.data(), n / 2), want_p) << "ties";
    EXPECT_EQ(c.FromGpu<uint8_t>(ds.data(), n / 16), want_s) << "ties";
    // A non-finite weight: both refuse.
    for (float bad : {kNaN, kInf, -kInf}) {
      std::vector<float> wb = w;
      wb[n - 3] = bad;
      Buffer dbw = c.ToGpu(wb);
      EXPECT_FALSE(c.cpu.PackNvfp4(wb.data(), rows, cols, 1.0f, want_p.data(), want_s.data()));
      EXPECT_FALSE(c.gpu.PackNvfp4(dbw.as<float>(), rows, cols, 1.0f, dp.as<uint8_t>(), ds.as<uint8_t>()));
    }
  }
}

TEST_P(DeviceBackendTest, QuantEncodeFp8) {
  QuantCheck c{dev(), cpu(), bf16()};
  const Shape shapes[] = {{1, 1}, {3, 7}, {5, 64}, {257, 1001}};
  for (const Shape& shape : shapes) {
    const int64_t rows = shape[0], cols = shape[1], n = rows * cols;
    std::vector<float> w = Inputs(n, 70 + rows, 1.0f);
    for (int64_t group : {n, cols, int64_t{1}, int64_t{3}}) {
      const int64_t ng = (n + group - 1) / group;
      std::vector<float> scales(ng);
      std::mt19937 rng(static_cast<uint32_t>(group));
      std::uniform_real_distribution<float> u(1e-3f, 0.05f);
      for (float& s : scales) s = u(rng);  // |w/scale| past 464 -> the NaN code
      std::vector<uint8_t> want(n);
      ASSERT_TRUE(c.cpu.EncodeFp8(w.data(), scales.data(), n, group, want.data()));
      Buffer dw = c.ToGpu(w), dsc = c.ToGpu(scales), dc = c.gpu.Alloc(n);
      ASSERT_TRUE(c.gpu.EncodeFp8(dw.as<float>(), dsc.as<float>(), n, group, dc.as<uint8_t>()));
      EXPECT_EQ(c.FromGpu<uint8_t>(dc.data(), n), want) << "group " << group;
      std::vector<float> wb = w;
      wb[n / 2] = kNaN;
      Buffer dwb = c.ToGpu(wb);
      EXPECT_FALSE(c.cpu.EncodeFp8(wb.data(), scales.data(), n, group, want.data()));
      EXPECT_FALSE(c.gpu.EncodeFp8(dwb.as<float>(), dsc.as<float>(), n, group, dc.as<uint8_t>()));
    }
  }
  // Degenerate scales: 0 (w/0 = +-inf, 0/0 = NaN) and +-NaN, whose NaN codes keep the sign the CPU gives.
  {
    const std::vector<float> w = {0.0f, -0.0f, 1.0f, -2.0f, 0.0f, 3.0f, -0.0f, 5.0f, 1e-40f};
    const std::vector<float> scales = {0.0f, kNaN, -kNaN};
    const int64_t n = static_cast<int64_t>(w.size());
    std::vector<uint8_t> want(n);
    ASSERT_TRUE(c.cpu.EncodeFp8(w.data(), scales.data(), n, 3, want.data()));
    Buffer dw = c.ToGpu(w), ds = c.ToGpu(scales), dc = c.gpu.Alloc(n);
    ASSERT_TRUE(c.gpu.EncodeFp8(dw.as<float>(), ds.as<float>(), n, 3, dc.as<uint8_t>()));
    EXPECT_EQ(c.FromGpu<uint8_t>(dc.data(), n), want) << "degenerate scales";
  }
  // Every rounding decision of the cast at scale 1.
  const std::vector<float> probe = GridProbe(Format::kE4M3);
  const int64_t n = static_cast<int64_t>(probe.size());
  const std::vector<float> one = {1.0f};
  std::vector<uint8_t> want(n);
  ASSERT_TRUE(c.cpu.EncodeFp8(probe.data(), one.data(), n, n, want.data()));
  Buffer dw = c.ToGpu(probe), ds = c.ToGpu(one), dc = c.gpu.Alloc(n);
  ASSERT_TRUE(c.gpu.EncodeFp8(dw.as<float>(), ds.as<float>(), n, n, dc.as<uint8_t>()));
  EXPECT_EQ(c.FromGpu<uint8_t>(dc.data(), n), want);
}

// The export error sums: the decode is exact, so the device's double sums differ from the CPU's only by
// summation order.
TEST_P(DeviceBackendTest, QuantEncodingErrorSums) {
  QuantCheck c{dev(), cpu(), bf16()};
  auto near = [](const ErrorSums& got, const ErrorSums& want, const std::string& what) {
    EXPECT_NEAR(got.sq_err, want.sq_err, 1e-12 * want.sq_err + 1e-300) << what;
    EXPECT_NEAR(got.sq_ref, want.sq_ref, 1e-12 * want.sq_ref + 1e-300) << what;
  };
  for (const Shape& shape : {Shape{1, 16}, Shape{5, 48}, Shape{333, 1024}}) {
    const int64_t rows = shape[0], cols = shape[1], n = rows * cols;
    const std::vector<float> w = Inputs(n, 80 + rows, 0.02f);
    float m = 0;
    for (float v : w) m = std::max(m, std::fabs(v));
    const float ws2 = m / 2688.0f;
    std::vector<uint8_t> p(n / 2), s(n / 16);
    ASSERT_TRUE(c.cpu.PackNvfp4(w.data(), rows, cols, ws2, p.data(), s.data()));
    Buffer dw = c.ToGpu(w), dp = c.ToGpu(p), ds = c.ToGpu(s);
    const ErrorSums want = c.cpu.Nvfp4Error(w.data(), p.data(), s.data(), rows, cols, ws2);
    EXPECT_GT(want.sq_err, 0);
    near(c.gpu.Nvfp4Error(dw.as<float>(), dp.as<uint8_t>(), ds.as<uint8_t>(), rows, cols, ws2), want, "nvfp4");
    for (int64_t group : {n, cols}) {
      std::vector<float> scales(static_cast<size_t>(n / group), m / 448.0f);
      std::vector<uint8_t> codes(n);
      ASSERT_TRUE(c.cpu.EncodeFp8(w.data(), scales.data(), n, group, codes.data()));
      Buffer dsc = c.ToGpu(scales), dc = c.ToGpu(codes);
      near(c.gpu.Fp8Error(dw.as<float>(), dc.as<uint8_t>(), dsc.as<float>(), n, group),
           c.cpu.Fp8Error(w.data(), codes.data(), scales.data(), n, group), "fp8 group " + std::to_string(group));
    }
  }
}

// The calibration paths keep activations on the device: only the amax scalars and a few bytes of
// statistics cross (a backend of its own, so that no other test's transfers count).
TEST_P(DeviceBackendTest, QuantCalibrationPathsMoveNoActivations) {
  const std::unique_ptr<Backend> own = CreateBackend(GetParam().name, GetParam().dtype);
  QuantCheck c{*own, cpu(), bf16()};
  const Shape shape = {512, 4096};
  const int64_t n = Numel(shape);
  const std::vector<float> x = Inputs(n, 9);
  Buffer dx = c.ToGpu(x), dy = c.gpu.Alloc(n * 4);
  auto d2h = [&] { return c.gpu.stats().d2h_bytes; };
  auto h2d = [&] { return c.gpu.stats().h2d_bytes; };
  int64_t before = d2h();
  const std::vector<float> amax = c.gpu.QuantAmax(Spec(kFp8), dx.as<float>(), shape, "act");
  EXPECT_LE(d2h() - before, 64) << "per-tensor amax";
  before = d2h();
  int64_t up = h2d();
  c.gpu.FakeQuant(Spec(kFp8), dx.as<float>(), shape, amax, dy.as<float>(), std::nullopt, "act");
  c.gpu.FakeQuant(Nvfp4(), dx.as<float>(), shape, {}, dy.as<float>(), std::nullopt, "act");
  c.gpu.FakeQuant(Nvfp4(), dx.as<float>(), shape, amax, dy.as<float>(), std::nullopt, "act");
  c.gpu.FakeQuant(Mx(kFp8), dx.as<float>(), shape, {}, dy.as<float>(), std::nullopt, "act");
  QuantSpec kv = Spec(kFp8);
  kv.use_constant_amax = true;
  const Shape kv_shape = {4, 8, 128, 512};  // heads-major [batch, kv_heads, seq, head_dim]
  c.gpu.FakeQuant(kv, dx.as<float>(), kv_shape, {}, dy.as<float>(), std::nullopt, "kv");
  QuantSpec tok = Blocks(kFp8, {{-1, std::nullopt}});
  tok.dynamic = true;
  c.gpu.FakeQuant(tok, dx.as<float>(), shape, {}, dy.as<float>(), std::nullopt, "per token");
  c.gpu.Synchronize();
  EXPECT_EQ(d2h() - before, 0) << "fake quant of activations";
  EXPECT_EQ(h2d() - up, 0) << "fake quant with one amax";
}

}  // namespace
}  // namespace qforge
