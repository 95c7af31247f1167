// Every forward op of every device backend against the CPU reference: random inputs, odd shapes (rows
// not a multiple of a tile, one token, batch 2, GQA ratios, head_dim 64/128/256 and odd ones, experts that
// get no token, ldy > n, accumulate), in f32 and bf16.
//
// Tolerances, per op (f32 / bf16):
//   bit-exact        Add, Rope, SwapMiddleAxes, EmbedRows, GatherRows, ScatterAddRows, GroupRowsByExpert,
//                    Amax: the same fp32 operations in the same order (then the same bf16 rounding).
//   1e-5 / 1 ulp     RmsNorm, SiluMul, Softmax, SigmoidScaleRows, TopKRouting weights: summation order or
//                    exp implementation differ by a few fp32 ulps; in bf16 that can move a value across a
//                    rounding boundary, one bf16 ulp (2^-7 relative at most).
//   nmse             Gemm, attention: reductions of k terms in a different order (f32 nmse <= 1e-10);
//                    bf16 tensor cores see the same bf16 operands (one ulp after rounding); bf16 flash
//                    attention also rounds the probabilities to bf16 for P·V, as torch does.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "qforge/numerics/half.h"
#include "tests/backend_consistency/consistency_util.h"

namespace qforge::consistency {
namespace {

float MaxAbs(const std::vector<float>& v) {
  float m = 0.f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Elementwise ops whose results differ from the CPU's by a few fp32 ulps.
Tolerance FewUlps(bool bf16) { return bf16 ? Tolerance{kBf16Ulp, 1e-30} : Tolerance{1e-5, 1e-30}; }

TEST_P(DeviceBackendTest, Gemm) {
  Backend& be = dev();
  struct Case {
    int64_t m, n, k;
    bool bias, accumulate;
    int64_t pad;  // ldy = n + pad
  };
  for (const Case& c : {Case{1, 1, 1, false, false, 0}, Case{7, 13, 5, true, false, 0}, Case{33, 65, 129, true, true, 3},
                        Case{128, 256, 64, false, true, 0}, Case{200, 96, 384, true, false, 17},
                        Case{5, 8, 0, true, true, 2}, Case{4, 6, 0, false, false, 0}, Case{3, 4096, 4096, false, false, 0},
                        Case{513, 1000, 72, true, true, 24}}) {
    SCOPED_TRACE(::testing::Message() << "m " << c.m << " n " << c.n << " k " << c.k << " bias " << c.bias
                                      << " accumulate " << c.accumulate << " ldy " << c.n + c.pad);
    const int64_t ldy = c.n + c.pad;
    const auto x = Input(c.m * c.k, 1), w = Input(c.n * c.k, 2), bias = Input(c.n, 3), y0 = Input(c.m * ldy, 4);
    std::vector<float> want = y0;
    cpu().Gemm(x.data(), w.data(), c.bias ? bias.data() : nullptr, want.data(), c.m, c.n, c.k, c.accumulate, ldy);
    want = ReferenceOut(want);

    Buffer dx = ToDevice(be, x), dbias = ToDevice(be, bias), dy = ToDevice(be, y0);
    Buffer dw = be.UploadWeight(w.data(), c.n * c.k, nullptr);
    be.Gemm(dx.as<float>(), WeightRef(dw.data(), be.weight_dtype()), c.bias ? dbias.as<float>() : nullptr,
            dy.as<float>(), c.m, c.n, c.k, c.accumulate, ldy);
    const auto got = FromDevice<float>(be, dy);
    const double scale = std::max(1.f, MaxAbs(want));
    const Tolerance tol = bf16() ? Tolerance{kBf16Ulp, 1e-5 * scale, 1e-5} : Tolerance{1e-5, 1e-5 * scale, 1e-10};
    EXPECT_TRUE(Near("Gemm", got, want, tol));
    for (int64_t r = 0; r < c.m; ++r) {
      for (int64_t j = c.n; j < ldy; ++j) ASSERT_EQ(got[r * ldy + j], y0[r * ldy + j]) << "column " << j << " beyond n";
    }
    if (bf16()) {
      // F32 weights in bf16 mode are rounded on the fly: the same result.
      Buffer dw32 = ToDevice(be, w), dy2 = ToDevice(be, y0);
      be.Gemm(dx.as<float>(), dw32.as<float>(), c.bias ? dbias.as<float>() : nullptr, dy2.as<float>(), c.m, c.n, c.k,
              c.accumulate, ldy);
      EXPECT_TRUE(BitExact("Gemm with F32 weights in bf16", FromDevice<float>(be, dy2), got));
    }
  }
}

// GemmShared is Gemm per output (x converted once), and GatedLinear is Gemm, Gemm, SiluMul: bit for bit
// on the device itself (the same cuBLAS products, the same rounding), and near the CPU's composition.
TEST_P(DeviceBackendTest, GemmSharedAndGatedLinear) {
  Backend& be = dev();
  for (auto [m, k] : {std::pair<int64_t, int64_t>{1, 8}, {37, 96}, {300, 256}, {2048, 512}}) {
    SCOPED_TRACE(::testing::Message() << "m " << m << " k " << k);
    const int64_t ns[3] = {64, 16, 24};
    const auto x = Input(m * k, 61), bias = Input(ns[1], 62);
    Buffer dx = ToDevice(be, x), dbias = ToDevice(be, bias);
    std::vector<Buffer> dw, dy, ref;
    std::vector<Backend::GemmOut> outs;
    for (int i = 0; i < 3; ++i) {
      const auto w = Input(ns[i] * k, 63 + i);
      dw.push_back(i == 2 ? ToDevice(be, w) : be.UploadWeight(w.data(), ns[i] * k, nullptr));  // one f32 weight
      const WeightRef wr(dw.back().data(), i == 2 ? DType::kF32 : be.weight_dtype());
      dy.push_back(be.Alloc(m * ns[i] * 4));
      ref.push_back(be.Alloc(m * ns[i] * 4));
      const float* b = i == 1 ? dbias.as<float>() : nullptr;
      be.Gemm(dx.as<float>(), wr, b, ref.back().as<float>(), m, ns[i], k, false);
      outs.push_back({wr, b, dy.back().as<float>(), ns[i]});
    }
    be.GemmShared(dx.as<float>(), m, k, outs);
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(BitExact("GemmShared output " + std::to_string(i), FromDevice<float>(be, dy[i]),
                           FromDevice<float>(be, ref[i])));
    }

    const int64_t n = 72;
    const auto wg = Input(n * k, 70), wu = Input(n * k, 71);
    Buffer dwg = be.UploadWeight(wg.data(), n * k, nullptr), dwu = be.UploadWeight(wu.data(), n * k, nullptr);
    const WeightRef g_ref(dwg.data(), be.weight_dtype()), u_ref(dwu.data(), be.weight_dtype());
    Buffer g = be.Alloc(m * n * 4), u = be.Alloc(m * n * 4), g2 = be.Alloc(m * n * 4), u2 = be.Alloc(m * n * 4);
    be.Gemm(dx.as<float>(), g_ref, nullptr, g2.as<float>(), m, n, k, false);
    be.Gemm(dx.as<float>(), u_ref, nullptr, u2.as<float>(), m, n, k, false);
    be.SiluMul(g2.as<float>(), u2.as<float>(), g2.as<float>(), m * n);
    be.GatedLinear(dx.as<float>(), g_ref, u_ref, g.as<float>(), u.as<float>(), m, n, k);
    const auto got = FromDevice<float>(be, g);
    EXPECT_TRUE(BitExact("GatedLinear", got, FromDevice<float>(be, g2)));

    std::vector<float> cg(m * n), cu(m * n);
    cpu().Gemm(x.data(), wg.data(), nullptr, cg.data(), m, n, k, false);
    cpu().Gemm(x.data(), wu.data(), nullptr, cu.data(), m, n, k, false);
    if (bf16()) cg = RoundBf16(cg), cu = RoundBf16(cu);
    cpu().SiluMul(cg.data(), cu.data(), cg.data(), m * n);
    const std::vector<float> want = ReferenceOut(cg);
    const double scale = std::max(1.f, MaxAbs(want));
    // Two rounded products feed the SiluMul in bf16: each may be one ulp off, then the result is rounded.
    const Tolerance tol =
        bf16() ? Tolerance{3 * kBf16Ulp, 1e-5 * scale, 1e-5} : Tolerance{1e-5, 1e-5 * scale, 1e-10};
    EXPECT_TRUE(Near("GatedLinear vs CPU", got, want, tol));
  }
}

// GatedMlp is GatedLinear, AmaxFold of h and the down Gemm: bit for bit on the device (h reaches the down
// GEMM as the same bf16 operand), with and without accumulation, at shapes whose bf16 arrays are not
// 8-byte aligned (m * inter odd: the element-wise path).
TEST_P(DeviceBackendTest, GatedMlp) {
  Backend& be = dev();
  for (auto [m, k, inter, n_out] : {std::array<int64_t, 4>{1, 8, 24, 8}, {3, 40, 7, 9}, {257, 128, 352, 96}}) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " k " << k << " inter " << inter << " n_out " << n_out
                                        << " accumulate " << accumulate);
      const auto x = Input(m * k, 80), wg = Input(inter * k, 81), wu = Input(inter * k, 82),
                 wd = Input(n_out * inter, 83), y0 = Input(m * n_out, 84);
      Buffer dx = ToDevice(be, x);
      Buffer dwg = be.UploadWeight(wg.data(), inter * k, nullptr), dwu = be.UploadWeight(wu.data(), inter * k, nullptr),
             dwd = be.UploadWeight(wd.data(), n_out * inter, nullptr);
      const DType wt = be.weight_dtype();
      const WeightRef g_ref(dwg.data(), wt), u_ref(dwu.data(), wt), d_ref(dwd.data(), wt);
      Buffer g = be.Alloc(m * inter * 4), u = be.Alloc(m * inter * 4), y = ToDevice(be, y0), slot = be.Alloc(4);
      Buffer g2 = be.Alloc(m * inter * 4), u2 = be.Alloc(m * inter * 4), y2 = ToDevice(be, y0), slot2 = be.Alloc(4);
      be.Zero(slot.data(), 4);
      be.Zero(slot2.data(), 4);
      be.GatedLinear(dx.as<float>(), g_ref, u_ref, g2.as<float>(), u2.as<float>(), m, inter, k);
      be.AmaxFold(g2.as<float>(), m * inter, slot2.as<uint32_t>());
      be.Gemm(g2.as<float>(), d_ref, nullptr, y2.as<float>(), m, n_out, inter, accumulate);
      be.GatedMlp(dx.as<float>(), m, k, g_ref, u_ref, inter, d_ref, n_out, y.as<float>(), accumulate, g.as<float>(),
                  u.as<float>(), slot.as<uint32_t>());
      EXPECT_TRUE(BitExact("GatedMlp", FromDevice<float>(be, y), FromDevice<float>(be, y2)));
      EXPECT_EQ(FromDevice<uint32_t>(be, slot)[0], FromDevice<uint32_t>(be, slot2)[0]);
      EXPECT_GT(FromDevice<uint32_t>(be, slot)[0], 0u);
      // Without a slot: the same output.
      Buffer y3 = ToDevice(be, y0);
      be.GatedMlp(dx.as<float>(), m, k, g_ref, u_ref, inter, d_ref, n_out, y3.as<float>(), accumulate, g.as<float>(),
                  u.as<float>(), nullptr);
      EXPECT_TRUE(BitExact("GatedMlp without amax", FromDevice<float>(be, y3), FromDevice<float>(be, y2)));
    }
  }
}

