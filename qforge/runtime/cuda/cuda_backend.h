// The CUDA backend (built with -DQF_ENABLE_CUDA=ON): device memory from a caching allocator on one GPU,
// cuBLAS(Lt) GEMMs, fused kernels for the rest, and quantization kernels bit-identical to numerics/.
// Everything runs on one CUDA stream in call order; only Download, QuantAmax, Amax, CrossEntropy and
// GroupRowsByExpert wait for the device (they return host values).
#pragma once

#include <memory>

#include "qforge/runtime/backend.h"

namespace qforge {

// The backend on GPU `device` (0-based). Throws qforge::Error when no driver or GPU is found, or the index
// is out of range, naming what was found.
std::unique_ptr<Backend> CreateCudaBackend(int device, ComputeDType compute_dtype);

// GPUs usable now (0 when there is no driver or no GPU; never throws).
int CudaDeviceCount();

}  // namespace qforge
