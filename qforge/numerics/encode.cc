// Export encodings (spec §5.4-§5.6) and their decoders.
#include "qforge/numerics/encode.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

struct Dims {
  int64_t numel = 1;
  int64_t in = 1;     // last dim
  int64_t out = 1;    // second-to-last dim (1 for rank 1)
  int64_t lead = 1;   // product of the dims before `out`
  int64_t rows = 1;   // numel / in
};

// `count`: the number of weight values given for `shape`.
Dims CheckShape(const PackFormatTraits& t, size_t count, std::span<const int64_t> shape, std::string_view what) {
  const int rank = static_cast<int>(shape.size());
  QF_CHECK(rank >= t.min_rank, "{}: format {} needs a weight of rank >= {}, got shape [{}]", what, t.name, t.min_rank,
           fmt::join(shape, ", "));
  Dims d;
  for (int64_t s : shape) {
    QF_CHECK(s > 0, "{}: format {} cannot pack shape [{}]", what, t.name, fmt::join(shape, ", "));
    d.numel *= s;
  }
  QF_CHECK(static_cast<int64_t>(count) == d.numel, "{}: {} values for shape [{}]", what, count,
           fmt::join(shape, ", "));
  d.in = shape[rank - 1];
  d.out = rank >= 2 ? shape[rank - 2] : 1;
  d.rows = d.numel / d.in;
  d.lead = d.rows / d.out;
  return d;
}

// Throws naming the first non-finite weight of `w`, which must hold one (a reference kernel said so).
[[noreturn]] void ThrowNonFinite(std::span<const float> w, std::string_view what) {
  for (size_t i = 0; i < w.size(); ++i)
    QF_CHECK(std::isfinite(w[i]), "{}: cannot export a non-finite weight ({} at flat index {})", what, w[i], i);
  QF_ASSERT(false, "{}: a packing kernel reported a non-finite weight, but every value is finite", what);
}

// Throws naming the first non-finite weight. One fast pass when `kernels` has an abs max (max|w| is
// finite iff every value is).
void CheckFinite(std::span<const float> w, std::string_view what, const HostQuantKernels* kernels) {
  float m = 0.0f;
  if (kernels && kernels->AbsMax(w, true, &m) && std::isfinite(m)) return;
  for (float v : w)
    if (!std::isfinite(v)) ThrowNonFinite(w, what);
}

std::vector<int64_t> WithLast(std::span<const int64_t> shape, int64_t last) {
  std::vector<int64_t> s(shape.begin(), shape.end());
  s.back() = last;
  return s;
}