// RopeToHeads is SwapMiddleAxes then Rope, bit for bit: on the device itself and against the CPU (both
// ops are bit-exact across backends).
TEST_P(DeviceBackendTest, RopeToHeads) {
  Backend& be = dev();
  for (auto [b, h, s, d] : {std::array<int64_t, 4>{1, 1, 1, 2}, {2, 3, 5, 64}, {3, 8, 33, 128}}) {
    SCOPED_TRACE(::testing::Message() << "batch " << b << " heads " << h << " seq " << s << " head_dim " << d);
    const int64_t n = b * s * h * d;
    const auto x = Input(n, 90, -4.f, 4.f), cos = Input(s * d / 2, 91), sin = Input(s * d / 2, 92);
    Buffer dx = ToDevice(be, x), dc = ToDevice(be, cos), ds = ToDevice(be, sin), y = be.Alloc(n * 4), y2 = be.Alloc(n * 4);
    be.RopeToHeads(dx.as<float>(), y.as<float>(), b, h, s, d, dc.as<float>(), ds.as<float>());
    be.SwapMiddleAxes(dx.as<float>(), y2.as<float>(), b, s, h, d);
    be.Rope(y2.as<float>(), b, h, s, d, dc.as<float>(), ds.as<float>());
    const auto got = FromDevice<float>(be, y);
    EXPECT_TRUE(BitExact("RopeToHeads on the device", got, FromDevice<float>(be, y2)));
    std::vector<float> want(n);
    cpu().RopeToHeads(x.data(), want.data(), b, h, s, d, cos.data(), sin.data());
    EXPECT_TRUE(BitExact("RopeToHeads against the CPU", got, ReferenceOut(want)));
  }
}

