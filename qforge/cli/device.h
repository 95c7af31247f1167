// `--device` / `--compute-dtype`, shared by the commands that run forward passes (quantize, eval).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/runtime/backend.h"

namespace qforge::cli {

struct DeviceArgs {
  std::string device = "cpu";
  std::string compute_dtype;  // "" = the device's default (f32 on the CPU, bf16 on CUDA)

  void Add(CLI::App& sub) {
    sub.add_option("--device", device, "where forward passes run: cpu, cuda or cuda:N")->capture_default_str();
    sub.add_option("--compute-dtype", compute_dtype,
                   "f32 or bf16: bf16 weights and activations with fp32 accumulation (the CUDA default, what "
                   "transformers does with a bf16 model); f32 everywhere (the CPU, and for validation)");
  }

  // The backend these flags ask for; errors name the flag.
  std::unique_ptr<Backend> Create() const {
    ComputeDType dt = DefaultComputeDType(device);
    if (!compute_dtype.empty()) {
      auto p = ParseComputeDType(compute_dtype);
      QF_CHECK(p.has_value(), "--compute-dtype '{}': expected f32 or bf16", compute_dtype);
      dt = *p;
    }
    auto be = CreateBackend(device, dt);
    if (be->device() != Device::kCpu) {
      LogInfo("device {}: {}, compute dtype {}", be->name(), be->Describe(), ComputeDTypeName(dt));
    }
    return be;
  }
};

}  // namespace qforge::cli