float AbsMax(std::span<const float> x, const HostQuantKernels* kernels) {
  float m = 0.0f;
  if (kernels && kernels->AbsMax(x, false, &m)) return m;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

// FP8 export cast of groups of `group` consecutive elements, each with its own scale. Both kernels
// verify that every weight is finite, so callers skip CheckFinite.
void EncodeFp8Groups(std::span<const float> w, std::span<const float> scales, int64_t group, std::span<uint8_t> codes,
                     std::string_view what, const HostQuantKernels* kernels) {
  if (kernels && kernels->EncodeFp8(w, scales, group, codes)) return;
  if (!EncodeFp8Reference(w, scales, group, codes)) ThrowNonFinite(w, what);
}

// packed[b*8 + k/2] = the E2M1 codes of elements k, k+1 of block b (k even, low nibble first) for
// w / (e4m3(scales[b]) * ws2): the element half of NVFP4 export, shared by the static and dynamic paths.
void PackNvfp4Elements(std::span<const float> w, std::span<const uint8_t> scales, float ws2,
                       std::span<uint8_t> packed) {
  for (size_t b = 0; b < scales.size(); ++b) {
    const float denom = DecodeE4M3(scales[b]) * ws2;
    for (int k = 0; k < 16; k += 2) {
      const uint8_t lo = Nvfp4ExportCode(w[b * 16 + k] / denom);
      const uint8_t hi = Nvfp4ExportCode(w[b * 16 + k + 1] / denom);
      packed[(b * 16 + k) / 2] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

std::vector<float> AmaxOrCalibrate(PackFormat f, const PackInputs& in, std::span<const float> w,
                                   std::span<const int64_t> shape, std::string_view what,
                                   const HostQuantKernels* kernels) {
  if (!in.amax.empty()) return in.amax;
  return ComputeAmax(WeightSpecFor(f), w, shape, what, kernels);
}

void CheckCount(std::string_view what, std::string_view field, size_t got, int64_t want) {
  QF_CHECK(static_cast<int64_t>(got) == want, "{}: {} has {} values, expected {}", what, field, got, want);
}

PackedWeight PackFp8Family(PackFormat f, std::span<const float> w, std::span<const int64_t> shape, const Dims& d,
                           const PackInputs& in, std::string_view what, const HostQuantKernels* kernels) {
  PackedWeight p;
  const std::vector<float> amax = AmaxOrCalibrate(f, in, w, shape, what, kernels);
  p.weight_shape.assign(shape.begin(), shape.end());
  p.weight.resize(d.numel);
  if (f == PackFormat::kFp8) {
    CheckCount(what, "amax", amax.size(), 1);
    p.scale_f32 = {Fp8ExportScale(amax[0])};
    EncodeFp8Groups(w, p.scale_f32, d.numel, p.weight, what, kernels);
  } else if (f == PackFormat::kFp8PerChannel) {
    const int64_t n0 = shape[0];
    CheckCount(what, "amax", amax.size(), n0);
    p.scale_f32.resize(n0);
    for (int64_t r = 0; r < n0; ++r) p.scale_f32[r] = Fp8ExportScale(amax[r]);
    p.scale_shape = {n0};
    EncodeFp8Groups(w, p.scale_f32, d.numel / n0, p.weight, what, kernels);
  } else {  // kFp8Block: 128 x 128 blocks over the last two dims
    const int64_t ob = (d.out + 127) / 128, ib = (d.in + 127) / 128;
    CheckCount(what, "amax", amax.size(), d.lead * ob * ib);
    p.scale_f32.resize(amax.size());
    for (size_t i = 0; i < amax.size(); ++i) p.scale_f32[i] = Fp8ExportScale(amax[i]);
    p.scale_shape.assign(shape.begin(), shape.end() - 2);
    p.scale_shape.insert(p.scale_shape.end(), {ob, 1, ib, 1});
    for (int64_t r = 0; r < d.rows; ++r) {
      const int64_t l = r / d.out, o = r % d.out;
      const float* src = w.data() + r * d.in;
      uint8_t* dst = p.weight.data() + r * d.in;
      for (int64_t c = 0; c < d.in; ++c) {
        const float s = p.scale_f32[(l * ob + o / 128) * ib + c / 128];
        dst[c] = EncodeE4M3(src[c] / s, Overflow::kNonSat);
      }
    }
  }
  return p;
}

PackedWeight PackNvfp4(std::span<const float> w, std::span<const int64_t> shape, const Dims& d, const PackInputs& in,
                       std::string_view what, const HostQuantKernels* kernels) {
  QF_CHECK(d.in % 16 == 0, "{}: nvfp4 needs the last dimension to be a multiple of 16, got shape [{}]", what,
           fmt::join(shape, ", "));
  PackedWeight p;
  const int64_t nblocks = d.numel / 16;
  p.weight_shape = WithLast(shape, d.in / 2);
  p.scale_shape = WithLast(shape, d.in / 16);
  p.weight.resize(d.numel / 2);
  p.scale_bytes.resize(nblocks);
  if (in.nvfp4_static) {
    CheckCount(what, "per-block amax", in.amax.size(), nblocks);
    const float fp8_norm = in.four_over_six ? 256.0f : 448.0f;
    float g = 0.0f;
    if (in.global_amax) {
      g = *in.global_amax;
    } else {
      for (float a : in.amax) g = std::max(g, a);
    }
    g = ExportAmax(g, 6.0f);  // ModelOpt would divide by a zero global amax here (NaN scales)
    const float ws2 = g / (6.0f * fp8_norm);
    const float per_block_scale_max = g / 6.0f;
    for (int64_t b = 0; b < nblocks; ++b) {
      float s = in.amax[b] / 6.0f;
      if (s == 0.0f) s = 1.0f;
      float t = s * fp8_norm / per_block_scale_max;
      t = t < 0x1p-9f ? 0x1p-9f : (t > 448.0f ? 448.0f : t);
      p.scale_bytes[b] = EncodeE4M3(t, Overflow::kNonSat);
    }
    p.weight_scale_2 = ws2;
    PackNvfp4Elements(w, p.scale_bytes, ws2, p.weight);
    return p;
  }
  const float ws2 = Nvfp4DynamicScale2(in.global_amax ? *in.global_amax : AbsMax(w, kernels));
  p.weight_scale_2 = ws2;
  // Both kernels check finiteness themselves (in the same pass), so PackWeight runs no CheckFinite here.
  if (kernels && kernels->PackNvfp4(w, d.rows, d.in, ws2, p.weight, p.scale_bytes)) return p;
  if (!PackNvfp4Reference(w, d.rows, d.in, ws2, p.weight, p.scale_bytes)) ThrowNonFinite(w, what);
  return p;
}

PackedWeight PackMx(PackFormat f, std::span<const float> w, std::span<const int64_t> shape, const Dims& d,
                    std::string_view what) {
  QF_CHECK(d.in % 32 == 0, "{}: {} needs the last dimension to be a multiple of 32, got shape [{}]", what,
           GetTraits(f).name, fmt::join(shape, ", "));
  PackedWeight p;
  const int64_t nblocks = d.numel / 32;
  p.scale_shape = WithLast(shape, d.in / 32);
  p.scale_bytes.resize(nblocks);
  const bool fp8 = f == PackFormat::kMxfp8;
  p.weight_shape = fp8 ? std::vector<int64_t>(shape.begin(), shape.end()) : WithLast(shape, d.in / 2);
  p.weight.resize(fp8 ? d.numel : d.numel / 2);
  for (int64_t b = 0; b < nblocks; ++b) {
    const float* x = w.data() + b * 32;
    float m = 0.0f;
    for (int k = 0; k < 32; ++k) m = std::max(m, std::fabs(x[k]));
    if (fp8) {
      // e = clamp(ceil(log2(amax/448)), -127, 127), amax == 0 -> -127 (mxfp8_tensor.py).
      const float descale = m / 448.0f;
      int e = descale > 0.0f ? CeilOfFloatLog2(descale) : -127;
      e = std::clamp(e, -127, 127);
      p.scale_bytes[b] = static_cast<uint8_t>(e + 127);
      const float sf = Pow2(-e);
      for (int k = 0; k < 32; ++k) {
        float v = x[k] * sf;
        v = v < -448.0f ? -448.0f : (v > 448.0f ? 448.0f : v);
        p.weight[b * 32 + k] = EncodeE4M3(v, Overflow::kNonSat);
      }
    } else {
      // e = ceil(max(log2(amax/6), -127)), no upper clamp (mxfp4_tensor.py, spec §13 Q5).
      const float descale = m / 6.0f;
      const int e = descale > 0.0f ? std::max(CeilOfFloatLog2(descale), -127) : -127;
      QF_CHECK(e <= 127, "{}: MXFP4 scale exponent {} does not fit E8M0", what, e);
      p.scale_bytes[b] = static_cast<uint8_t>(e + 127);
      const float div = Pow2(e);
      for (int k = 0; k < 32; k += 2) {
        uint8_t codes[2];
        for (int j = 0; j < 2; ++j) {
          const float xv = x[k + j];
          const float v = xv / div;
          const uint8_t sign = xv > 0.0f ? 0u : 8u;  // (2 - sign(x)) // 2: zeros get the sign bit
          codes[j] = static_cast<uint8_t>(sign | E2M1RoundIndexTiesDown(std::fabs(v)));
        }
        p.weight[(b * 32 + k) / 2] = static_cast<uint8_t>(codes[0] | (codes[1] << 4));
      }
    }
  }
  return p;
}

PackedWeight PackInt(PackFormat f, std::span<const float> w, std::span<const int64_t> shape, const Dims& d,
                     const PackInputs& in, std::string_view what, const HostQuantKernels* kernels) {
  PackedWeight p;
  const std::vector<float> amax = AmaxOrCalibrate(f, in, w, shape, what, kernels);
  if (f == PackFormat::kInt8) {
    const int64_t n0 = shape[0];
    CheckCount(what, "amax", amax.size(), n0);
    p.scale_f32.resize(n0);
    for (int64_t r = 0; r < n0; ++r) p.scale_f32[r] = ExportAmax(amax[r], 127.0f) / 127.0f;
    p.scale_shape = {n0};
    p.weight_shape.assign(shape.begin(), shape.end());
    p.weight.resize(d.numel);
    const int64_t per = d.numel / n0;
    for (int64_t i = 0; i < d.numel; ++i) {
      float q = std::nearbyint(w[i] / p.scale_f32[i / per]);
      q = std::clamp(q, -128.0f, 127.0f);
      p.weight[i] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
    return p;
  }
  // INT4 AWQ: blocks of 128 along `in`, packed along `out`.
  QF_CHECK(d.in % 128 == 0 && d.out % 2 == 0,
           "{}: int4_awq needs in % 128 == 0 and an even out dimension, got shape [{}]", what, fmt::join(shape, ", "));
  const int64_t nb = d.in / 128;
  CheckCount(what, "amax", amax.size(), d.rows * nb);
  p.scale_f32.resize(amax.size());
  for (size_t i = 0; i < amax.size(); ++i) p.scale_f32[i] = ExportAmax(amax[i], 7.0f) / 7.0f;
  p.scale_shape = WithLast(shape, nb);
  p.weight_shape.assign(shape.begin(), shape.end());
  p.weight_shape[shape.size() - 2] = d.out / 2;
  p.weight.assign(d.numel / 2, 0);  // zeroed: the two rows of a byte are merged into it one nibble at a time
  for (int64_t r = 0; r < d.rows; ++r) {
    const int64_t l = r / d.out, o = r % d.out;
    for (int64_t c = 0; c < d.in; ++c) {
      float q = std::nearbyint(w[r * d.in + c] / p.scale_f32[r * nb + c / 128]);
      q = std::clamp(q, -8.0f, 7.0f);
      const uint8_t nib = static_cast<uint8_t>(static_cast<int>(q) & 0xF);
      uint8_t& byte = p.weight[(l * (d.out / 2) + o / 2) * d.in + c];
      byte = static_cast<uint8_t>((o % 2 == 0) ? ((byte & 0xF0) | nib) : ((byte & 0x0F) | (nib << 4)));
    }
  }
  return p;
}

}  // namespace

int CeilOfFloatLog2(float x) {
  const float l = static_cast<float>(std::log2(static_cast<double>(x)));
  return static_cast<int>(std::ceil(l));
}

bool PackNvfp4Reference(std::span<const float> w, int64_t rows, int64_t cols, float weight_scale_2,
                        std::span<uint8_t> packed, std::span<uint8_t> scales) {
  QF_ASSERT(cols % 16 == 0 && static_cast<int64_t>(w.size()) == rows * cols && packed.size() * 2 == w.size() &&
                scales.size() * 16 == w.size(),
            "PackNvfp4Reference: {} values, {} packed / {} scale bytes for [{}, {}]", w.size(), packed.size(),
            scales.size(), rows, cols);
  for (size_t b = 0; b < scales.size(); ++b) {
    float m = 0.0f;
    for (int k = 0; k < 16; ++k) {
      const float v = w[b * 16 + k];
      if (!std::isfinite(v)) return false;
      m = std::max(m, std::fabs(v));
    }
    scales[b] = Nvfp4ExportBlockScale(m, weight_scale_2);
  }
  PackNvfp4Elements(w, scales, weight_scale_2, packed);
  return true;
}

bool EncodeFp8Reference(std::span<const float> w, std::span<const float> scales, int64_t group,
                        std::span<uint8_t> codes) {
  QF_ASSERT(group > 0 && codes.size() == w.size() &&
                static_cast<int64_t>(scales.size()) >= (static_cast<int64_t>(w.size()) + group - 1) / group,
            "EncodeFp8Reference: {} values, {} scales, group {}, {} codes", w.size(), scales.size(), group,
            codes.size());
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) return false;
    codes[i] = EncodeE4M3(w[i] / scales[i / static_cast<size_t>(group)], Overflow::kNonSat);
  }
  return true;
}

std::optional<PackFormat> PackFormatFromName(std::string_view name) {
  for (const PackFormatTraits& t : kPackFormatTable)
    if (t.name == name) return t.format;
  return std::nullopt;
}

std::string_view AllPackFormatNames() {
  static const std::string names = [] {
    std::string s;
    for (const PackFormatTraits& t : kPackFormatTable) {
      if (!s.empty()) s += ", ";
      s += t.name;
    }
    return s;
  }();
  return names;
}

QuantSpec WeightSpecFor(PackFormat format) {
  QuantSpec s;
  switch (format) {
    case PackFormat::kFp8:
      s.num_bits = NumBits::Float(4, 3);
      break;
    case PackFormat::kFp8PerChannel:
      s.num_bits = NumBits::Float(4, 3);
      s.axis = std::vector<int>{0};
      break;
    case PackFormat::kFp8Block:
      s.num_bits = NumBits::Float(4, 3);
      s.block = BlockSpec{{{-1, 128}, {-2, 128}}, false, std::nullopt, false};
      break;
    case PackFormat::kNvfp4:
      s.num_bits = NumBits::Float(2, 1);
      s.block = BlockSpec{{{-1, 16}}, true, NumBits::Float(4, 3), false};
      break;
    case PackFormat::kMxfp8:
      s.num_bits = NumBits::Float(4, 3);
      s.block = BlockSpec{{{-1, 32}}, true, NumBits::Float(8, 0), false};
      break;
    case PackFormat::kMxfp4:
      s.num_bits = NumBits::Float(2, 1);
      s.block = BlockSpec{{{-1, 32}}, true, NumBits::Float(8, 0), false};
      break;
    case PackFormat::kInt8:
      s.num_bits = NumBits::Int(8);
      s.axis = std::vector<int>{0};
      break;
    case PackFormat::kInt4Awq:
      s.num_bits = NumBits::Int(4);
      s.block = BlockSpec{{{-1, 128}}, false, std::nullopt, false};
      break;
  }
  return s;
}

float Fp8ExportScale(float amax) { return ExportAmax(amax, 448.0f) / 448.0f; }

// ModelOpt would divide by a zero global amax here (NaN scales); export_amax keeps it positive.
float Nvfp4DynamicScale2(float global_amax) { return ExportAmax(global_amax, 6.0f) / 2688.0f; }

PackedLayout PackedLayoutOf(PackFormat format, std::span<const int64_t> shape, std::string_view what) {
  const PackFormatTraits& t = GetTraits(format);
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s > 0 ? s : 1;
  const Dims d = CheckShape(t, static_cast<size_t>(numel), shape, what);  // rank and positivity rules
  PackedLayout l;
  l.weight_type = t.weight_type;
  l.scale_type = t.scale_type;
  l.has_scale_2 = t.has_scale_2;
  l.weight_shape.assign(shape.begin(), shape.end());
  auto need_in = [&](int64_t b) {
    QF_CHECK(d.in % b == 0, "{}: {} needs the last dimension to be a multiple of {}, got shape [{}]", what, t.name, b,
             fmt::join(shape, ", "));
  };
  switch (format) {
    case PackFormat::kFp8:
      break;
    case PackFormat::kFp8PerChannel:
    case PackFormat::kInt8:
      l.scale_shape = {shape[0]};
      break;
    case PackFormat::kFp8Block:
      l.scale_shape.assign(shape.begin(), shape.end() - 2);
      l.scale_shape.insert(l.scale_shape.end(), {(d.out + 127) / 128, 1, (d.in + 127) / 128, 1});
      break;
    case PackFormat::kNvfp4:
      need_in(16);
      l.weight_shape = WithLast(shape, d.in / 2);
      l.scale_shape = WithLast(shape, d.in / 16);
      break;
    case PackFormat::kMxfp8:
    case PackFormat::kMxfp4:
      need_in(32);
      if (format == PackFormat::kMxfp4) l.weight_shape = WithLast(shape, d.in / 2);
      l.scale_shape = WithLast(shape, d.in / 32);
      break;
    case PackFormat::kInt4Awq:
      QF_CHECK(d.in % 128 == 0 && d.out % 2 == 0,
               "{}: int4_awq needs in % 128 == 0 and an even out dimension, got shape [{}]", what, fmt::join(shape, ", "));
      l.weight_shape[shape.size() - 2] = d.out / 2;
      l.scale_shape = WithLast(shape, d.in / 128);
      break;
  }
  return l;
}

PackedWeight PackWeight(PackFormat format, std::span<const float> w, std::span<const int64_t> shape,
                        const PackInputs& inputs, std::string_view what, const HostQuantKernels* kernels) {
  const PackFormatTraits& t = GetTraits(format);
  const Dims d = CheckShape(t, w.size(), shape, what);
  // nvfp4 (dynamic), fp8 and fp8_pc check finiteness inside their (fast) encoders.
  const bool checked_inside = (format == PackFormat::kNvfp4 && !inputs.nvfp4_static) || format == PackFormat::kFp8 ||
                              format == PackFormat::kFp8PerChannel;
  if (!checked_inside) CheckFinite(w, what, kernels);
  PackedWeight p;
  switch (format) {
    case PackFormat::kFp8:
    case PackFormat::kFp8PerChannel:
    case PackFormat::kFp8Block:
      p = PackFp8Family(format, w, shape, d, inputs, what, kernels);
      break;
    case PackFormat::kNvfp4:
      p = PackNvfp4(w, shape, d, inputs, what, kernels);
      break;
    case PackFormat::kMxfp8:
    case PackFormat::kMxfp4:
      p = PackMx(format, w, shape, d, what);
      break;
    case PackFormat::kInt8:
    case PackFormat::kInt4Awq:
      p = PackInt(format, w, shape, d, inputs, what, kernels);
      break;
  }
  p.format = format;
  p.shape.assign(shape.begin(), shape.end());
  return p;
}

// Decodes of more elements than this use OpenMP threads (elementwise: the result does not depend on them).
constexpr int64_t kParallelDecode = int64_t{1} << 20;

void UnpackWeightInto(const PackedWeight& p, std::span<float> w, std::string_view what) {
  const PackFormatTraits& t = GetTraits(p.format);
  QF_CHECK(!p.shape.empty(), "{}: packed {} weight has no shape", what, t.name);
  int64_t numel = 1;
  for (int64_t s : p.shape) numel *= s;
  const int64_t in = p.shape.back();
  const int64_t out = p.shape.size() >= 2 ? p.shape[p.shape.size() - 2] : 1;
  const int64_t rows = numel / in;
  QF_CHECK(static_cast<int64_t>(w.size()) == numel, "{}: unpacking {} values into {}", what, numel, w.size());
  auto need = [&](size_t got, int64_t want, std::string_view field) {
    QF_CHECK(static_cast<int64_t>(got) == want, "{}: packed {} {} has {} elements, expected {}", what, t.name, field,
             got, want);
  };
  switch (p.format) {
    case PackFormat::kFp8:
    case PackFormat::kFp8PerChannel: {
      need(p.weight.size(), numel, "weight");
      const int64_t n = static_cast<int64_t>(p.scale_f32.size());
      QF_CHECK(n >= 1 && numel % n == 0, "{}: packed {} weight_scale has {} elements", what, t.name, n);
      const int64_t per = numel / n;
#pragma omp parallel for if (numel > kParallelDecode)
      for (int64_t i = 0; i < numel; ++i) w[i] = DecodeE4M3(p.weight[i]) * p.scale_f32[i / per];
      break;
    }
    case PackFormat::kFp8Block: {
      need(p.weight.size(), numel, "weight");
      const int64_t ob = (out + 127) / 128, ib = (in + 127) / 128;
      need(p.scale_f32.size(), (rows / out) * ob * ib, "weight_scale");
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < in; ++c)
          w[r * in + c] = DecodeE4M3(p.weight[r * in + c]) * p.scale_f32[((r / out) * ob + (r % out) / 128) * ib + c / 128];
      break;
    }
    case PackFormat::kNvfp4: {
      need(p.weight.size(), numel / 2, "weight");
      need(p.scale_bytes.size(), numel / 16, "weight_scale");
      QF_CHECK(p.weight_scale_2.has_value(), "{}: packed nvfp4 weight has no weight_scale_2", what);
#pragma omp parallel for if (numel > kParallelDecode)
      for (int64_t i = 0; i < numel; ++i) {
        const uint8_t byte = p.weight[i / 2];
        const uint8_t code = (i % 2 == 0) ? (byte & 0xF) : (byte >> 4);
        w[i] = DecodeNvfp4Element(code, p.scale_bytes[i / 16], *p.weight_scale_2);
      }
      break;
    }
    case PackFormat::kMxfp8:
    case PackFormat::kMxfp4: {
      const bool fp8 = p.format == PackFormat::kMxfp8;
      need(p.weight.size(), fp8 ? numel : numel / 2, "weight");
      need(p.scale_bytes.size(), numel / 32, "weight_scale");
      for (int64_t i = 0; i < numel; ++i) {
        const float s = DecodeE8M0(p.scale_bytes[i / 32]);
        if (fp8) {
          w[i] = DecodeE4M3(p.weight[i]) * s;
        } else {
          const uint8_t byte = p.weight[i / 2];
          w[i] = DecodeE2M1((i % 2 == 0) ? (byte & 0xF) : (byte >> 4)) * s;
        }
      }
      break;
    }
    case PackFormat::kInt8: {
      need(p.weight.size(), numel, "weight");
      need(p.scale_f32.size(), p.shape[0], "weight_scale");
      const int64_t per = numel / p.shape[0];
      for (int64_t i = 0; i < numel; ++i)
        w[i] = static_cast<float>(static_cast<int8_t>(p.weight[i])) * p.scale_f32[i / per];
      break;
    }
    case PackFormat::kInt4Awq: {
      need(p.weight.size(), numel / 2, "weight");
      QF_CHECK(in % 128 == 0 && out % 2 == 0, "{}: int4_awq shape must have in % 128 == 0 and even out", what);
      const int64_t nb = in / 128;
      need(p.scale_f32.size(), rows * nb, "weight_scale");
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t l = r / out, o = r % out;
        for (int64_t c = 0; c < in; ++c) {
          const uint8_t byte = p.weight[(l * (out / 2) + o / 2) * in + c];
          const int nib = (o % 2 == 0) ? (byte & 0xF) : (byte >> 4);
          const int q = nib >= 8 ? nib - 16 : nib;
          w[r * in + c] = static_cast<float>(q) * p.scale_f32[r * nb + c / 128];
        }
      }
      break;
    }
  }
}

std::vector<float> UnpackWeight(const PackedWeight& p, std::string_view what) {
  int64_t numel = 1;
  for (int64_t s : p.shape) numel *= s;
  std::vector<float> w(static_cast<size_t>(std::max<int64_t>(numel, 0)));
  UnpackWeightInto(p, w, what);
  return w;
}

}  // namespace qforge