// ToBf16 / FromBf16 are the same RNE rounding and the same widening on every backend: byte-identical to
// numerics' scalar codecs, at aligned and unaligned addresses (the vector and the tail kernels), with NaN,
// infinities, subnormals and ties.
TEST_P(DeviceBackendTest, Bf16Conversions) {
  Backend& be = dev();
  std::vector<float> x = Input(4099, 41, -1e3f, 1e3f);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::infinity(), 0.f, -0.f, 1e-40f, -3e-39f,
                            std::bit_cast<float>(0x3F808000u), std::bit_cast<float>(0x3F818000u),  // ties
                            std::bit_cast<float>(0x7F7FFFFFu), 3.3895314e38f};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 7] = specials[i];
  std::vector<uint16_t> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = F32ToBf16Rne(x[i]);
  for (int64_t off : {0, 1, 3}) {
    SCOPED_TRACE(::testing::Message() << "offset " << off);
    const int64_t n = static_cast<int64_t>(x.size()) - off;
    Buffer dx = ToDevice(be, x), dy = be.Alloc(static_cast<int64_t>(x.size()) * 2);
    be.ToBf16(dx.as<float>() + off, dy.as<uint16_t>() + off, n);
    std::vector<uint16_t> got = FromDevice<uint16_t>(be, dy);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i + off], want[i + off]) << "ToBf16 element " << i;
    Buffer dz = be.Alloc(static_cast<int64_t>(x.size()) * 4);
    be.FromBf16(dy.as<uint16_t>() + off, dz.as<float>() + off, n);
    std::vector<float> back = FromDevice<float>(be, dz);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(back[i + off]), static_cast<uint32_t>(want[i + off]) << 16)
          << "FromBf16 element " << i;
    }
  }
}

