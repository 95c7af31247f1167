// Reference fake quantization (spec §5): plan validation, group reductions, per-kind element math.
#include "qforge/numerics/qdq.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

namespace qforge {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

int NormalizeAxis(int a, int rank, std::string_view key, std::string_view what) {
  QF_CHECK(a >= -rank && a < rank, "{}: {} axis {} is out of range for a rank-{} tensor (valid: [{}, {}))", what,
           key, a, rank, -rank, rank);
  return a < 0 ? a + rank : a;
}

// Converts an all-null block_sizes dict into the equivalent axis (spec §2.2 `_block_sizes_to_axis`).
QuantSpec NormalizeSpec(const QuantSpec& in, int rank, std::string_view what) {
  QuantSpec s = in;
  if (!s.block) return s;
  QF_CHECK(!s.axis, "{}: axis must be None when block_sizes is not None (axis={})", what, fmt::join(*s.axis, ","));
  QF_CHECK(!s.block->sizes.empty(), "{}: block_sizes has no integer axis key", what);
  bool all_null = true;
  for (const auto& [ax, size] : s.block->sizes) all_null &= !size.has_value();
  if (all_null) {
    std::vector<bool> listed(rank, false);
    for (const auto& [ax, size] : s.block->sizes) listed[NormalizeAxis(ax, rank, "block_sizes", what)] = true;
    std::vector<int> kept;
    for (int d = 0; d < rank; ++d)
      if (!listed[d]) kept.push_back(d);
    s.axis = kept;
    s.block.reset();
  }
  return s;
}

int64_t CeilDiv(int64_t a, int64_t b) { return b == 0 ? 0 : (a + b - 1) / b; }

// Calls f(element_index, group_index) for every element in row-major order.
template <typename F>
void ForEachElement(const QdqPlan& p, F&& f) {
  const int rank = static_cast<int>(p.shape.size());
  if (p.numel == 0) return;
  if (rank == 0) {
    f(int64_t{0}, int64_t{0});
    return;
  }
  std::vector<int64_t> gstride(rank, 1);
  for (int d = rank - 2; d >= 0; --d) gstride[d] = gstride[d + 1] * p.groups[d + 1];
  std::vector<int64_t> idx(rank, 0);
  const int64_t last = p.shape[rank - 1];
  const int64_t ext_last = p.extent[rank - 1];
  int64_t e = 0;
  while (true) {
    int64_t base = 0;
    for (int d = 0; d < rank - 1; ++d) base += (idx[d] / p.extent[d]) * gstride[d];
    for (int64_t j = 0; j < last; ++j) f(e + j, base + j / ext_last);
    e += last;
    int d = rank - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < p.shape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
}

// Whether some group is partial (padded with zeros to its full extent).
bool HasPadding(const QdqPlan& p) {
  for (size_t d = 0; d < p.shape.size(); ++d)
    if (p.groups[d] * p.extent[d] != p.shape[d]) return true;
  return false;
}

// Number of real (unpadded) elements in every group.
std::vector<int64_t> GroupCounts(const QdqPlan& p) {
  std::vector<int64_t> n(p.num_groups, 0);
  ForEachElement(p, [&](int64_t, int64_t g) { ++n[g]; });
  return n;
}

int64_t GroupFullSize(const QdqPlan& p) {
  int64_t n = 1;
  for (int64_t e : p.extent) n *= e;
  return n;
}

// max|x| per group; NaN if any NaN in the group (torch.amax semantics).
std::vector<float> GroupMaxPropagate(const QdqPlan& p, std::span<const float> x) {
  std::vector<float> m(p.num_groups, 0.0f);
  ForEachElement(p, [&](int64_t e, int64_t g) {
    const float a = std::fabs(x[e]);
    if (std::isnan(m[g])) return;
    if (std::isnan(a) || a > m[g]) m[g] = a;
  });
  return m;
}

// fmaxf-folded max|x| per group (NaN ignored unless the whole padded group is NaN), with |x| clamped to
// `clamp` first; padding zeros of partial groups take part (CUDA/Triton block reductions).
std::vector<float> GroupMaxIgnoreNan(const QdqPlan& p, std::span<const float> x, float clamp) {
  std::vector<float> m(p.num_groups, kNaN);
  ForEachElement(p, [&](int64_t e, int64_t g) {
    float a = std::fabs(x[e]);
    if (a > clamp) a = clamp;
    m[g] = std::fmax(m[g], a);
  });
  if (HasPadding(p)) {
    const std::vector<int64_t> n = GroupCounts(p);
    const int64_t full = GroupFullSize(p);
    for (int64_t g = 0; g < p.num_groups; ++g)
      if (n[g] < full) m[g] = std::fmax(m[g], 0.0f);
  }
  return m;
}

float ExactIntBound(int bits, bool is_unsigned) {
  return static_cast<float>((int64_t{1} << (bits - 1 + (is_unsigned ? 1 : 0))) - 1);
}

float RoundOutput(float y, RoundTo r) {
  switch (r) {
    case RoundTo::kF32: return y;
    case RoundTo::kBF16: return Bf16ToF32(F32ToBf16Rne(y));
    case RoundTo::kF16: return F16ToF32(F32ToF16Rne(y));
  }
  return y;
}

// MX element conversion (ModelOpt `convert_to_types`) of a non-negative scaled magnitude v.
float MxConvert(float v, Format f) {
  if (f == Format::kInt8) {
    if (std::isnan(v)) return 0.0f;  // CUDA float->int of NaN is 0
    const float r = std::nearbyint(v);
    return r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  }
  const MinifloatParams& p = MinifloatParamsOf(f);
  return DecodeMinifloat(EncodeMinifloat(v, p, Overflow::kSaturate), p);
}

void CheckUnsigned(const QdqPlan& p, std::span<const float> x, std::string_view what) {
  if (!p.spec.is_unsigned || p.kind != QdqKind::kInt) return;
  for (size_t i = 0; i < x.size(); ++i)
    QF_CHECK(!(x[i] < 0.0f), "{}: unsigned quantization got a negative input ({} at flat index {})", what, x[i], i);
}

}  // namespace

float MaxBound(const QuantSpec& spec) {
  if (spec.num_bits.IsFloat(4, 3)) return 448.0f;
  if (spec.num_bits.IsFloat(2, 1) && spec.block && spec.block->scale_bits && spec.block->scale_bits->IsFloat(4, 3))
    return 6.0f;
  if (spec.num_bits.is_float()) {
    auto f = FormatFromExMy(spec.num_bits.exponent, spec.num_bits.mantissa);
    QF_CHECK(f.has_value(), "num_bits ({}, {}) is not a supported float format", spec.num_bits.exponent,
             spec.num_bits.mantissa);
    return GetTraits(*f).max_finite;
  }
  return ExactIntBound(spec.num_bits.bits, spec.is_unsigned);
}

float ExportAmax(float amax, float maxbound) {
  if (amax == 0.0f || std::isnan(amax)) amax = maxbound;
  return std::clamp(amax, FLT_MIN, FLT_MAX);
}

float Nvfp4StaticBlockScale(float block_amax, float global_amax, float fp8_norm) {
  const float sraw = block_amax / 6.0f;
  const float amax8 = global_amax * (448.0f / fp8_norm) / 6.0f;
  return Fp8FakeQuantScalar(sraw, amax8);
}

QdqPlan MakeQdqPlan(const QuantSpec& in, std::span<const int64_t> shape, std::string_view what) {
  const int rank = static_cast<int>(shape.size());
  QdqPlan p;
  p.spec = NormalizeSpec(in, rank, what);
  const QuantSpec& s = p.spec;
  p.shape.assign(shape.begin(), shape.end());
  for (int64_t d : p.shape) {
    QF_CHECK(d >= 0, "{}: negative dimension in shape [{}]", what, fmt::join(p.shape, ", "));
    p.numel *= d;
  }
  const NumBits& nb = s.num_bits;
  if (nb.is_int()) {
    const int min_bits = s.is_unsigned ? 1 : 2;
    QF_CHECK(nb.bits >= min_bits && nb.bits <= 16, "{}: num_bits {} is not supported (integer widths {}..16)", what,
             nb.bits, min_bits);
  } else {
    QF_CHECK(nb.exponent > 0 && nb.mantissa >= 0,
             "{}: num_bits must be a positive integer or a tuple of positive integers, got {}", what, nb.ToString());
  }

  // Arithmetic family.
  if (s.block && s.block->dynamic) {
    QF_CHECK(s.block->sizes.size() == 1, "{}: a dynamic block_sizes config must have exactly one integer axis key, got {}",
             what, s.block->sizes.size());
    if (s.IsMx()) {
      p.kind = QdqKind::kMx;
      if (nb.is_int()) {
        QF_CHECK(nb.bits == 8, "{}: MX integer elements must be 8-bit (MXINT8), got num_bits {}", what, nb.bits);
        p.element = Format::kInt8;
        p.max_bound = 127.0f;
      } else {
        auto f = FormatFromExMy(nb.exponent, nb.mantissa);
        QF_CHECK(f && GetTraits(*f).kind == FormatKind::kFloat,
                 "{}: num_bits {} is not an MX element format (supported: (4, 3), (5, 2), (3, 2), (2, 3), (2, 1))",
                 what, nb.ToString());
        p.element = *f;
        p.max_bound = GetTraits(*f).max_finite;
      }
    } else if (s.IsNvfp4Dynamic()) {
      p.kind = QdqKind::kNvfp4Dynamic;
      p.element = Format::kE2M1;
      p.max_bound = 6.0f;
    } else {
      QF_FAIL("{}: block_sizes type dynamic needs scale_bits (8, 0) (MX) or num_bits (2, 1) with scale_bits (4, 3) "
              "(NVFP4); got num_bits {} and scale_bits {}",
              what, nb.ToString(), s.block->scale_bits ? s.block->scale_bits->ToString() : std::string("None"));
    }
    const auto& [ax, size] = s.block->sizes[0];
    p.block_axis = NormalizeAxis(ax, rank, "block_sizes", what);
    QF_CHECK(size.has_value() && *size > 0, "{}: block_sizes[{}] must be a positive block size for a dynamic block, got {}",
             what, ax, size ? fmt::format("{}", *size) : std::string("None"));
    p.block_size = *size;
  } else if (s.block) {
    if (nb.IsFloat(2, 1)) {
      QF_CHECK(s.block->scale_bits && s.block->scale_bits->IsFloat(4, 3),
               "{}: static (2, 1) blocks need block_sizes.scale_bits (4, 3) (static NVFP4)", what);
      p.kind = QdqKind::kNvfp4Static;
      p.element = Format::kE2M1;
      p.max_bound = 6.0f;
    } else if (nb.IsFloat(4, 3)) {
      QF_CHECK(!s.block->scale_bits, "{}: block_sizes.scale_bits {} is not supported with static FP8 blocks", what,
               s.block->scale_bits->ToString());
      p.kind = QdqKind::kFp8;
      p.element = Format::kE4M3;
      p.max_bound = 448.0f;
    } else if (nb.is_int()) {
      QF_CHECK(!s.block->scale_bits,
               "{}: block_sizes.scale_bits {} (double quantization) is not supported for static integer blocks", what,
               s.block->scale_bits->ToString());
      p.kind = QdqKind::kInt;
    } else {
      QF_FAIL("{}: Only blockwise dynamic quantization is supported for num_bits {} (static blocks need (4, 3), "
              "(2, 1) or an integer)", what, nb.ToString());
    }
  } else {
    if (nb.IsFloat(4, 3)) {
      p.kind = QdqKind::kFp8;
      p.element = Format::kE4M3;
      p.max_bound = 448.0f;
    } else if (nb.is_int()) {
      p.kind = QdqKind::kInt;
    } else {
      QF_FAIL("{}: Only blockwise dynamic quantization is supported for num_bits {}", what, nb.ToString());
    }
  }
  if (p.kind == QdqKind::kInt) {
    p.element = Format::kInt8;
    p.max_bound = ExactIntBound(nb.bits, s.is_unsigned);
    p.min_bound = s.is_unsigned ? 0.0f : (s.narrow_range ? -p.max_bound : -p.max_bound - 1.0f);
  }

  // Group geometry.
  p.extent.assign(rank, 1);
  if (p.kind == QdqKind::kMx || p.kind == QdqKind::kNvfp4Dynamic) {
    p.extent[p.block_axis] = p.block_size;
  } else if (s.block) {
    std::vector<bool> seen(rank, false);
    for (const auto& [ax, size] : s.block->sizes) {
      const int d = NormalizeAxis(ax, rank, "block_sizes", what);
      QF_CHECK(!seen[d], "{}: block_sizes lists axis {} twice", what, d);
      seen[d] = true;
      QF_CHECK(!size || *size > 0, "{}: block_sizes[{}] = {} must be a positive block size", what, ax,
               size ? *size : 0);
      p.extent[d] = size ? *size : std::max<int64_t>(p.shape[d], 1);
    }
  } else if (s.axis) {
    std::vector<bool> kept(rank, false);
    for (int a : *s.axis) kept[NormalizeAxis(a, rank, "axis", what)] = true;
    for (int d = 0; d < rank; ++d) p.extent[d] = kept[d] ? 1 : std::max<int64_t>(p.shape[d], 1);
  } else {
    for (int d = 0; d < rank; ++d) p.extent[d] = std::max<int64_t>(p.shape[d], 1);
  }
  p.groups.resize(rank);
  p.num_groups = 1;
  for (int d = 0; d < rank; ++d) {
    p.groups[d] = CeilDiv(p.shape[d], p.extent[d]);
    p.num_groups *= p.groups[d];
  }
  if (p.kind == QdqKind::kNvfp4Dynamic || p.kind == QdqKind::kMx) {
    QF_CHECK(!s.use_constant_amax && !s.constant_amax, "{}: constant amax cannot be combined with dynamic blocks", what);
  }
  return p;
}

std::optional<std::vector<int64_t>> AmaxShape(const QuantSpec& spec, std::span<const int64_t> shape) {
  const QdqPlan p = MakeQdqPlan(spec, shape);
  if (p.kind == QdqKind::kMx) return std::nullopt;
  if (p.kind == QdqKind::kNvfp4Dynamic || p.spec.use_constant_amax || p.spec.constant_amax)
    return std::vector<int64_t>{};
  std::vector<int64_t> out;
  if (p.spec.block) {
    std::vector<bool> blocked(p.shape.size(), false);
    for (const auto& [ax, size] : p.spec.block->sizes)
      blocked[ax < 0 ? ax + static_cast<int>(p.shape.size()) : ax] = true;
    for (size_t d = 0; d < p.shape.size(); ++d) {
      if (blocked[d]) {
        out.push_back(p.groups[d]);
        out.push_back(1);
      } else {
        out.push_back(p.shape[d]);
      }
    }
    return out;
  }
  if (!p.spec.axis) return std::vector<int64_t>{};
  for (size_t d = 0; d < p.shape.size(); ++d) out.push_back(p.extent[d] == 1 ? p.shape[d] : 1);
  return out;
}

std::vector<float> ComputeAmax(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
                               std::string_view what, const HostQuantKernels* kernels) {
  const QdqPlan p = MakeQdqPlan(spec, shape, what);
  QF_CHECK(static_cast<int64_t>(x.size()) == p.numel, "{}: {} values for shape [{}]", what, x.size(),
           fmt::join(p.shape, ", "));
  if (p.kind == QdqKind::kMx) return {};
  if (p.spec.use_constant_amax) return {448.0f};
  if (p.spec.constant_amax) return {static_cast<float>(*p.spec.constant_amax)};
  CheckUnsigned(p, x, what);
  // One fast pass answers both "all finite?" (max|x| is finite iff every value is) and, for one group,
  // the amax itself; the scalar loops below run only without it or to name a non-finite value.
  float probe = 0.0f;
  const bool all_finite = kernels && kernels->AbsMax(x, true, &probe) && std::isfinite(probe);
  for (size_t i = 0; !all_finite && i < x.size(); ++i)
    QF_CHECK(std::isfinite(x[i]), "{}: max calibration found a non-finite value ({} at flat index {})", what, x[i], i);
  if (all_finite && (p.kind == QdqKind::kNvfp4Dynamic || p.num_groups == 1)) return {probe};
  if (p.kind == QdqKind::kNvfp4Dynamic) {
    float m = 0.0f;
    for (float v : x) m = std::max(m, std::fabs(v));
    return {m};
  }
  return GroupMaxPropagate(p, x);
}

namespace {

// The resolved amax of a plan: one value per group (or global for NVFP4 dynamic), per the rules of
// FakeQuant's contract.
std::vector<float> ResolveAmax(const QdqPlan& p, std::span<const float> x, std::span<const float> amax,
                               std::string_view what, const HostQuantKernels* kernels) {
  if (p.kind == QdqKind::kMx) return {};
  if (p.spec.use_constant_amax) return std::vector<float>(p.num_groups, 448.0f);
  if (p.spec.constant_amax) return std::vector<float>(p.num_groups, static_cast<float>(*p.spec.constant_amax));
  if (p.kind == QdqKind::kNvfp4Dynamic) {
    if (!amax.empty() && !p.spec.dynamic) {
      QF_CHECK(amax.size() == 1, "{}: NVFP4 dynamic takes one global amax, got {} values", what, amax.size());
      return {amax[0]};
    }
    float m = 0.0f;
    if (!(kernels && kernels->AbsMax(x, true, &m))) {
      for (float v : x) {
        const float a = std::fabs(v);
        if (std::isnan(a)) {
          m = kNaN;
          break;
        }
        m = std::max(m, a);
      }
    }
    return {m};
  }
  if (p.spec.dynamic) return GroupMaxPropagate(p, x);
  QF_CHECK(!amax.empty(), "{}: a static quantizer needs its amax (calibrate first)", what);
  if (amax.size() == 1) return std::vector<float>(p.num_groups, amax[0]);
  QF_CHECK(static_cast<int64_t>(amax.size()) == p.num_groups, "{}: amax has {} values but the spec has {} groups",
           what, amax.size(), p.num_groups);
  return {amax.begin(), amax.end()};
}

void FakeQuantResolved(const QdqPlan& p, std::span<const float> x, std::span<const float> amax,
                       std::optional<float> global_amax, std::span<float> out) {
  switch (p.kind) {
    case QdqKind::kInt: {
      const float maxb = p.max_bound, minb = p.min_bound;
      ForEachElement(p, [&](int64_t e, int64_t g) {
        const float a = amax[g];
        if (a <= 0x1p-24f) {
          out[e] = 0.0f;
          return;
        }
        const float scale = maxb / a;
        float q = std::nearbyint(x[e] * scale);
        q = q > maxb ? maxb : q;
        q = q < minb ? minb : q;
        out[e] = q / scale;
      });
      return;
    }
    case QdqKind::kFp8:
      ForEachElement(p, [&](int64_t e, int64_t g) { out[e] = Fp8FakeQuantScalar(x[e], amax[g]); });
      return;
    case QdqKind::kNvfp4Dynamic: {
      const float g = amax[0] / 2688.0f;
      const std::vector<float> bmax = GroupMaxIgnoreNan(p, x, std::numeric_limits<float>::infinity());
      std::vector<float> scale(p.num_groups);
      for (int64_t i = 0; i < p.num_groups; ++i) scale[i] = Nvfp4DynamicBlockScale(bmax[i], g);
      ForEachElement(p, [&](int64_t e, int64_t grp) { out[e] = Nvfp4QdqElement(x[e], scale[grp]); });
      return;
    }
    case QdqKind::kNvfp4Static: {
      const float fp8_norm = p.spec.block->four_over_six ? 256.0f : 448.0f;
      float gamax = 0.0f;
      if (global_amax) {
        gamax = *global_amax;
      } else {
        for (float a : amax) gamax = std::isnan(a) || std::isnan(gamax) ? kNaN : std::max(gamax, a);
      }
      std::vector<float> scale(p.num_groups);
      for (int64_t i = 0; i < p.num_groups; ++i) scale[i] = Nvfp4StaticBlockScale(amax[i], gamax, fp8_norm);
      ForEachElement(p, [&](int64_t e, int64_t grp) {
        const float s = scale[grp];
        if (s == 0.0f) {
          out[e] = 0.0f;
          return;
        }
        out[e] = Nvfp4QdqElement(x[e], IsFiniteF32(s) ? s : 1.0f);
      });
      return;
    }
    case QdqKind::kMx: {
      const std::vector<float> bmax = GroupMaxIgnoreNan(p, x, FLT_MAX);
      std::vector<int> exps(p.num_groups);
      for (int64_t i = 0; i < p.num_groups; ++i) exps[i] = MxScaleExponent(bmax[i], p.max_bound);
      const Format f = p.element;
      ForEachElement(p, [&](int64_t e, int64_t grp) {
        const float v = x[e];
        if (v == 0.0f) {
          out[e] = 0.0f;
          return;
        }
        if (std::isnan(v)) {
          out[e] = kNaN;
          return;
        }
        const float q = MxConvert(std::fabs(v) * Pow2(-exps[grp]), f) * Pow2(exps[grp]);
        out[e] = v < 0.0f ? -q : q;
      });
      return;
    }
  }
}

std::optional<float> ResolveGlobal(const QdqPlan& p, std::span<const float> resolved, std::optional<float> global) {
  if (p.kind != QdqKind::kNvfp4Static) return std::nullopt;
  if (global) return global;
  float g = 0.0f;
  for (float a : resolved) g = std::isnan(a) || std::isnan(g) ? kNaN : std::max(g, a);
  return g;
}

}  // namespace

void FakeQuant(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
               std::span<const float> amax, std::span<float> out, std::optional<float> global_amax,
               std::string_view what, const HostQuantKernels* kernels) {
  const QdqPlan p = MakeQdqPlan(spec, shape, what);
  QF_CHECK(static_cast<int64_t>(x.size()) == p.numel && out.size() == x.size(),
           "{}: {} input / {} output values for shape [{}]", what, x.size(), out.size(), fmt::join(p.shape, ", "));
  if (p.numel == 0) return;  // ModelOpt returns empty inputs unchanged (spec §5.0)
  CheckUnsigned(p, x, what);
  const std::vector<float> resolved = ResolveAmax(p, x, amax, what, kernels);
  const std::optional<float> global = ResolveGlobal(p, resolved, global_amax);
  if (kernels && kernels->FakeQuant(p, x, resolved, global, out)) return;
  FakeQuantResolved(p, x, resolved, global, out);
}

void FakeQuantWithOwnAmax(const QuantSpec& spec, std::span<const float> x, std::span<const int64_t> shape,
                          std::span<float> out, RoundTo round_to, std::string_view what,
                          const HostQuantKernels* kernels) {
  const std::vector<float> amax = spec.dynamic ? std::vector<float>{} : ComputeAmax(spec, x, shape, what, kernels);
  FakeQuant(spec, x, shape, amax, out, std::nullopt, what, kernels);
  if (round_to != RoundTo::kF32)
    for (float& v : out) v = RoundOutput(v, round_to);
}

}  // namespace qforge
