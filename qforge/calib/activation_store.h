// Activations captured between two decoder layers for layerwise calibration (spec §7.3): one HiddenStates
// per calibration batch, in up to three tiers: backend memory (the GPU) while a device budget allows, then
// host memory while a host budget allows, then a spill file. On a host-accessible backend (the CPU) the
// first tier is host memory and has the host budget.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/forward/forward_model.h"

namespace qforge {

class ActivationStore {
 public:
  // `memory_budget`: bytes of hidden states kept in host RAM; `device_budget`: bytes kept in the memory of a
  // device backend `be` (ignored on the CPU). A batch that fits neither goes to `spill_path` (created on
  // first spill, deleted by the destructor). An empty spill_path means "a file of its own in the system
  // temp directory". Two stores must not share a spill path.
  ActivationStore(Backend& be, int64_t memory_budget, std::filesystem::path spill_path, int64_t device_budget = 0);
  ~ActivationStore();
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;
  ActivationStore(ActivationStore&&) noexcept;
  ActivationStore& operator=(ActivationStore&&) noexcept;

  // Appends batch `h` (hidden [batch*seq, hidden] f32 on the store's backend); copies it, or takes it
  // without a copy when it stays in backend memory.
  void Append(HiddenStates&& h);
  void Append(const HiddenStates& h) { Append(CloneHidden(*be_, h)); }
  // A copy of batch `i` in backend memory (owned, writable).
  HiddenStates Get(int64_t i) const;
  // Shape of batch `i`: rows (batch*seq) and cols (hidden).
  std::pair<int64_t, int64_t> shape(int64_t i) const;
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  bool empty() const { return entries_.empty(); }
  // Bytes of hidden states held (all tiers), in device memory, and spilled to the file.
  int64_t bytes() const { return bytes_; }
  int64_t device_bytes() const { return device_bytes_; }
  int64_t spilled_bytes() const { return spilled_bytes_; }
  void Clear();

  // Writes every batch to `path` as safetensors (tensors "batch_00000", ... [batch*seq, hidden] f32, metadata
  // batch/seq per tensor), atomically; `between_batches` is called after each batch's bytes are written
  // (kill-point tests).
  void Save(const std::filesystem::path& path, const std::function<void()>& between_batches = {}) const;
  // Reads a file written by Save (errors name the file and the tensor).
  static ActivationStore Load(const std::filesystem::path& path, Backend& be, int64_t memory_budget,
                              std::filesystem::path spill_path, int64_t device_budget = 0);

 private:
  struct Entry {
    int64_t batch = 0, seq = 0, rows = 0, cols = 0;
    Buffer on_backend;         // set when held in backend memory
    Tensor in_memory;          // defined when held in host RAM
    int64_t file_offset = -1;  // >= 0 when spilled
  };
  void Spill(const void* data, int64_t n, Entry& e);
  Backend* be_ = nullptr;
  int64_t budget_ = 0;         // host RAM tier
  int64_t device_budget_ = 0;  // backend-memory tier
  std::filesystem::path spill_path_;
  int spill_fd_ = -1;
  ScopedTemporary spill_registration_;
  int64_t spill_size_ = 0;
  std::vector<Entry> entries_;
  int64_t bytes_ = 0;
  int64_t memory_bytes_ = 0;
  int64_t device_bytes_ = 0;
  int64_t spilled_bytes_ = 0;
};

}  // namespace qforge
