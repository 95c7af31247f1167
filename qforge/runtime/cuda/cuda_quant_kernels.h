// Plain launchers of the CUDA quantization kernels (cuda_quant.cu), driven by cuda_quant.cc.
//
// C++17 and CUDA-runtime types only, so both nvcc (the .cu) and g++ (the C++20 orchestration) compile
// this header. Nothing here knows QuantSpec or QdqPlan: cuda_quant.cc resolves a plan into one of these
// calls (which formula, which group layout, where the amax comes from). Every launcher enqueues work on
// `stream` and returns the launch status (cudaGetLastError); none synchronizes. All pointers are device
// pointers unless a parameter says otherwise; every per-element formula is the one of numerics/qdq.h or
// numerics/encode.h, evaluated with the same fp32 operations in the same order (IEEE division, no
// contraction into FMAs is possible in any of them), so results are bit-identical to the references.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "qforge/numerics/half.h"  // QF_HD

namespace qforge::cuda::quant {

// Largest rank of a group layout after merging neighbouring dims (GroupLayout); plans that need more run
// on the host (cuda_quant.cc counts them).
inline constexpr int kMaxRank = 8;

// A QdqPlan's group grid, with neighbouring dims merged where that keeps every element's group and every
// group's padding: two kept dims (extent 1) merge, and a fully reduced inner dim (extent == shape) merges
// into the dim outside it. Dims are outer-first; element e (row-major over `shape`) belongs to group
// sum_d (idx_d / extent_d) * gstride[d], and group g is partial (zero-padded) iff for some d its grid
// coordinate is groups[d]-1 and shape[d] % extent[d] != 0. rank 0 = one group (a scalar or all-ones shape).
struct GroupLayout {
  int rank = 0;
  int ext_shift = -1;              // log2(extent[rank-1]) when it is a power of two, else -1
  int64_t shape[kMaxRank] = {};
  int64_t extent[kMaxRank] = {};   // group extent per dim (1 = kept, shape = reduced, b = blocked)
  int64_t groups[kMaxRank] = {};   // ceil(shape / extent)
  int64_t gstride[kMaxRank] = {};  // row-major strides of the group grid
  int64_t numel = 1;
  int64_t num_groups = 1;
};

// Group of the elements of row `row` of [rows, cols] = [numel / shape[rank-1], shape[rank-1]], minus the
// last dim's share: sum over the dims before the last of (idx_d / extent_d) * gstride[d]. I is uint32_t
// when every index of the layout fits (cuda_quant.cu), else uint64_t.
template <typename I>
QF_HD inline I RowBase(const GroupLayout& L, I row) {
  I base = 0;
  for (int d = L.rank - 2; d >= 0; --d) {
    const I s = static_cast<I>(L.shape[d]), e = static_cast<I>(L.extent[d]);
    I idx = row;
    if (d > 0) {
      const I q = row / s;
      idx = row - q * s;
      row = q;
    }
    const I gi = e == 1 ? idx : (e >= s ? I{0} : idx / e);
    base += gi * static_cast<I>(L.gstride[d]);
  }
  return base;
}

// The last dim's share of the group of last-dim index c (ext = extent[rank-1]).
template <typename I>
QF_HD inline I SegOf(const GroupLayout& L, I c, I ext) {
  return ext == 1 ? c : (L.ext_shift >= 0 ? (c >> L.ext_shift) : c / ext);
}

// Whether group g is zero-padded.
QF_HD inline bool IsPartial(const GroupLayout& L, int64_t g) {
  for (int d = L.rank - 1; d >= 0; --d) {
    const int64_t gd = g % L.groups[d];
    g /= L.groups[d];
    if (gd == L.groups[d] - 1 && L.shape[d] % L.extent[d] != 0) return true;
  }
  return false;
}

// Result of a whole-tensor reduction (LaunchAbsMaxStats) and the error flags of a grouped one. Index
// fields hold ~index (bitwise not) so that 0 means "none" and atomicMax keeps the smallest index.
struct ReduceStats {
  uint32_t max_bits = 0;                    // max fp32 bit pattern of |x| (NaN patterns sort above inf)
  float amax = 0.0f;                        // max|x| as a float, canonical NaN if any NaN (torch.amax)
  unsigned long long nonfinite = 0;         // number of NaN / +-inf values
  unsigned long long first_nonfinite = 0;   // ~(flat index of the first non-finite value), 0 = none
  unsigned long long first_negative = 0;    // ~(flat index of the first x < 0) when checked, 0 = none
};
static_assert(sizeof(ReduceStats) == 32, "ReduceStats is downloaded as raw bytes");

// Element formula of a fake quant (per-group parameter in brackets):
//   kInt     clamp(rint(x*s), min_bound, max_bound)/s, s = max_bound/amax; amax <= 2^-24 -> 0 [amax]
//   kFp8     e4m3_sat(x*s) * (1/s), s = 448/amax (amax <= 2^-24 -> 1)                      [amax]
//   kNvfp4   sign(x) * E2M1_chain(|x|/s) * s; s == 0 -> 0                     [effective block scale s]
//   kMx*     sign(x) * convert(|x|*2^-e) * 2^e; 0 -> +0, NaN -> NaN           [exponent e, as a float]
enum class QdqOp : int32_t { kInt, kFp8, kNvfp4, kMxE4M3, kMxE5M2, kMxE3M2, kMxE2M3, kMxE2M1, kMxInt8 };

struct QdqArgs {
  QdqOp op = QdqOp::kFp8;
  float max_bound = 0.0f;  // kInt: max_bound; kMx*: the element format's largest finite value
  float min_bound = 0.0f;  // kInt only
  bool round_bf16 = false; // round every output to bf16 (RNE) as the last step (ComputeDType::kBF16)
};

// How a grouped max treats NaN (qdq.cc GroupMaxPropagate / GroupMaxIgnoreNan):
//   kPropagate          max|x| from 0, NaN if any NaN in the group (max calibration, `type: dynamic`)
//   kIgnoreNan          fmax-fold of |x| (NaN only if every element is NaN; padding adds a 0): NVFP4 blocks
//   kIgnoreNanClampMax  the same with |x| clamped to FLT_MAX first (inf -> FLT_MAX): MX blocks
enum class MaxMode : int32_t { kPropagate, kIgnoreNan, kIgnoreNanClampMax };

// What LaunchFinalizeGroups makes of the grouped maxima:
//   kAmax        the kPropagate max as a float (canonical NaN)
//   kNvfp4Dyn    the NVFP4 dynamic block scale of the kIgnoreNan max (padding applied), g = G/2688
//   kMxExponent  the MX exponent of the kIgnoreNanClampMax max (padding applied), as a float
enum class FinalizeMode : int32_t { kAmax, kNvfp4Dyn, kMxExponent };

// Number of ReduceStats slots LaunchAbsMaxStats needs for n elements (partials + the final one).
int AbsMaxStatsSlots(int64_t n);

// Whole-tensor max|x| and the finiteness / sign checks over x[0, n) in one grid-wide two-stage pass:
// per-block partials into slots[0, AbsMaxStatsSlots(n) - 1), the result into the last slot.
// check_negative: also record the first x < 0 (unsigned integer specs).
cudaError_t LaunchAbsMaxStats(const float* x, int64_t n, bool check_negative, ReduceStats* slots,
                              cudaStream_t stream);

// Per-group max of |x| over `layout` (x: layout.numel values) into group_bits[layout.num_groups], which the
// caller zeroes first: kPropagate stores fp32 bits, the kIgnoreNan modes store bits + 1 (0 = only NaN).
// With `stats` (zeroed by the caller) also counts non-finite values and the first non-finite / negative
// (check_negative) index, as LaunchAbsMaxStats does.
cudaError_t LaunchGroupMax(const float* x, const GroupLayout& layout, MaxMode mode, bool check_negative,
                           uint32_t* group_bits, ReduceStats* stats, cudaStream_t stream);

// out[g] for g < layout.num_groups from group_bits (see FinalizeMode). kNvfp4Dyn reads the global amax G
// from global_dev[0] when global_dev is not null, else uses global_host. kMxExponent uses fmt_max.
cudaError_t LaunchFinalizeGroups(const uint32_t* group_bits, const GroupLayout& layout, FinalizeMode mode,
                                 const float* global_dev, float global_host, float fmt_max, float* out,
                                 cudaStream_t stream);

// Static NVFP4 effective block scales: s = Nvfp4StaticBlockScale(amax[g], G, fp8_norm) (qdq.h), then
// s == 0 stays 0 (an all-zero block) and a non-finite s becomes 1. amax[g] = amax_dev[g] when amax_dev is
// not null, else amax_host; G = global_dev[0] when not null, else global_host. n values into out.
cudaError_t LaunchNvfp4StaticScales(const float* amax_dev, float amax_host, int64_t n, const float* global_dev,
                                    float global_host, float fp8_norm, float* out, cudaStream_t stream);

// y[i] = op(x[i], p) for i < n with one parameter p for the whole tensor: param_dev[0] when param_dev is
// not null, else param_host. y may equal x.
cudaError_t LaunchQdqSingle(const float* x, float* y, int64_t n, const QdqArgs& args, const float* param_dev,
                            float param_host, cudaStream_t stream);

// y[e] = op(x[e], params[group(e)]) over `layout`. y may equal x.
cudaError_t LaunchQdqGrouped(const float* x, float* y, const GroupLayout& layout, const QdqArgs& args,
                             const float* params, cudaStream_t stream);

// Fused dynamic-block fake quant (NVFP4 dynamic: op kNvfp4; MX: op kMx*) of x [rows, cols] with blocks of
// `block` (16 or 32) consecutive elements along each row; a row's last block may be partial (padded with
// zeros for its max). One thread per block: max, scale and QDQ from registers. NVFP4 reads its global amax
// G from global_dev[0] when not null, else global_host. y may equal x.
cudaError_t LaunchBlockQdq(const float* x, float* y, int64_t rows, int64_t cols, int block, const QdqArgs& args,
                           const float* global_dev, float global_host, cudaStream_t stream);

// NVFP4 export packing (encode.h, dynamic path) of w [nblk * 16]: scales[b] = Nvfp4ExportBlockScale(max|w_b|,
// ws2), packed[8b + k] = code(w[16b + 2k]) | code(w[16b + 2k + 1]) << 4. Sets *nonfinite = 1 (which the
// caller zeroes) if some weight is not finite.
cudaError_t LaunchPackNvfp4(const float* w, int64_t nblk, float weight_scale_2, uint8_t* packed, uint8_t* scales,
                            int* nonfinite, cudaStream_t stream);

// FP8 export cast codes[i] = e4m3_nonsat(w[i] / scales[i / group]) for i < n; sets *nonfinite = 1 (zeroed by
// the caller) if some w[i] is not finite.
cudaError_t LaunchEncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes,
                            int* nonfinite, cudaStream_t stream);

// Error sums of an export encoding (Backend::Nvfp4Error / Fp8Error) over w[0, n): sums[0] += (w - dq)^2 and
// sums[1] += w^2 in double, dq the decode of numerics UnpackWeight (layout.h DecodeNvfp4Element: packed
// nibbles [n/2] and E4M3 scales [n/16]; FP8: DecodeE4M3(codes[i]) * scales[i / group]). The caller zeroes
// sums[0..1].
cudaError_t LaunchNvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t n,
                             float weight_scale_2, double* sums, cudaStream_t stream);
cudaError_t LaunchFp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group,
                           double* sums, cudaStream_t stream);

// Backend::Nvfp4SweepBlocks: index[r * ceil(cols/16) + b] = the best of the n block scales (device) for each
// 16-element row block of w [rows, cols] (numerics Nvfp4SweepRowBlocks exactly).
cudaError_t LaunchNvfp4Sweep(const float* w, int64_t rows, int64_t cols, const float* scales, int n, int32_t* index,
                             cudaStream_t stream);

}  // namespace qforge::cuda::quant
