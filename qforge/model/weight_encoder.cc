// Host encoding of Linear weights for export (weight_encoder.h).
#include "qforge/model/weight_encoder.h"

#include <tuple>

#include "qforge/base/error.h"
#include "qforge/numerics/error_sums.h"

namespace qforge {

std::pair<double, double> SquaredErrorSums(std::span<const float> w, std::span<const float> decoded) {
  QF_ASSERT(w.size() == decoded.size(), "error sums over {} and {} values", w.size(), decoded.size());
  const float* d = decoded.data();
  return EncodingErrorSums(w.data(), static_cast<int64_t>(w.size()), [d](int64_t i) { return d[i]; });
}

EncodedWeight HostWeightEncoder::Encode(int module, PackFormat format, const PackInputs& inputs,
                                        std::string_view what) {
  const ModuleInfo& info = model_.modules().at(static_cast<size_t>(module));
  // A weight held by the model is used as it is; others are read into the reused buffer.
  Tensor held;
  std::span<const float> w;
  if (model_.HasHostWeight(module)) {
    held = model_.LinearWeight(module);
    w = held.span<float>();
  } else {
    weight_buffer_.resize(static_cast<size_t>(info.out_features * info.in_features));
    model_.LinearWeightInto(module, weight_buffer_);
    w = weight_buffer_;
  }
  const std::vector<int64_t> shape = {info.out_features, info.in_features};
  EncodedWeight e;
  e.packed = PackWeight(format, w, shape, inputs, what, kernels_);
  decoded_buffer_.resize(w.size());
  UnpackWeightInto(e.packed, decoded_buffer_, what);
  std::tie(e.sq_err, e.sq_ref) = SquaredErrorSums(w, decoded_buffer_);
  return e;
}

}  // namespace qforge
