// Activations captured between two decoder layers for layerwise calibration (spec §7.3): one HiddenStates
// per calibration batch, kept in memory or spilled to a file when they would exceed a byte budget.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/model/model.h"

namespace qforge {

class ActivationStore {
 public:
  // `memory_budget`: bytes of hidden states kept in RAM; the batch that would exceed it and every later one
  // go to `spill_path` (created on first spill, deleted by the destructor). An empty spill_path means
  // "a file of its own in the system temp directory". Two stores must not share a spill path.
  ActivationStore(int64_t memory_budget, std::filesystem::path spill_path);
  ~ActivationStore();
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;
  ActivationStore(ActivationStore&&) noexcept;
  ActivationStore& operator=(ActivationStore&&) noexcept;

  // Appends batch `h` (hidden [batch*seq, hidden] f32); copies it.
  void Append(const HiddenStates& h);
  // A copy of batch `i` (owned, writable).
  HiddenStates Get(int64_t i) const;
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  bool empty() const { return entries_.empty(); }
  // Bytes of hidden states held (in RAM + spilled), and how many of them are spilled.
  int64_t bytes() const { return bytes_; }
  int64_t spilled_bytes() const { return spilled_bytes_; }
  void Clear();

  // Writes every batch to `path` as safetensors (tensors "batch_00000", ... [batch*seq, hidden] f32, metadata
  // batch/seq per tensor), atomically; `between_batches` is called after each batch's bytes are written
  // (kill-point tests).
  void Save(const std::filesystem::path& path, const std::function<void()>& between_batches = {}) const;
  // Reads a file written by Save (errors name the file and the tensor).
  static ActivationStore Load(const std::filesystem::path& path, int64_t memory_budget,
                              std::filesystem::path spill_path);

 private:
  struct Entry {
    int64_t batch = 0, seq = 0, rows = 0, cols = 0;
    Tensor in_memory;         // defined when held in RAM
    int64_t file_offset = -1;  // >= 0 when spilled
  };
  int64_t budget_;
  std::filesystem::path spill_path_;
  int spill_fd_ = -1;
  ScopedTemporary spill_registration_;
  int64_t spill_size_ = 0;
  std::vector<Entry> entries_;
  int64_t bytes_ = 0;
  int64_t memory_bytes_ = 0;
  int64_t spilled_bytes_ = 0;
};

}  // namespace qforge
