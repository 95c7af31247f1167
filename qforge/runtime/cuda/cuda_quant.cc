// Host side of the CUDA quantization ops: the reference's validation, the plan's group layout, where each
// amax comes from (host values, a device reduction), and which kernels of cuda_quant_kernels.h run.
#include "qforge/runtime/cuda/cuda_quant.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <utility>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"
#include "qforge/runtime/cuda/cuda_quant_kernels.h"

namespace qforge::cuda {
namespace {

namespace q = quant;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::atomic<int64_t> g_host_fallbacks{0};

void Launched(cudaError_t e, std::string_view kernel) {
  QF_CHECK(e == cudaSuccess, "CUDA quantization kernel {} failed: {}", kernel, cudaGetErrorString(e));
}

// Sub-allocations of one be.Alloc, each 256-byte aligned: Reserve all, then Allocate once.
class Scratch {
 public:
  size_t Reserve(int64_t bytes) {
    const size_t off = size_;
    size_ += (static_cast<size_t>(bytes) + 255) & ~size_t{255};
    return off;
  }
  void Allocate(Backend& be) {
    if (size_ > 0) buf_ = be.Alloc(static_cast<int64_t>(size_));
  }
  template <typename T>
  T* At(size_t off) const {
    return reinterpret_cast<T*>(static_cast<char*>(buf_.data()) + off);
  }

