// Writes an HF checkpoint directory atomically: safetensors shards (+ index when sharded), config.json,
// hf_quant_config.json and the tokenizer/generation files copied from the source model.
//
// Everything is written into `<out>.tmp.<pid>/` and renamed onto `<out>` only by Commit(), so a failed or
// killed export never leaves a half-written checkpoint. Shards are flushed as they fill, so memory holds
// at most one shard of tensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

class CheckpointWriter {
 public:
  // `max_shard_bytes`: a shard is closed once it holds at least this many bytes (a tensor is never split).
  // `replace`: what Commit may do with an existing `out_dir` (CheckOutputDirectory decides it up front).
  CheckpointWriter(std::filesystem::path out_dir, uint64_t max_shard_bytes, ReplaceMode replace = ReplaceMode::kNever);
  ~CheckpointWriter();

  // Adds one tensor (names must be unique): its bytes go to disk now; the caller may free it afterwards.
  void Add(const std::string& name, const Tensor& tensor);

  // Writes the last shard, the index (if more than one shard), `config_json` as config.json,
  // `hf_quant_config` as hf_quant_config.json (if given), copies the auxiliary files of `source_dir`
  // (tokenizer*, special_tokens_map.json, generation_config.json, vocab/merges, chat templates), then
  // renames the directory into place.
  void Commit(const nlohmann::ordered_json& config_json, const std::optional<nlohmann::ordered_json>& hf_quant_config,
              const std::filesystem::path& source_dir);

  uint64_t bytes_written() const { return total_bytes_; }
  int num_shards() const { return static_cast<int>(shard_names_.size()); }

 private:
  struct PendingTensor {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t nbytes;
  };
  static constexpr int kSizeClasses = 4;  // element sizes 8, 4, 2, 1 bytes, in that order in a shard
  void OpenSpools();
  void FlushShard();
  AtomicDirectory dir_;
  uint64_t max_shard_bytes_;
  std::vector<PendingTensor> pending_[kSizeClasses];  // per size class, in arrival order
  std::unique_ptr<AtomicFileWriter> spool_[kSizeClasses];
  uint64_t pending_bytes_ = 0;
  uint64_t total_bytes_ = 0;
  std::vector<std::string> shard_names_;                 // temporary names, in order
  std::vector<std::vector<std::string>> shard_tensors_;  // tensor names per shard
  std::set<std::string> all_names_;
};

// The auxiliary (non-weight, non-config) files of an HF model directory that an export copies.
std::vector<std::filesystem::path> AuxiliaryModelFiles(const std::filesystem::path& source_dir);

}  // namespace qforge