// BlockGram is a statistic in fp32 in both compute dtypes (no bf16 rounding of its output): the CPU's sums
// in another order, fp32 tolerance; accumulating onto what h held.
TEST_P(DeviceBackendTest, BlockGram) {
  Backend& be = dev();
  for (auto [rows, cols, block] : {std::tuple<int64_t, int64_t, int64_t>{1, 16, 16}, {37, 48, 16}, {1000, 128, 16},
                                   {333, 96, 8}, {4096, 512, 16}, {0, 32, 16}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " block " << block);
    const auto x = Input(static_cast<size_t>(rows * cols), 51, -2.f, 2.f);
    const auto h0 = Input(static_cast<size_t>(cols * block), 52);
    std::vector<float> want = h0;
    cpu().BlockGram(x.data(), rows, cols, block, want.data());
    Buffer dx = ToDevice(be, x), dh = ToDevice(be, h0);
    be.BlockGram(dx.as<float>(), rows, cols, block, dh.as<float>());
    const double scale = std::max(1.f, MaxAbs(want));
    EXPECT_TRUE(Near("BlockGram", FromDevice<float>(be, dh), want, Tolerance{1e-5, 1e-5 * scale, 1e-10}));
  }
}

TEST_P(DeviceBackendTest, RmsNorm) {
  Backend& be = dev();
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 1}, {3, 64}, {37, 4095}, {8, 5120}, {1000, 128}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " dim " << dim);
    const auto x = Input(rows * dim, 5, -2.f, 2.f), w = Input(dim, 6);
    std::vector<float> want(x.size());
    cpu().RmsNorm(x.data(), w.data(), want.data(), rows, dim, 1e-5f);
    want = ReferenceOut(want);
    Buffer dx = ToDevice(be, x), dw = ToDevice(be, w), dy = be.Alloc(rows * dim * 4);
    be.RmsNorm(dx.as<float>(), dw.as<float>(), dy.as<float>(), rows, dim, 1e-5f);
    EXPECT_TRUE(Near("RmsNorm", FromDevice<float>(be, dy), want, FewUlps(bf16())));
    be.RmsNorm(dx.as<float>(), dw.as<float>(), dx.as<float>(), rows, dim, 1e-5f);  // in place
    EXPECT_TRUE(BitExact("RmsNorm in place", FromDevice<float>(be, dx), FromDevice<float>(be, dy)));
  }
}

TEST_P(DeviceBackendTest, Rope) {
  Backend& be = dev();
  for (auto [batch, heads, seq, d] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{2, 3, 5, 64}, {1, 1, 1, 2},
                                      {2, 2, 7, 6}, {1, 4, 33, 128}, {2, 8, 129, 256}}) {
    SCOPED_TRACE(::testing::Message() << "batch " << batch << " heads " << heads << " seq " << seq << " d " << d);
    const auto x = Input(batch * heads * seq * d, 7, -3.f, 3.f);
    const auto cos = Input(seq * d / 2, 8), sin = Input(seq * d / 2, 9);
    std::vector<float> want = x;
    cpu().Rope(want.data(), batch, heads, seq, d, cos.data(), sin.data());
    want = ReferenceOut(want);
    Buffer dx = ToDevice(be, x), dc = ToDevice(be, cos), ds = ToDevice(be, sin);
    be.Rope(dx.as<float>(), batch, heads, seq, d, dc.as<float>(), ds.as<float>());
    EXPECT_TRUE(BitExact("Rope", FromDevice<float>(be, dx), want));
  }
}

TEST_P(DeviceBackendTest, SiluMulAddSigmoidScale) {
  Backend& be = dev();
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const auto gate = Input(n, 10, -8.f, 8.f), up = Input(n, 11);
    std::vector<float> want(n);
    cpu().SiluMul(gate.data(), up.data(), want.data(), n);
    want = ReferenceOut(want);
    Buffer dg = ToDevice(be, gate), du = ToDevice(be, up), dout = be.Alloc(n * 4);
    be.SiluMul(dg.as<float>(), du.as<float>(), dout.as<float>(), n);
    EXPECT_TRUE(Near("SiluMul", FromDevice<float>(be, dout), want, FewUlps(bf16())));
    be.SiluMul(dg.as<float>(), du.as<float>(), dg.as<float>(), n);  // out == gate
    EXPECT_TRUE(BitExact("SiluMul in place", FromDevice<float>(be, dg), FromDevice<float>(be, dout)));

    std::vector<float> sum = up;
    cpu().Add(sum.data(), gate.data(), n);
    sum = ReferenceOut(sum);
    Buffer dg2 = ToDevice(be, gate);
    be.Add(du.as<float>(), dg2.as<float>(), n);
    EXPECT_TRUE(BitExact("Add", FromDevice<float>(be, du), sum));

    // Pointers that are not 16-byte aligned take the scalar path: the same results.
    Buffer og = be.Alloc((n + 1) * 4), ou = be.Alloc((n + 1) * 4), oo = be.Alloc((n + 1) * 4);
    be.Upload(og.as<float>() + 1, gate.data(), n * 4);
    be.Upload(ou.as<float>() + 1, up.data(), n * 4);
    be.SiluMul(og.as<float>() + 1, ou.as<float>() + 1, oo.as<float>() + 1, n);
    EXPECT_TRUE(BitExact("SiluMul unaligned", FromDevice<float>(be, oo.as<float>() + 1, n), FromDevice<float>(be, dout)));
    be.Add(ou.as<float>() + 1, og.as<float>() + 1, n);
    EXPECT_TRUE(BitExact("Add unaligned", FromDevice<float>(be, ou.as<float>() + 1, n), sum));
  }
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 1}, {7, 300}, {70000, 3}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols);
    const auto x = Input(rows * cols, 12), g = Input(rows, 13, -6.f, 6.f);
    std::vector<float> want = x;
    cpu().SigmoidScaleRows(want.data(), g.data(), rows, cols);
    want = ReferenceOut(want);
    Buffer dx = ToDevice(be, x), dg = ToDevice(be, g);
    be.SigmoidScaleRows(dx.as<float>(), dg.as<float>(), rows, cols);
    EXPECT_TRUE(Near("SigmoidScaleRows", FromDevice<float>(be, dx), want, FewUlps(bf16())));
    // ScaleColumns: one f32 product per element, rounded once: bit-exact.
    const auto s = Input(cols, 14, 1e-3f, 40.f);
    std::vector<float> want_s = x;
    cpu().ScaleColumns(want_s.data(), s.data(), rows, cols);
    want_s = ReferenceOut(want_s);
    Buffer dx2 = ToDevice(be, x), ds = ToDevice(be, s);
    be.ScaleColumns(dx2.as<float>(), ds.as<float>(), rows, cols);
    EXPECT_TRUE(BitExact("ScaleColumns", FromDevice<float>(be, dx2), want_s));
  }
}

