// The export's weight encoder (model/weight_encoder.h) on a ForwardModel's backend: NVFP4 (dynamic path),
// FP8 and FP8 per channel are packed on the device from the weights it already holds, and only the packed
// bytes come back (ForwardModel::EncodeWeight); everything else goes to the host encoder, which also names
// any non-finite weight. The checkpoint's bytes are the same either way.
#pragma once

#include "qforge/forward/forward_model.h"
#include "qforge/model/weight_encoder.h"

namespace qforge {

class DeviceWeightEncoder final : public WeightEncoder {
 public:
  // `host_kernels`: for the host fallback (nullptr: numerics' scalar reference). `ops`: run the device work
  // on this Fork of fm's backend instead of on fm's own (an encoder used from another thread while fm
  // computes; see ForwardModel::EncodeWeight). None owned.
  DeviceWeightEncoder(ForwardModel& fm, const HostQuantKernels* host_kernels, Backend* ops = nullptr)
      : fm_(fm), host_(fm.model(), host_kernels), ops_(ops) {}
  EncodedWeight Encode(int module, PackFormat format, const PackInputs& inputs, std::string_view what) override {
    if (auto e = fm_.EncodeWeight(module, format, inputs, what, 4096, ops_)) {
      ++on_device_;
      return std::move(*e);
    }
    ++on_host_;
    return host_.Encode(module, format, inputs, what);
  }
  int on_device() const { return on_device_; }  // weights encoded by the backend
  int on_host() const { return on_host_; }      // weights the host encoded instead

 private:
  ForwardModel& fm_;
  HostWeightEncoder host_;
  Backend* ops_;
  int on_device_ = 0, on_host_ = 0;
};

}  // namespace qforge
