// Activations captured between two decoder layers for layerwise calibration (spec §7.3): one HiddenStates
// per calibration batch, in up to three tiers: backend memory (the GPU) while a device budget allows, then
// host memory while a host budget allows, then a spill file. On a host-accessible backend (the CPU) the
// first tier is host memory and has the host budget.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/forward/forward_model.h"

namespace qforge {

// The dtype a store keeps the activations of backend `be` in: BF16 in bf16 compute, where every op's output
// holds bf16 values already (runtime/backend.h), so the copy is exact in half the memory; F32 otherwise.
DType ActivationStorageDType(const Backend& be);

class ActivationStore {
 public:
  // `memory_budget`: bytes of hidden states kept in host RAM; `device_budget`: bytes kept in the memory of a
  // device backend `be` (ignored on the CPU). A batch that fits neither goes to `spill_path` (created on
  // first spill, deleted by the destructor). An empty spill_path means "a file of its own in the system
  // temp directory". Two stores must not share a spill path. `storage`: the dtype batches are held in (F32
  // or BF16; budgets count those bytes); batches come and go as f32 HiddenStates.
  ActivationStore(Backend& be, int64_t memory_budget, std::filesystem::path spill_path, int64_t device_budget = 0,
                  DType storage = DType::kF32);
  ~ActivationStore();
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;
  ActivationStore(ActivationStore&&) noexcept;
  ActivationStore& operator=(ActivationStore&&) noexcept;

  // Appends batch `h` (hidden [batch*seq, hidden] f32 on the store's backend); takes it without a copy when
  // it stays in backend memory as f32, else converts / copies it to its tier.
  void Append(HiddenStates&& h);
  void Append(const HiddenStates& h) { Append(CloneHidden(*be_, h)); }
  // A copy of batch `i` in backend memory (owned, writable, f32).
  HiddenStates Get(int64_t i) const;
  // Batch `i` for an update in place: Take hands it out (the store's own f32 buffer when it holds one in
  // backend memory, else an f32 copy), Put stores the updated batch back in its place and tier (same shape),
  // so one set of activations serves a whole layer's forward. Between the two, batch `i` must not be read.
  HiddenStates Take(int64_t i);
  void Put(int64_t i, HiddenStates&& h);
  // Starts copying batch `i` to backend memory in the background when it is held in host memory, so that
  // the next Get / Take of it need not wait for the copy (call it ahead of that Get / Take, as PrefetchAhead
  // does: the copy runs beside the ops in between). Put streams a host-held batch back the same way: the copy to host memory runs beside the
  // ops that follow, and at most kDownloadsInFlight batches are on their way at once. A no-op for batches in
  // backend memory or in the spill file, and for a batch that is taken or being copied already.
  void Prefetch(int64_t i);
  // Prefetch of batches [next, next + kPrefetchBatches): called with b + 1 after taking batch b, it gives
  // each copy in the time of two batches' ops (a copy starts after the ops issued before it).
  void PrefetchAhead(int64_t next) {
    for (int64_t i = next; i < next + kPrefetchBatches; ++i) Prefetch(i);
  }
  static constexpr int kPrefetchBatches = 2;
  static constexpr int kDownloadsInFlight = 3;
  // Shape of batch `i`: rows (batch*seq) and cols (hidden).
  std::pair<int64_t, int64_t> shape(int64_t i) const;
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  bool empty() const { return entries_.empty(); }
  DType storage() const { return storage_; }
  // Bytes of hidden states held (all tiers), in device memory, and spilled to the file.
  int64_t bytes() const { return bytes_; }
  int64_t device_bytes() const { return device_bytes_; }
  int64_t spilled_bytes() const { return spilled_bytes_; }
  void Clear();

  // Writes every batch to `path` as safetensors (tensors "batch_00000", ... [batch*seq, hidden] in the
  // storage dtype, metadata batch/seq per tensor), atomically; `between_batches` is called after each
  // batch's bytes are written (kill-point tests).
  void Save(const std::filesystem::path& path, const std::function<void()>& between_batches = {}) const;
  // Reads a file written by Save (F32 or BF16 batches, held as `storage`; errors name the file and the
  // tensor).
  static ActivationStore Load(const std::filesystem::path& path, Backend& be, int64_t memory_budget,
                              std::filesystem::path spill_path, int64_t device_budget = 0,
                              DType storage = DType::kF32);

 private:
  enum class Tier : uint8_t { kBackend, kHost, kSpill };
  struct Entry {
    int64_t batch = 0, seq = 0, rows = 0, cols = 0;
    Tier tier = Tier::kBackend;
    Buffer on_backend;         // kBackend: the batch in the storage dtype (empty while taken)
    bool taken = false;        // kBackend, f32 storage: handed out by Take without a copy
    Tensor in_memory;          // kHost: the batch in the storage dtype
    int64_t file_offset = -1;  // kSpill: where its bytes start
    // kHost batches stream through backend memory: the copy of in_memory Prefetch started (a cache, consumed
    // by the next Get / Take), and the stored bytes Put is copying back into in_memory (in_memory is not
    // valid, and the buffer must live, until its download ticket is awaited).
    mutable Buffer prefetched;
    mutable int64_t upload_ticket = 0;
    mutable Buffer downloading;
    mutable int64_t download_ticket = 0;
  };
  int64_t StoredBytes(const Entry& e) const { return e.rows * e.cols * static_cast<int64_t>(DTypeSize(storage_)); }
  // `h` in the storage dtype, in backend memory (h's own buffer for f32 storage).
  Buffer ToStored(HiddenStates&& h) const;
  // f32 hidden states of entry `e`'s shape from `stored` (backend memory, storage dtype).
  HiddenStates FromStored(const Entry& e, const void* stored) const;
  // The stored bytes of a kHost / kSpill entry, in backend memory (uploaded, or read from the file).
  Buffer StoredOnBackend(const Entry& e) const;
  // Copies the stored bytes of entry `e` (any tier) to host memory `dst`.
  void ReadStored(const Entry& e, void* dst) const;
  void Spill(const void* data, int64_t n, Entry& e);
  // Waits for the background download of entry `e` (and those before it) and frees their device copies.
  void FinishDownload(const Entry& e) const;
  // The prefetched device copy of kHost entry `e` (awaited), or an empty Buffer when none was started.
  Buffer TakePrefetched(const Entry& e) const;
  Backend* be_ = nullptr;
  int64_t budget_ = 0;         // host RAM tier
  int64_t device_budget_ = 0;  // backend-memory tier
  DType storage_ = DType::kF32;
  std::filesystem::path spill_path_;
  int spill_fd_ = -1;
  ScopedTemporary spill_registration_;
  int64_t spill_size_ = 0;
  std::vector<Entry> entries_;
  mutable std::deque<int64_t> downloads_in_flight_;  // entry indices, in ticket order
  int64_t bytes_ = 0;
  int64_t memory_bytes_ = 0;
  int64_t device_bytes_ = 0;
  int64_t spilled_bytes_ = 0;
};

}  // namespace qforge