TEST_P(DeviceBackendTest, SwapMiddleAxes) {
  Backend& be = dev();
  for (auto [a, b, c, d] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{2, 3, 4, 5}, {1, 7, 1, 128}, {3, 5, 2, 4},
                            {2, 16, 33, 64}, {1, 1, 1, 1}}) {
    SCOPED_TRACE(::testing::Message() << a << "x" << b << "x" << c << "x" << d);
    const auto x = Input(a * b * c * d, 14);
    std::vector<float> want(x.size());
    cpu().SwapMiddleAxes(x.data(), want.data(), a, b, c, d);
    Buffer dx = ToDevice(be, x), dy = be.Alloc(a * b * c * d * 4);
    be.SwapMiddleAxes(dx.as<float>(), dy.as<float>(), a, b, c, d);
    EXPECT_TRUE(BitExact("SwapMiddleAxes", FromDevice<float>(be, dy), ReferenceOut(want)));
  }
}

TEST_P(DeviceBackendTest, Softmax) {
  Backend& be = dev();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {3, 1000}, {2, 32000}, {300, 64}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols);
    const auto x = Input(rows * cols, 15, -10.f, 10.f);
    std::vector<float> want = x;
    cpu().Softmax(want.data(), rows, cols);
    want = ReferenceOut(want);
    Buffer dx = ToDevice(be, x);
    be.Softmax(dx.as<float>(), rows, cols);
    EXPECT_TRUE(Near("Softmax", FromDevice<float>(be, dx), want, FewUlps(bf16())));
  }
}

TEST_P(DeviceBackendTest, EmbedRows) {
  Backend& be = dev();
  const int64_t vocab = 50, dim = 33, rows = 70;
  const auto table = RandomFloats(vocab * dim, 16, -4.f, 4.f);
  const auto ids = RandomInts(rows, 17, 0, static_cast<int32_t>(vocab - 1));
  std::vector<uint16_t> t16(table.size()), tb16(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    t16[i] = F32ToF16Rne(table[i]);
    tb16[i] = F32ToBf16Rne(table[i]);
  }
  Buffer dids = ToDevice(be, ids), dout = be.Alloc(rows * dim * 4);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dt));
    const void* host = dt == DType::kF32 ? static_cast<const void*>(table.data())
                                         : (dt == DType::kF16 ? static_cast<const void*>(t16.data()) : tb16.data());
    std::vector<float> want(rows * dim);
    cpu().EmbedRows(host, dt, ids.data(), want.data(), rows, dim);
    Buffer dtable = be.AllocCopy(host, vocab * dim * static_cast<int64_t>(DTypeSize(dt)));
    be.EmbedRows(dtable.data(), dt, dids.as<int32_t>(), dout.as<float>(), rows, dim);
    EXPECT_TRUE(BitExact("EmbedRows", FromDevice<float>(be, dout), ReferenceOut(want)));
  }
}

