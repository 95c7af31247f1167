// Loads an exported (ModelOpt-format) quantized checkpoint for evaluation: weights are dequantized from
// their stored encodings, and activations are quantized the way the checkpoint says a runtime would
// (static FP8 / NVFP4 input scales, per-token FP8, MXFP8 inputs, FP8 KV cache with k_scale / v_scale).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "qforge/export/quant_config.h"
#include "qforge/model/model.h"
#include "qforge/numerics/encode.h"
#include "qforge/quant/activation_quant.h"

namespace qforge {

// The pack format that encodes an export format's weights; nullopt where qforge has no encoder.
std::optional<PackFormat> PackFormatForExport(exporter::ExportFormat f);

// What an exported `input_scale` divides the input amax by: 6 * 448 for NVFP4 activations, else the input
// quantizer's max bound (448 FP8, 127 INT8).
float InputScaleDivisor(const QuantSpec& input_spec);

struct QuantizedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<ActivationQuantTable> activations;  // null if nothing is quantized at run time
  std::optional<exporter::HfQuantConfig> config;
  int dequantized_weights = 0;
  int activation_points = 0;
  std::string description;  // one line for logs: "NVFP4 weights (42 Linears), NVFP4 inputs, FP8 KV cache"
};

// True if `dir` holds a quantized checkpoint (either quantization config present).
bool IsQuantizedCheckpoint(const std::filesystem::path& dir);

// Loads `dir`; a checkpoint without quantization config loads as a plain model (activations null). Throws naming
// the tensor for a scale or weight that does not match its format.
QuantizedModel LoadQuantizedModel(const std::filesystem::path& dir, const ModelLoadOptions& options = {});

}  // namespace qforge
