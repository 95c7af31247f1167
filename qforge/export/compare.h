// Compares two exported checkpoints tensor by tensor: what must be bit-identical between two exports of the
// same calibration (packed weights, block scales, weight_scale_2, every unquantized tensor) and what may
// differ within a tolerance when the calibration forward ran in another precision or on another device
// (activation scales: input_scale, output_scale, k_scale, v_scale). `qforge compare` prints the report.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qforge::exporter {

struct CompareOptions {
  double scale_rtol = 0.0;  // allowed relative difference of activation scales (0: bit-identical)
};

struct CompareReport {
  int64_t tensors = 0;               // tensors present in both
  int64_t identical = 0;             // byte-identical among them
  int64_t activation_scales = 0;     // activation-scale tensors compared with the tolerance
  double max_scale_rel_diff = 0.0;   // largest |a-b| / max(|a|,|b|) over activation-scale values
  std::string max_scale_tensor;      // where it was
  std::vector<std::string> problems;  // missing tensors, dtype/shape/byte mismatches, scales beyond tolerance
  bool ok() const { return problems.empty(); }
  std::string ToText() const;
};

// Reads both checkpoint directories (safetensors, sharded or not). Throws for unreadable checkpoints.
CompareReport CompareCheckpoints(const std::filesystem::path& a, const std::filesystem::path& b,
                                 const CompareOptions& options);

}  // namespace qforge::exporter