TEST_P(DeviceBackendTest, TopKRouting) {
  Backend& be = dev();
  const int64_t tokens = 37;
  for (int64_t experts : {8, 60, 64, 128, 256}) {
    for (int top_k : {1, 2, 8}) {
      for (bool renorm : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "experts " << experts << " top_k " << top_k << " renormalize " << renorm);
        // Logits on a 1/64 grid: exact in bf16, equal values are exact ties (broken to the lower expert),
        // and distinct ones are far apart compared with the exp implementations' differences.
        const auto ints = RandomInts(tokens * experts, static_cast<uint32_t>(18 + experts + top_k), -256, 256);
        std::vector<float> logits(ints.size());
        for (size_t i = 0; i < ints.size(); ++i) logits[i] = static_cast<float>(ints[i]) / 64.f;
        for (int64_t e = 0; e < experts; ++e) logits[e] = 1.f;  // token 0: all tied
        std::vector<int32_t> want_ids(tokens * top_k);
        std::vector<float> want_w(tokens * top_k);
        cpu().TopKRouting(logits.data(), tokens, experts, top_k, renorm, want_ids.data(), want_w.data());
        Buffer dl = ToDevice(be, logits), did = be.Alloc(tokens * top_k * 4), dw = be.Alloc(tokens * top_k * 4);
        be.TopKRouting(dl.as<float>(), tokens, experts, top_k, renorm, did.as<int32_t>(), dw.as<float>());
        const auto got_ids = FromDevice<int32_t>(be, did);
        for (size_t i = 0; i < want_ids.size(); ++i) {
          ASSERT_EQ(got_ids[i], want_ids[i]) << "token " << i / top_k << " slot " << i % top_k;
        }
        EXPECT_TRUE(Near("TopKRouting weights", FromDevice<float>(be, dw), ReferenceOut(want_w), FewUlps(bf16())));
      }
    }
  }
}

TEST_P(DeviceBackendTest, GroupRowsByExpert) {
  Backend& be = dev();
  struct Case {
    int64_t tokens;
    int top_k;
    int64_t experts;
  };
  for (const Case& c : {Case{1, 1, 8}, Case{37, 2, 8}, Case{300, 4, 64}, Case{5000, 4, 256}, Case{40000, 4, 64},
                        Case{3, 2, 1000}}) {
    SCOPED_TRACE(::testing::Message() << "tokens " << c.tokens << " top_k " << c.top_k << " experts " << c.experts);
    // Distinct experts per token, drawn from the even ones only: every odd expert gets no token.
    std::mt19937 rng(19);
    std::vector<int32_t> even(static_cast<size_t>(c.experts + 1) / 2);
    std::iota(even.begin(), even.end(), 0);
    for (int32_t& e : even) e *= 2;
    std::vector<int32_t> ids(c.tokens * c.top_k);
    for (int64_t t = 0; t < c.tokens; ++t) {
      std::shuffle(even.begin(), even.end(), rng);
      for (int s = 0; s < c.top_k; ++s) ids[t * c.top_k + s] = even[s];
    }
    const auto w = Input(ids.size(), 20, 0.f, 1.f);
    const int64_t n = c.tokens * c.top_k;
    std::vector<int32_t> want_rows(n);
    std::vector<float> want_w(n);
    const auto want_off = cpu().GroupRowsByExpert(ids.data(), w.data(), c.tokens, c.top_k, c.experts, want_rows.data(),
                                                  want_w.data());
    Buffer dids = ToDevice(be, ids), dw = ToDevice(be, w), drows = be.Alloc(n * 4), dgw = be.Alloc(n * 4);
    const MemoryStats before = be.stats();
    const auto got_off = be.GroupRowsByExpert(dids.as<int32_t>(), dw.as<float>(), c.tokens, c.top_k, c.experts,
                                              drows.as<int32_t>(), dgw.as<float>());
    EXPECT_EQ(be.stats().d2h_copies, before.d2h_copies + 1) << "only the offsets cross to the host";
    ASSERT_EQ(got_off, want_off);
    const auto got_rows = FromDevice<int32_t>(be, drows);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got_rows[i], want_rows[i]) << "grouped pair " << i;
    EXPECT_TRUE(BitExact("GroupRowsByExpert weights", FromDevice<float>(be, dgw), ReferenceOut(want_w)));
  }
}

TEST_P(DeviceBackendTest, GatherAndScatterAddRows) {
  Backend& be = dev();
  const int64_t src_rows = 20, dim = 33, rows = 50;
  const auto x = Input(src_rows * dim, 21);
  const auto idx = RandomInts(rows, 22, 0, static_cast<int32_t>(src_rows - 1));
  std::vector<float> want(rows * dim);
  cpu().GatherRows(x.data(), idx.data(), want.data(), rows, dim);
  Buffer dx = ToDevice(be, x), didx = ToDevice(be, idx), dout = be.Alloc(rows * dim * 4);
  be.GatherRows(dx.as<float>(), didx.as<int32_t>(), dout.as<float>(), rows, dim);
  EXPECT_TRUE(BitExact("GatherRows", FromDevice<float>(be, dout), ReferenceOut(want)));

  for (auto [yrows, n, d] : {std::tuple<int64_t, int64_t, int64_t>{30, 12, 17}, {5, 5, 1}, {4096, 700, 256}}) {
    SCOPED_TRACE(::testing::Message() << "y rows " << yrows << " rows " << n << " dim " << d);
    std::vector<int32_t> perm(yrows);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(23));
    perm.resize(n);  // distinct rows, as the contract requires
    const auto y0 = Input(yrows * d, 24), xs = Input(n * d, 25), rw = Input(n, 26, 0.f, 1.f);
    std::vector<float> ywant = y0;
    cpu().ScatterAddRows(xs.data(), perm.data(), rw.data(), ywant.data(), n, d);
    Buffer dy = ToDevice(be, y0), dxs = ToDevice(be, xs), dperm = ToDevice(be, perm), drw = ToDevice(be, rw);
    be.ScatterAddRows(dxs.as<float>(), dperm.as<int32_t>(), drw.as<float>(), dy.as<float>(), n, d);
    EXPECT_TRUE(BitExact("ScatterAddRows", FromDevice<float>(be, dy), ReferenceOut(ywant)));
  }
}

