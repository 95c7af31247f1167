// The CUDA backend (built with -DQF_ENABLE_CUDA=ON): device memory from a caching allocator on one GPU,
// cuBLAS(Lt) GEMMs, fused kernels for the rest, and quantization kernels bit-identical to numerics/.
//
// Streams: everything runs on one non-blocking CUDA stream in call order. Ops that return host values
// wait for the device: Download, Amax, CrossEntropy, GroupRowsByExpert, QuantAmax, PackNvfp4, EncodeFp8.
// Upload returns once the host bytes are copied into pinned staging (the host array may then be reused);
// it waits only for the staging buffer's previous copy.
// Memory: Alloc rounds up to a size class and keeps freed blocks for reuse (never managed memory);
// MemoryInfo's "free" is the device's free memory plus those cached blocks. Out of memory, the cache is
// returned to the device and the allocation retried once before a qforge::Error names the size.
// Numerics: kF32 is true fp32 (no TF32 anywhere); kBF16 follows runtime/backend.h (bf16 weights, bf16
// tensor-core GEMMs with fp32 accumulation, every floating output rounded to bf16).
#pragma once

#include <memory>

#include "qforge/runtime/backend.h"

namespace qforge {

// The backend on GPU `device` (0-based) computing in `compute_dtype`. Throws qforge::Error when no driver
// or GPU is found, the index is out of range, or this build has no kernels for the GPU, naming what was
// found.
std::unique_ptr<Backend> CreateCudaBackend(int device, ComputeDType compute_dtype);

// GPUs usable now (0 when there is no driver or no GPU; never throws).
int CudaDeviceCount();

}  // namespace qforge
