// Tensor- and file-level weight packing: the tensors ModelOpt's HF export writes for one `P.weight`
// (spec §5.4-§5.6, §10.2), built on numerics' span encoders (numerics/encode.h), and their inverse.
//
// The encoders run numerics' scalar reference unless the caller passes fast host kernels
// (numerics/quant_kernels.h, e.g. `&cpu::HostKernels()` from the CLI); export/ itself never depends on
// runtime/. The bytes written are the same either way.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qforge/numerics/encode.h"
#include "qforge/numerics/quant_kernels.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

// Safetensors dtype of a stored encoding type (F32, F8_E4M3, U8, I8).
DType StoredDTypeOf(StoredType t);

// The tensors of one packed weight. weight: see the table in numerics/encode.h; weight_scale: F32,
// F8_E4M3 or U8 (E8M0); weight_scale_2: 0-d F32 (NVFP4 only).
struct PackedTensors {
  Tensor weight;
  Tensor weight_scale;
  std::optional<Tensor> weight_scale_2;
};

PackedTensors ToTensors(const PackedWeight& packed);
// The same without copying: the tensors take over `packed`'s buffers.
PackedTensors ToTensors(PackedWeight&& packed);

// Rebuilds a PackedWeight from stored tensors, inferring the format from the dtypes and shapes:
//   E4M3 weight + F32 scale: fp8 (0-d scale), fp8_pc ([out] scale), fp8_pb ([.., ob, 1, ib, 1] scale);
//   E4M3 + U8: mxfp8; U8 + E4M3 (+ weight_scale_2): nvfp4; U8 + U8: mxfp4; U8 + F32: int4_awq;
//   I8 + F32: int8. Throws naming `what` and the dtypes/shapes when nothing matches.
PackedWeight FromTensors(const Tensor& weight, const Tensor& weight_scale, const Tensor* weight_scale_2,
                         std::string_view what);

// `P.weight` for a tensor name: "x.weight" stays, any other name gets ".weight" appended.
std::string WeightNameFor(std::string_view tensor_name);

// Packs one floating tensor (any float dtype; converted to f32 exactly) under `tensor_name`: returns
// ("P.weight", ...), ("P.weight_scale", ...) and ("P.weight_scale_2", ...) where the format has one.
// Weight amax comes from the tensor itself (max calibration) unless `inputs` provide it. Throws naming
// the tensor for non-floating dtypes, non-finite values and shapes the format cannot hold.
// `kernels`: as for PackWeight (nullptr = scalar reference).
std::vector<std::pair<std::string, Tensor>> PackWeightTensor(PackFormat format, std::string_view tensor_name,
                                                             const Tensor& w, const PackInputs& inputs = {},
                                                             const HostQuantKernels* kernels = nullptr);

struct PackFileSummary {
  int packed = 0;        // weights packed (pack) or decoded (unpack)
  int passed_through = 0;  // unpack: other tensors copied (floating ones converted to f32)
};

// `qforge pack`: packs every tensor of `in` in `format` and writes `out` atomically. `kernels`: as for
// PackWeight (nullptr = scalar reference).
PackFileSummary PackSafetensorsFile(PackFormat format, const std::filesystem::path& in,
                                    const std::filesystem::path& out, const HostQuantKernels* kernels = nullptr);

// `qforge unpack`: decodes every `P.weight` that has a `P.weight_scale` to float32 `P.weight` (dropping
// its scale tensors); other tensors are copied, floating ones converted to float32.
PackFileSummary UnpackSafetensorsFile(const std::filesystem::path& in, const std::filesystem::path& out);

}  // namespace qforge