TEST_P(DeviceBackendTest, Amax) {
  Backend& be = dev();
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, (int64_t{1} << 20) + 3}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    auto x = Input(static_cast<size_t>(std::max<int64_t>(n, 1)), 27, -3.f, 3.f);
    x.resize(n);
    Buffer dx = ToDevice(be, x);
    const float want = cpu().Amax(x.data(), n);
    const float got = be.Amax(dx.as<float>(), n);
    EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << got << " vs " << want;
    if (n >= 1000) {
      x[n / 2] = -std::numeric_limits<float>::infinity();
      Buffer dinf = ToDevice(be, x);
      EXPECT_EQ(be.Amax(dinf.as<float>(), n), std::numeric_limits<float>::infinity());
      x[n - 1] = std::numeric_limits<float>::quiet_NaN();
      Buffer dnan = ToDevice(be, x);
      EXPECT_TRUE(std::isnan(be.Amax(dnan.as<float>(), n)));
      EXPECT_TRUE(std::isnan(cpu().Amax(x.data(), n)));
    }
  }
}

// AmaxFold keeps the largest |x| bit pattern over calls: the max of the CPU's Amax of each array, at
// aligned and unaligned starts (the float4 middle and the scalar ends); an infinity gives 0x7F800000, a NaN
// more.
TEST_P(DeviceBackendTest, AmaxFold) {
  Backend& be = dev();
  const auto x = Input(5003, 30, -2.f, 2.f);
  Buffer dx = ToDevice(be, x), slot = be.Alloc(4);
  be.Zero(slot.data(), 4);
  uint32_t want = 0;
  for (auto [off, n] : {std::pair<int64_t, int64_t>{0, 0}, {0, 7}, {1, 1000}, {3, 5000}, {2, 3}}) {
    SCOPED_TRACE(::testing::Message() << "offset " << off << " n " << n);
    be.AmaxFold(dx.as<float>() + off, n, slot.as<uint32_t>());
    want = std::max(want, std::bit_cast<uint32_t>(cpu().Amax(x.data() + off, n)));
    EXPECT_EQ(FromDevice<uint32_t>(be, slot)[0], want);
  }
  auto y = x;
  y[4001] = -std::numeric_limits<float>::infinity();
  Buffer dy = ToDevice(be, y);
  be.AmaxFold(dy.as<float>() + 1, 4500, slot.as<uint32_t>());
  EXPECT_EQ(FromDevice<uint32_t>(be, slot)[0], 0x7F800000u);
  y[17] = std::numeric_limits<float>::quiet_NaN();
  Buffer dz = ToDevice(be, y);
  be.AmaxFold(dz.as<float>(), 20, slot.as<uint32_t>());
  EXPECT_GT(FromDevice<uint32_t>(be, slot)[0], 0x7F800000u);
}

TEST_P(DeviceBackendTest, CrossEntropy) {
  Backend& be = dev();
  for (auto [rows, vocab] : {std::pair<int64_t, int64_t>{9, 1}, {9, 17}, {5, 32000}, {600, 128}}) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " vocab " << vocab);
    const auto logits = Input(rows * vocab, 28, -8.f, 8.f);
    const auto targets = RandomInts(rows, 29, 0, static_cast<int32_t>(vocab - 1));
    std::vector<double> want(rows), got(rows);
    cpu().CrossEntropy(logits.data(), targets.data(), want.data(), rows, vocab);
    Buffer dl = ToDevice(be, logits), dt = ToDevice(be, targets);
    be.CrossEntropy(dl.as<float>(), dt.as<int32_t>(), got.data(), rows, vocab);
    EXPECT_TRUE(Near("CrossEntropy", got, want, Tolerance{1e-6, 2e-5}));
  }
}

struct AttnCase {
  int64_t batch, heads, kv_heads, seq, head_dim;
};

std::string Describe(const AttnCase& c) {
  return "batch " + std::to_string(c.batch) + " heads " + std::to_string(c.heads) + " kv_heads " +
         std::to_string(c.kv_heads) + " seq " + std::to_string(c.seq) + " head_dim " + std::to_string(c.head_dim);
}

// Flash attention in bf16 rounds the probabilities for P·V (|out| <= max |v| = 1 here): a few 2^-9 of
// absolute error on top of the output's own rounding.
Tolerance AttentionTolerance(bool bf16) {
  return bf16 ? Tolerance{kBf16Ulp, 1.0 / 64, 1e-4} : Tolerance{1e-5, 5e-6, 1e-9};
}

