// Export-to-export comparison (see compare.h).
#include "qforge/export/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "qforge/base/strings.h"
#include "qforge/io/safetensors.h"

namespace qforge::exporter {
namespace {

// Tensors written from the calibration forward's activation amax.
bool IsActivationScale(const std::string& name) {
  return EndsWith(name, ".input_scale") || EndsWith(name, ".output_scale") || EndsWith(name, ".k_scale") ||
         EndsWith(name, ".v_scale");
}

}  // namespace

CompareReport CompareCheckpoints(const std::filesystem::path& a, const std::filesystem::path& b,
                                 const CompareOptions& options) {
  CompareReport r;
  const CheckpointTensors ca = CheckpointTensors::Open(a);
  const CheckpointTensors cb = CheckpointTensors::Open(b);
  const std::set<std::string> nb(cb.names().begin(), cb.names().end());
  for (const auto& n : ca.names()) {
    if (!nb.count(n)) r.problems.push_back(fmt::format("'{}' is in {} only", n, a.string()));
  }
  const std::set<std::string> na(ca.names().begin(), ca.names().end());
  for (const auto& n : cb.names()) {
    if (!na.count(n)) r.problems.push_back(fmt::format("'{}' is in {} only", n, b.string()));
  }
  for (const auto& n : ca.names()) {
    if (!nb.count(n)) continue;
    ++r.tensors;
    const TensorInfo& ia = ca.Info(n);
    const TensorInfo& ib = cb.Info(n);
    if (ia.dtype != ib.dtype || ia.shape != ib.shape) {
      r.problems.push_back(fmt::format("'{}': {} {} vs {} {}", n, DTypeName(ia.dtype), ShapeToString(ia.shape),
                                       DTypeName(ib.dtype), ShapeToString(ib.shape)));
      continue;
    }
    const Tensor ta = ca.Get(n);
    const Tensor tb = cb.Get(n);
    const bool same = ta.nbytes() == tb.nbytes() && std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) == 0;
    if (same) ++r.identical;
    if (IsActivationScale(n) && IsFloat(ia.dtype)) {
      ++r.activation_scales;
      const Tensor fa = ta.ToF32(), fb = tb.ToF32();
      for (int64_t i = 0; i < fa.numel(); ++i) {
        const double x = fa.data<float>()[i], y = fb.data<float>()[i];
        const double d = std::fabs(x - y) / std::max({std::fabs(x), std::fabs(y), 1e-30});
        if (!(d <= r.max_scale_rel_diff)) {  // NaN counts as the largest difference
          r.max_scale_rel_diff = std::isnan(d) ? INFINITY : d;
          r.max_scale_tensor = n;
        }
        if (!(d <= options.scale_rtol)) {
          r.problems.push_back(fmt::format("'{}'[{}]: {} vs {} (relative difference {:.3g} > {:.3g})", n, i, x, y, d,
                                           options.scale_rtol));
          break;
        }
      }
    } else if (!same) {
      int64_t differing = 0;
      const auto* pa = static_cast<const uint8_t*>(ta.raw());
      const auto* pb = static_cast<const uint8_t*>(tb.raw());
      for (size_t i = 0; i < ta.nbytes(); ++i) differing += pa[i] != pb[i];
      r.problems.push_back(fmt::format("'{}' ({} {}): {} of {} bytes differ (must be bit-identical)", n,
                                       DTypeName(ia.dtype), ShapeToString(ia.shape), differing, ta.nbytes()));
    }
    ca.Release(n);
    cb.Release(n);
  }
  return r;
}

std::string CompareReport::ToText() const {
  std::string s = fmt::format("tensors {}: {} byte-identical; activation scales {} (max relative difference {:.3g}{})\n",
                              tensors, identical, activation_scales, max_scale_rel_diff,
                              max_scale_tensor.empty() ? "" : " in '" + max_scale_tensor + "'");
  const size_t shown = std::min<size_t>(problems.size(), 20);
  for (size_t i = 0; i < shown; ++i) s += "  problem: " + problems[i] + "\n";
  if (problems.size() > shown) s += fmt::format("  ... and {} more problems\n", problems.size() - shown);
  s += ok() ? "compare: OK\n" : fmt::format("compare: {} problem(s)\n", problems.size());
  return s;
}

}  // namespace qforge::exporter
