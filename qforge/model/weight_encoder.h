// The encodings of a Model's Linear weights for export (numerics/encode.h's PackWeight), each with the
// error it introduces. The export (export/hf_export.h) asks a WeightEncoder for every quantized Linear:
// HostWeightEncoder packs the Model's host weights; a device encoder (forward/device_weight_encoder.h)
// packs the copies already resident on a compute device and downloads only the packed bytes. Every
// encoder writes PackWeight's bytes exactly; only where the work happens differs.
#pragma once

#include <span>
#include <utility>
#include <string_view>
#include <vector>

#include "qforge/model/model.h"
#include "qforge/numerics/encode.h"
#include "qforge/numerics/quant_kernels.h"

namespace qforge {

struct EncodedWeight {
  PackedWeight packed;
  double sq_err = 0;  // sum over the weight of (W - decode(packed))^2 (UnpackWeight's decode)
  double sq_ref = 0;  // sum of W^2
  double relative_error() const { return sq_ref > 0 ? sq_err / sq_ref : 0.0; }
};

class WeightEncoder {
 public:
  virtual ~WeightEncoder() = default;
  // Linear `module`'s weight [out_features, in_features] encoded as `format` from `inputs`: the bytes of
  // PackWeight(format, Model::LinearWeight(module), ...). Throws qforge::Error naming `what` where
  // PackWeight does (non-finite weights, shapes the format cannot hold). Called from one thread.
  virtual EncodedWeight Encode(int module, PackFormat format, const PackInputs& inputs, std::string_view what) = 0;
};

// Packs on the host: the weight as the Model holds it (or read from the checkpoint into one reused
// buffer), `kernels` for the fast paths (nullptr: numerics' scalar reference; the bytes are the same).
class HostWeightEncoder final : public WeightEncoder {
 public:
  explicit HostWeightEncoder(Model& model, const HostQuantKernels* kernels = nullptr)
      : model_(model), kernels_(kernels) {}
  EncodedWeight Encode(int module, PackFormat format, const PackInputs& inputs, std::string_view what) override;

 private:
  Model& model_;
  const HostQuantKernels* kernels_;
  // Reused across weights (grown to the largest): a fresh 10^8-float allocation per weight costs its page
  // faults on every weight of a large model.
  std::vector<float> weight_buffer_, decoded_buffer_;
};

// (sum (w - d)^2, sum w^2) over i < w.size() in double, OpenMP-parallel for large weights.
std::pair<double, double> SquaredErrorSums(std::span<const float> w, std::span<const float> decoded);

}  // namespace qforge