TEST_P(DeviceBackendTest, CausalAttention) {
  Backend& be = dev();
  for (const AttnCase& c : {AttnCase{1, 1, 1, 1, 64}, AttnCase{2, 4, 2, 33, 64}, AttnCase{1, 8, 2, 130, 128},
                            AttnCase{2, 4, 4, 65, 256}, AttnCase{1, 2, 1, 17, 6}, AttnCase{1, 4, 1, 40, 80},
                            AttnCase{1, 2, 2, 20, 320}, AttnCase{2, 8, 8, 1, 128}, AttnCase{1, 8, 2, 512, 128},
                            AttnCase{1, 6, 3, 70, 256}, AttnCase{3, 4, 2, 100, 64}, AttnCase{1, 3, 1, 47, 7}}) {
    SCOPED_TRACE(Describe(c));
    const int64_t qn = c.batch * c.heads * c.seq * c.head_dim, kn = c.batch * c.kv_heads * c.seq * c.head_dim;
    const auto q = Input(qn, 30, -3.f, 3.f), k = Input(kn, 31), v = Input(kn, 32);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    std::vector<float> want(qn);
    cpu().CausalAttention(q.data(), k.data(), v.data(), want.data(), c.batch, c.heads, c.kv_heads, c.seq, c.head_dim,
                          scale);
    want = ReferenceOut(want);
    Buffer dq = ToDevice(be, q), dk = ToDevice(be, k), dv = ToDevice(be, v), dout = be.Alloc(qn * 4);
    const int64_t allocated = be.stats().allocated_bytes;
    be.CausalAttention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), c.batch, c.heads, c.kv_heads,
                       c.seq, c.head_dim, scale);
    EXPECT_EQ(be.stats().allocated_bytes, allocated);
    EXPECT_TRUE(Near("CausalAttention", FromDevice<float>(be, dout), want, AttentionTolerance(bf16())));
  }
}

TEST_P(DeviceBackendTest, CausalAttentionProbsAndApply) {
  Backend& be = dev();
  for (const AttnCase& c : {AttnCase{1, 1, 1, 1, 64}, AttnCase{2, 4, 2, 33, 64}, AttnCase{1, 4, 1, 40, 80},
                            AttnCase{2, 2, 2, 65, 128}, AttnCase{1, 8, 2, 130, 128}, AttnCase{2, 6, 3, 17, 256}}) {
    SCOPED_TRACE(Describe(c));
    const int64_t qn = c.batch * c.heads * c.seq * c.head_dim, kn = c.batch * c.kv_heads * c.seq * c.head_dim;
    const int64_t pn = c.batch * c.heads * c.seq * c.seq;
    const auto q = Input(qn, 33, -3.f, 3.f), k = Input(kn, 34), v = Input(kn, 35);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    std::vector<float> want_p(pn);
    cpu().CausalAttentionProbs(q.data(), k.data(), want_p.data(), c.batch, c.heads, c.kv_heads, c.seq, c.head_dim,
                               scale);
    want_p = ReferenceOut(want_p);
    Buffer dq = ToDevice(be, q), dk = ToDevice(be, k), dv = ToDevice(be, v), dp = be.Alloc(pn * 4);
    be.CausalAttentionProbs(dq.as<float>(), dk.as<float>(), dp.as<float>(), c.batch, c.heads, c.kv_heads, c.seq,
                            c.head_dim, scale);
    const auto got_p = FromDevice<float>(be, dp);
    EXPECT_TRUE(Near("CausalAttentionProbs", got_p, want_p, FewUlps(bf16())));
    for (int64_t r = 0; r < c.batch * c.heads * c.seq; ++r) {
      for (int64_t j = r % c.seq + 1; j < c.seq; ++j) ASSERT_EQ(got_p[r * c.seq + j], 0.f) << "row " << r << " key " << j;
    }

    // Apply on the reference probabilities, so that only the product is compared.
    std::vector<float> want_o(qn);
    cpu().AttentionApply(want_p.data(), v.data(), want_o.data(), c.batch, c.heads, c.kv_heads, c.seq, c.head_dim);
    want_o = ReferenceOut(want_o);
    Buffer dpw = ToDevice(be, want_p), dout = be.Alloc(qn * 4);
    be.AttentionApply(dpw.as<float>(), dv.as<float>(), dout.as<float>(), c.batch, c.heads, c.kv_heads, c.seq,
                      c.head_dim);
    const Tolerance apply_tol = bf16() ? Tolerance{kBf16Ulp, 1e-6, 1e-5} : Tolerance{1e-5, 2e-6, 1e-10};
    EXPECT_TRUE(Near("AttentionApply", FromDevice<float>(be, dout), want_o, apply_tol));

    // On the device, Apply(Probs(q, k), v) == CausalAttention(q, k, v) within the attention tolerance.
    Buffer dflash = be.Alloc(qn * 4), dtwo = be.Alloc(qn * 4);
    be.CausalAttention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dflash.as<float>(), c.batch, c.heads,
                       c.kv_heads, c.seq, c.head_dim, scale);
    be.AttentionApply(dp.as<float>(), dv.as<float>(), dtwo.as<float>(), c.batch, c.heads, c.kv_heads, c.seq,
                      c.head_dim);
    EXPECT_TRUE(Near("Apply(Probs) vs CausalAttention", FromDevice<float>(be, dtwo), FromDevice<float>(be, dflash),
                     AttentionTolerance(bf16())));
  }
}

}  // namespace
}  // namespace qforge::consistency
