// Random-weight Llama checkpoints at chosen shapes, for layerwise conformance cases (models with a given number
// of layers) and the layerwise memory benchmark (models several times larger than the trained ones).
#pragma once

#include <cstdint>
#include <filesystem>

#include "qforge/base/file.h"
#include "qforge/tensor/dtype.h"

namespace qforge {

struct SyntheticLlamaSpec {
  int64_t hidden = 64;
  int64_t layers = 2;
  int64_t intermediate = 128;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t vocab = 512;
  DType dtype = DType::kBF16;  // of the stored weights (F32 or BF16)
  uint64_t seed = 1;
  // Tensors per file; > 0 writes a sharded checkpoint with model.safetensors.index.json (streams: only one
  // shard's tensors are in memory at a time).
  int64_t max_shard_bytes = 0;
};

// Writes `<dir>/config.json` (LlamaForCausalLM, head_dim = hidden/heads, untied lm_head) and the weights:
// Linear weights uniform in ±1/sqrt(in_features), embeddings ±1, norms 1. Deterministic in `seed`.
// Returns the parameter count. `dir` is created; existing files of the same names are replaced.
// The directory is built under a temporary name and renamed into place; `replace` says what may already be
// there (base/file.h).
int64_t WriteSyntheticLlama(const std::filesystem::path& dir, const SyntheticLlamaSpec& spec,
                            ReplaceMode replace = ReplaceMode::kNever);

}  // namespace qforge