 private:
  size_t size_ = 0;
  Buffer buf_;
};

// The plan's group grid as a q::GroupLayout (merge rules in cuda_quant_kernels.h), or nullopt when more
// than q::kMaxRank dims remain. Walks the dims innermost first, merging each into the one inside it when
//   * it is kept (extent 1) and the inner dim has no padding (shape % extent == 0): (s*S, E), or
//   * the inner dim is one whole group (extent == shape): (s*S, e*S);
// size-1 kept dims vanish. A block longer than its dim is one partial group whatever its length, so such
// extents are bounded (at least 32, so that 16- and 32-blocks keep their size) to keep products small.
std::optional<q::GroupLayout> Collapse(const QdqPlan& p) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (shape, extent), innermost first
  for (int d = static_cast<int>(p.shape.size()) - 1; d >= 0; --d) {
    const int64_t s = p.shape[d];
    const int64_t e = std::min(p.extent[d], std::max<int64_t>(s + 1, 32));
    if (s == 1 && e == 1) continue;
    if (!dims.empty()) {
      auto& [is, ie] = dims.back();
      if (e == 1 && is % ie == 0) {
        is *= s;
        continue;
      }
      if (ie == is) {
        ie = e * is;
        is *= s;
        continue;
      }
    }
    dims.emplace_back(s, e);
  }
  if (dims.size() > static_cast<size_t>(q::kMaxRank)) return std::nullopt;
  q::GroupLayout L;
  L.rank = static_cast<int>(dims.size());
  L.numel = p.numel;
  for (int d = 0; d < L.rank; ++d) {
    const auto [s, e] = dims[L.rank - 1 - d];
    L.shape[d] = s;
    L.extent[d] = e;
    L.groups[d] = (s + e - 1) / e;
  }
  int64_t stride = 1;
  for (int d = L.rank - 1; d >= 0; --d) {
    L.gstride[d] = stride;
    stride *= L.groups[d];
  }
  L.num_groups = stride;
  QF_ASSERT(L.num_groups == p.num_groups, "collapsed layout has {} groups, the plan {}", L.num_groups, p.num_groups);
  if (L.rank > 0) {
    const auto e = static_cast<uint64_t>(L.extent[L.rank - 1]);
    L.ext_shift = std::has_single_bit(e) ? std::countr_zero(e) : -1;
  }
  return L;
}

// [rows, cols] with dynamic blocks of `block` along each row (the fused kernel's layout), if L is that.
std::optional<std::pair<int64_t, int64_t>> RowBlocks(const q::GroupLayout& L, int64_t block) {
  if (block != 16 && block != 32) return std::nullopt;
  if (L.rank == 1 && L.extent[0] == block) return std::pair<int64_t, int64_t>{1, L.shape[0]};
  if (L.rank == 2 && L.extent[0] == 1 && L.extent[1] == block) return std::pair<int64_t, int64_t>{L.shape[0], L.shape[1]};
  return std::nullopt;
}

q::QdqOp MxOp(Format element) {
  switch (element) {
    case Format::kE4M3: return q::QdqOp::kMxE4M3;
    case Format::kE5M2: return q::QdqOp::kMxE5M2;
    case Format::kE3M2: return q::QdqOp::kMxE3M2;
    case Format::kE2M3: return q::QdqOp::kMxE2M3;
    case Format::kE2M1: return q::QdqOp::kMxE2M1;
    case Format::kInt8: return q::QdqOp::kMxInt8;
    default: break;
  }
  QF_ASSERT(false, "MX plan with element format {}", GetTraits(element).name);
  return q::QdqOp::kMxE4M3;
}

std::vector<float> DownloadAll(Backend& be, const float* x, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  be.Download(h.data(), x, n * static_cast<int64_t>(sizeof(float)));
  return h;
}

bool Bad(const q::ReduceStats& s) { return s.nonfinite != 0 || s.first_negative != 0; }

// Error paths: the reference on the downloaded input throws the Error (its text names the first offending
// index and value); the device saw the same input, so the reference must throw.
void ThrowAmaxError(Backend& be, const QuantSpec& spec, const float* x, std::span<const int64_t> shape, int64_t n,
                    std::string_view what) {
  const std::vector<float> hx = DownloadAll(be, x, n);
  ComputeAmax(spec, hx, shape, what);
  QF_ASSERT(false, "{}: the device rejected an input that ComputeAmax accepts", what);
}

void ThrowFakeQuantError(Backend& be, const QuantSpec& spec, const float* x, std::span<const int64_t> shape, int64_t n,
                         std::span<const float> amax, std::optional<float> global_amax, std::string_view what) {
  const std::vector<float> hx = DownloadAll(be, x, n);
  std::vector<float> hout(hx.size());
  qforge::FakeQuant(spec, hx, shape, amax, hout, global_amax, what);  // the scalar reference (no kernels)
  QF_ASSERT(false, "{}: the device rejected a fake quant that the reference accepts", what);
}

// Whether FakeQuant's `amax` span passes the reference's checks (qdq.cc ResolveAmax).
bool AmaxSpanOk(const QdqPlan& p, std::span<const float> amax) {
  if (p.kind == QdqKind::kMx || p.spec.use_constant_amax || p.spec.constant_amax) return true;
  if (p.kind == QdqKind::kNvfp4Dynamic) return amax.empty() || p.spec.dynamic || amax.size() == 1;
  if (p.spec.dynamic) return true;
  return amax.size() == 1 || static_cast<int64_t>(amax.size()) == p.num_groups;
}

// Whole-tensor statistics of x into `slots` (q::AbsMaxStatsSlots(n) of them); returns the result slot.
q::ReduceStats* WholeTensorStats(const float* x, int64_t n, bool check_negative, q::ReduceStats* slots,
                                 cudaStream_t stream) {
  Launched(q::LaunchAbsMaxStats(x, n, check_negative, slots, stream), "AbsMaxStats");
  return slots + q::AbsMaxStatsSlots(n) - 1;
}

int64_t StatsBytes(int64_t n) { return q::AbsMaxStatsSlots(n) * static_cast<int64_t>(sizeof(q::ReduceStats)); }

void Zero(void* p, int64_t bytes, cudaStream_t stream) {
  Launched(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), stream), "memset");
}

// The host fallback of FakeQuant (layouts the kernels do not index): download -> reference -> upload.
void HostFakeQuant(Backend& be, const QuantSpec& spec, const float* x, std::span<const int64_t> shape, int64_t n,
                   std::span<const float> amax, float* out, std::optional<float> global_amax, std::string_view what,
                   bool round_bf16) {
  g_host_fallbacks.fetch_add(1, std::memory_order_relaxed);
  const std::vector<float> hx = DownloadAll(be, x, n);
  std::vector<float> hout(hx.size());
  qforge::FakeQuant(spec, hx, shape, amax, hout, global_amax, what);
  if (round_bf16)
    for (float& v : hout) v = Bf16ToF32(F32ToBf16Rne(v));
  be.Upload(out, hout.data(), n * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

int64_t HostFallbackCount() { return g_host_fallbacks.load(std::memory_order_relaxed); }

std::vector<float> QuantAmax(Backend& be, cudaStream_t stream, const QuantSpec& spec, const float* x,
                             std::span<const int64_t> shape, std::string_view what) {
  const QdqPlan p = MakeQdqPlan(spec, shape, what);
  if (p.kind == QdqKind::kMx) return {};
  if (p.spec.use_constant_amax) return {448.0f};
  if (p.spec.constant_amax) return {static_cast<float>(*p.spec.constant_amax)};
  if (p.numel == 0) return ComputeAmax(spec, {}, shape, what);  // no data: the reference's own answer
  const bool check_negative = p.kind == QdqKind::kInt && p.spec.is_unsigned;

  // One value (NVFP4 dynamic: the global amax): the whole-tensor reduction.
  if (p.kind == QdqKind::kNvfp4Dynamic || p.num_groups == 1) {
    Buffer slots = be.Alloc(StatsBytes(p.numel));
    const q::ReduceStats* result = WholeTensorStats(x, p.numel, check_negative, slots.as<q::ReduceStats>(), stream);
    q::ReduceStats r;
    be.Download(&r, result, sizeof r);
    if (Bad(r)) ThrowAmaxError(be, spec, x, shape, p.numel, what);
    return {r.amax};
  }

  const std::optional<q::GroupLayout> layout = Collapse(p);
  if (!layout) {
    g_host_fallbacks.fetch_add(1, std::memory_order_relaxed);
    return ComputeAmax(spec, DownloadAll(be, x, p.numel), shape, what);
  }
  // [stats | group maxima], zeroed and reduced in one pass; the stats come back first, then (when every
  // value was finite) the maxima straight into the result: each group's max bit pattern is its max|x|
  // (from +0, as GroupMaxPropagate).
  constexpr int64_t kStatsBytes = 256;
  const int64_t bits_bytes = p.num_groups * static_cast<int64_t>(sizeof(uint32_t));
  Buffer buf = be.Alloc(kStatsBytes + bits_bytes);
  auto* stats = buf.as<q::ReduceStats>();
  auto* bits = reinterpret_cast<uint32_t*>(buf.as<char>() + kStatsBytes);
  Zero(buf.data(), kStatsBytes + bits_bytes, stream);
  Launched(q::LaunchGroupMax(x, *layout, q::MaxMode::kPropagate, check_negative, bits, stats, stream), "GroupMax");
  q::ReduceStats r;
  be.Download(&r, stats, sizeof r);
  if (Bad(r)) ThrowAmaxError(be, spec, x, shape, p.numel, what);
  std::vector<float> out(static_cast<size_t>(p.num_groups));
  be.Download(out.data(), bits, bits_bytes);  // fp32 bit patterns: the floats themselves
  return out;
}

void FakeQuant(Backend& be, cudaStream_t stream, const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
               std::span<const float> amax, float* out, std::optional<float> global_amax, std::string_view what,
               bool round_bf16) {
  const QdqPlan p = MakeQdqPlan(spec, shape, what);
  if (p.numel == 0) return;  // ModelOpt returns empty inputs unchanged (spec §5.0)
  const std::optional<q::GroupLayout> layout = Collapse(p);
  if (!layout) {
    HostFakeQuant(be, spec, x, shape, p.numel, amax, out, global_amax, what, round_bf16);
    return;
  }
  const q::GroupLayout& L = *layout;
  const int64_t n = p.numel;
  const bool constant = p.spec.use_constant_amax || p.spec.constant_amax.has_value();
  const float constant_value = p.spec.use_constant_amax ? 448.0f : static_cast<float>(p.spec.constant_amax.value_or(0));

  // The reference's input checks, in its order, before anything is written (out may alias x).
  if (p.kind == QdqKind::kInt && p.spec.is_unsigned) {
    Buffer slots = be.Alloc(StatsBytes(n));
    const q::ReduceStats* result = WholeTensorStats(x, n, true, slots.as<q::ReduceStats>(), stream);
    q::ReduceStats r;
    be.Download(&r, result, sizeof r);
    if (r.first_negative != 0) ThrowFakeQuantError(be, spec, x, shape, n, amax, global_amax, what);
  }
  if (!AmaxSpanOk(p, amax)) ThrowFakeQuantError(be, spec, x, shape, n, amax, global_amax, what);

  q::QdqArgs args;
  args.max_bound = p.max_bound;
  args.min_bound = p.min_bound;
  args.round_bf16 = round_bf16;
  Scratch sc;

  switch (p.kind) {
    case QdqKind::kInt:
    case QdqKind::kFp8: {
      args.op = p.kind == QdqKind::kInt ? q::QdqOp::kInt : q::QdqOp::kFp8;
      if (constant || (!p.spec.dynamic && amax.size() == 1)) {
        Launched(q::LaunchQdqSingle(x, out, n, args, nullptr, constant ? constant_value : amax[0], stream), "QdqSingle");
        return;
      }
      if (p.spec.dynamic && p.num_groups == 1) {  // per-tensor amax of this input, kept on the device
        const size_t s_off = sc.Reserve(StatsBytes(n));
        sc.Allocate(be);
        const q::ReduceStats* r = WholeTensorStats(x, n, false, sc.At<q::ReduceStats>(s_off), stream);
        Launched(q::LaunchQdqSingle(x, out, n, args, &r->amax, 0.0f, stream), "QdqSingle");
        return;
      }
      const size_t a_off = sc.Reserve(p.num_groups * 4);
      const size_t b_off = p.spec.dynamic ? sc.Reserve(p.num_groups * 4) : 0;
      sc.Allocate(be);
      float* group_amax = sc.At<float>(a_off);
      if (p.spec.dynamic) {  // per-group amax of this input (per-token dynamic), kept on the device
        uint32_t* bits = sc.At<uint32_t>(b_off);
        Zero(bits, p.num_groups * 4, stream);
        Launched(q::LaunchGroupMax(x, L, q::MaxMode::kPropagate, false, bits, nullptr, stream), "GroupMax");
        Launched(q::LaunchFinalizeGroups(bits, L, q::FinalizeMode::kAmax, nullptr, 0.0f, 0.0f, group_amax, stream),
                 "FinalizeGroups");
      } else {
        be.Upload(group_amax, amax.data(), p.num_groups * 4);
      }
      Launched(q::LaunchQdqGrouped(x, out, L, args, group_amax, stream), "QdqGrouped");
      return;
    }

    case QdqKind::kNvfp4Dynamic: {
      args.op = q::QdqOp::kNvfp4;
      // Global amax: the caller's, else max|x| of this input (NaN-propagating), on the device.
      const bool host_global = !amax.empty() && !p.spec.dynamic;
      const auto rows_cols = RowBlocks(L, p.block_size);
      const size_t s_off = host_global ? 0 : sc.Reserve(StatsBytes(n));
      const size_t b_off = rows_cols ? 0 : sc.Reserve(p.num_groups * 4);
      const size_t sc_off = rows_cols ? 0 : sc.Reserve(p.num_groups * 4);
      sc.Allocate(be);
      const float* g_dev = host_global ? nullptr : &WholeTensorStats(x, n, false, sc.At<q::ReduceStats>(s_off), stream)->amax;
      const float g_host = host_global ? amax[0] : 0.0f;
      if (rows_cols) {
        Launched(q::LaunchBlockQdq(x, out, rows_cols->first, rows_cols->second, static_cast<int>(p.block_size), args,
                                   g_dev, g_host, stream),
                 "BlockQdq");
        return;
      }
      uint32_t* bits = sc.At<uint32_t>(b_off);
      float* scales = sc.At<float>(sc_off);
      Zero(bits, p.num_groups * 4, stream);
      Launched(q::LaunchGroupMax(x, L, q::MaxMode::kIgnoreNan, false, bits, nullptr, stream), "GroupMax");
      Launched(q::LaunchFinalizeGroups(bits, L, q::FinalizeMode::kNvfp4Dyn, g_dev, g_host, 0.0f, scales, stream),
               "FinalizeGroups");
      Launched(q::LaunchQdqGrouped(x, out, L, args, scales, stream), "QdqGrouped");
      return;
    }

    case QdqKind::kNvfp4Static: {
      args.op = q::QdqOp::kNvfp4;
      const float fp8_norm = p.spec.block->four_over_six ? 256.0f : 448.0f;
      // Resolved per-group amax (qdq.cc ResolveAmax): one host value, a host array, or (type: dynamic) the
      // device maxima of this input.
      const bool host_single = constant || (!p.spec.dynamic && amax.size() == 1);
      const float amax_value = constant ? constant_value : (host_single ? amax[0] : 0.0f);
      const bool device_amax = !constant && p.spec.dynamic;
      if (host_single) {
        // Every group has the same scale; the global amax is the caller's or max(0, value) (ResolveGlobal).
        const float g = global_amax ? *global_amax : (std::isnan(amax_value) ? kNaN : std::max(0.0f, amax_value));
        const float s = Nvfp4StaticBlockScale(amax_value, g, fp8_norm);
        const float eff = s == 0.0f ? s : (IsFiniteF32(s) ? s : 1.0f);
        Launched(q::LaunchQdqSingle(x, out, n, args, nullptr, eff, stream), "QdqSingle");
        return;
      }
      const bool need_stats = device_amax && (!global_amax || p.num_groups == 1);
      const size_t s_off = need_stats ? sc.Reserve(StatsBytes(n)) : 0;
      const size_t a_off = sc.Reserve(p.num_groups * 4);
      const size_t b_off = device_amax && p.num_groups > 1 ? sc.Reserve(p.num_groups * 4) : 0;
      const size_t scale_off = sc.Reserve(p.num_groups * 4);
      sc.Allocate(be);
      float* group_amax = sc.At<float>(a_off);
      float* scales = sc.At<float>(scale_off);
      const float* global_dev = nullptr;
      float global_host = 0.0f;
      const float* amax_dev = group_amax;
      if (device_amax) {
        // The global amax of a dynamic static-NVFP4 quantizer is the max of its group maxima, which is
        // max|x| of the input (NaN if any NaN): the whole-tensor reduction.
        const q::ReduceStats* r = need_stats ? WholeTensorStats(x, n, false, sc.At<q::ReduceStats>(s_off), stream) : nullptr;
        if (p.num_groups == 1) {
          amax_dev = &r->amax;
        } else {
          uint32_t* bits = sc.At<uint32_t>(b_off);
          Zero(bits, p.num_groups * 4, stream);
          Launched(q::LaunchGroupMax(x, L, q::MaxMode::kPropagate, false, bits, nullptr, stream), "GroupMax");
          Launched(q::LaunchFinalizeGroups(bits, L, q::FinalizeMode::kAmax, nullptr, 0.0f, 0.0f, group_amax, stream),
                   "FinalizeGroups");
        }
        if (global_amax) {
          global_host = *global_amax;
        } else {
          global_dev = &r->amax;
        }
      } else {
        be.Upload(group_amax, amax.data(), p.num_groups * 4);
        if (global_amax) {
          global_host = *global_amax;
        } else {
          float g = 0.0f;
          for (float a : amax) g = std::isnan(a) || std::isnan(g) ? kNaN : std::max(g, a);
          global_host = g;
        }
      }
      Launched(q::LaunchNvfp4StaticScales(amax_dev, 0.0f, p.num_groups, global_dev, global_host, fp8_norm, scales, stream),
               "Nvfp4StaticScales");
      Launched(q::LaunchQdqGrouped(x, out, L, args, scales, stream), "QdqGrouped");
      return;
    }

    case QdqKind::kMx: {
      args.op = MxOp(p.element);
      if (const auto rows_cols = RowBlocks(L, p.block_size)) {
        Launched(q::LaunchBlockQdq(x, out, rows_cols->first, rows_cols->second, static_cast<int>(p.block_size), args,
                                   nullptr, 0.0f, stream),
                 "BlockQdq");
        return;
      }
      const size_t b_off = sc.Reserve(p.num_groups * 4);
      const size_t e_off = sc.Reserve(p.num_groups * 4);
      sc.Allocate(be);
      uint32_t* bits = sc.At<uint32_t>(b_off);
      float* exps = sc.At<float>(e_off);
      Zero(bits, p.num_groups * 4, stream);
      Launched(q::LaunchGroupMax(x, L, q::MaxMode::kIgnoreNanClampMax, false, bits, nullptr, stream), "GroupMax");
      Launched(q::LaunchFinalizeGroups(bits, L, q::FinalizeMode::kMxExponent, nullptr, 0.0f, p.max_bound, exps, stream),
               "FinalizeGroups");
      Launched(q::LaunchQdqGrouped(x, out, L, args, exps, stream), "QdqGrouped");
      return;
    }
  }
  QF_ASSERT(false, "{}: unhandled QdqKind {}", what, static_cast<int>(p.kind));
}

bool PackNvfp4(Backend& be, cudaStream_t stream, const float* w, int64_t rows, int64_t cols, float weight_scale_2,
               uint8_t* packed, uint8_t* scales) {
  QF_CHECK(rows >= 0 && cols >= 0 && cols % 16 == 0,
           "nvfp4 packing needs a [rows, cols] weight with cols a multiple of 16, got [{}, {}]", rows, cols);
  const int64_t nblk = rows * cols / 16;
  if (nblk == 0) return true;
  // Degenerate weight_scale_2 (0, NaN, inf, or so small that 6 * ws2 is subnormal) makes the export
  // formula divide 0 by 0 or by a subnormal, where the GPU's NaN signs and subnormal handling differ from
  // the x86 reference: decline, and the caller runs the host reference. Exports never get there
  // (weight_scale_2 = export_amax / 2688 with export_amax >= FLT_MIN), except for weights below 2^-100.
  if (!(weight_scale_2 >= 0x1p-100f && weight_scale_2 <= std::numeric_limits<float>::max())) return false;
  Buffer flag = be.Alloc(sizeof(int));
  Zero(flag.data(), sizeof(int), stream);
  Launched(q::LaunchPackNvfp4(w, nblk, weight_scale_2, packed, scales, flag.as<int>(), stream), "PackNvfp4");
  int nonfinite = 0;
  be.Download(&nonfinite, flag.data(), sizeof nonfinite);
  return nonfinite == 0;
}

namespace {

ErrorSums DownloadSums(Backend& be, const Buffer& sums) {
  double h[2] = {0, 0};
  be.Download(h, sums.data(), sizeof h);
  return {h[0], h[1]};
}

}  // namespace

ErrorSums Nvfp4Error(Backend& be, cudaStream_t stream, const float* w, const uint8_t* packed, const uint8_t* scales,
                     int64_t rows, int64_t cols, float weight_scale_2) {
  QF_CHECK(rows >= 0 && cols >= 0 && cols % 16 == 0,
           "nvfp4 error needs a [rows, cols] weight with cols a multiple of 16, got [{}, {}]", rows, cols);
  Buffer sums = be.Alloc(2 * sizeof(double));
  Zero(sums.data(), 2 * sizeof(double), stream);
  Launched(q::LaunchNvfp4Error(w, packed, scales, rows * cols, weight_scale_2, sums.as<double>(), stream),
           "Nvfp4Error");
  return DownloadSums(be, sums);
}

void Nvfp4SweepBlocks(Backend& be, cudaStream_t stream, const float* w, int64_t rows, int64_t cols,
                      std::span<const float> scales, int32_t* index) {
  QF_CHECK(rows >= 0 && cols >= 0 && !scales.empty() && scales.size() <= 4096,
           "nvfp4 sweep of a [{}, {}] weight over {} scales", rows, cols, scales.size());
  const Buffer s = be.AllocCopy(scales.data(), static_cast<int64_t>(scales.size() * sizeof(float)));
  Launched(q::LaunchNvfp4Sweep(w, rows, cols, s.as<float>(), static_cast<int>(scales.size()), index, stream),
           "Nvfp4SweepBlocks");
}

ErrorSums Fp8Error(Backend& be, cudaStream_t stream, const float* w, const uint8_t* codes, const float* scales,
                   int64_t n, int64_t group) {
  QF_CHECK(n >= 0 && group > 0, "FP8 error of {} values needs a positive group size, got {}", n, group);
  Buffer sums = be.Alloc(2 * sizeof(double));
  Zero(sums.data(), 2 * sizeof(double), stream);
  Launched(q::LaunchFp8Error(w, codes, scales, n, group, sums.as<double>(), stream), "Fp8Error");
  return DownloadSums(be, sums);
}

bool EncodeFp8(Backend& be, cudaStream_t stream, const float* w, const float* scales, int64_t n, int64_t group,
               uint8_t* codes) {
  QF_CHECK(n >= 0 && group > 0, "FP8 export cast of {} values needs a positive group size, got {}", n, group);
  if (n == 0) return true;
  Buffer flag = be.Alloc(sizeof(int));
  Zero(flag.data(), sizeof(int), stream);
  Launched(q::LaunchEncodeFp8(w, scales, n, group, codes, flag.as<int>(), stream), "EncodeFp8");
  int nonfinite = 0;
  be.Download(&nonfinite, flag.data(), sizeof nonfinite);
  return nonfinite == 0;
}

}  // namespace qforge::cuda
