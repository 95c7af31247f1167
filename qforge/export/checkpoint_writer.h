// Writes an HF checkpoint directory atomically: safetensors shards (+ index when sharded), config.json,
// hf_quant_config.json and the tokenizer/generation files copied from the source model.
//
// The writer is given the checkpoint's whole layout up front (every tensor's name, dtype and shape, in
// order): the export knows it before encoding anything (numerics PackedLayoutOf). So the shard headers
// are written first, each tensor's bytes go straight to their final offset (one write, no spool), and
// writer threads copy one tensor to disk while the caller encodes the next. Memory holds at most
// `max_queued_bytes` of tensors waiting to be written.
//
// Everything is written into `<out>.tmp.<pid>/` and renamed onto `<out>` only by Commit(), so a failed or
// killed export never leaves a half-written checkpoint. The shards' space is reserved when they are
// created, so a full disk is reported before any work is spent on them. Writeback starts as tensors land,
// and a shard is fsynced as soon as its last tensor is written, so Commit waits only for the last one.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

// One tensor of the checkpoint, as planned before its bytes exist.
struct PlannedTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t nbytes() const;
};

struct CheckpointWriterOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // a shard is closed once it holds at least this many bytes
  // What Commit may do with an existing `out_dir` (CheckOutputDirectory decides it up front).
  ReplaceMode replace = ReplaceMode::kNever;
  int threads = 0;                          // writer threads; 0: min(4, max(1, cores / 2))
  uint64_t max_queued_bytes = 1ull << 30;   // Add blocks while more than this waits to be written
};

class CheckpointWriter {
 public:
  // `plan`: every tensor the checkpoint holds, in order; names must be unique. Shard i holds the plan's
  // tensors from where shard i-1 closed until its bytes reach max_shard_bytes (a tensor is never split);
  // within a shard, data goes by element size (8, 4, 2, 1 bytes) and then plan order, so every tensor is
  // aligned to its element size. Throws qforge::Error when the shards cannot be created or their space
  // cannot be reserved (naming the file and the bytes needed).
  CheckpointWriter(std::filesystem::path out_dir, std::vector<PlannedTensor> plan,
                   const CheckpointWriterOptions& options = {});
  // Without Commit: stops the writer threads and removes the temporary directory.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Queues the bytes of planned tensor `name`, which `tensor` must match in dtype and shape; each name
  // once. `tensor` (and the storage it views) is kept alive until written; `done`, if given, runs on the
  // writer thread after the write, with the tensor (to check it, or drop the source's pages); what it throws
  // fails the export like a write error. Throws the first error of an earlier tensor.
  void Add(const std::string& name, Tensor tensor, std::function<void(const Tensor&)> done = {});

  // Waits for every queued write, checks that every planned tensor was added, syncs the shards, writes the
  // index (if more than one shard), `config_json` as config.json, `hf_quant_config` as hf_quant_config.json
  // (if given), copies the auxiliary files of `source_dir` (tokenizer*, special_tokens_map.json,
  // generation_config.json, vocab/merges, chat templates), then renames the directory into place.
  void Commit(const nlohmann::ordered_json& config_json, const std::optional<nlohmann::ordered_json>& hf_quant_config,
              const std::filesystem::path& source_dir);

  uint64_t bytes_written() const { return total_bytes_; }  // tensor bytes of the plan
  int num_shards() const { return static_cast<int>(shards_.size()); }
  // Seconds the writer threads spent writing, summed over threads.
  double write_seconds() const;

 private:
  struct Slot {
    PlannedTensor t;
    int shard = 0;
    uint64_t file_offset = 0;  // of the tensor's first byte in its shard file
    bool added = false;
  };
  struct Shard {
    std::string tmp_name;  // shard-00001.part
    std::vector<size_t> slots;
    uint64_t file_bytes = 0;
    int fd = -1;
    size_t unwritten = 0;  // planned tensors not yet on disk; the writer that writes the last one syncs
    bool synced = false;
  };
  struct Job {
    size_t slot;
    Tensor tensor;
    std::function<void(const Tensor&)> done;
  };
  void Layout(uint64_t max_shard_bytes);
  void CreateShard(Shard& s);
  void WriterLoop();
  void Drain();  // waits until the queue is empty and no write runs; rethrows a write error
  void Stop();  // joins the writer threads, dropping what is still queued

  AtomicDirectory dir_;
  std::vector<Slot> slots_;
  std::unordered_map<std::string, size_t> slot_of_;
  std::vector<Shard> shards_;
  uint64_t total_bytes_ = 0;
  uint64_t max_queued_bytes_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, space_cv_;
  std::deque<Job> queue_;
  uint64_t queued_bytes_ = 0;
  int active_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  double write_seconds_ = 0;
  std::vector<std::thread> threads_;
};

// The auxiliary (non-weight, non-config) files of an HF model directory that an export copies.
std::vector<std::filesystem::path> AuxiliaryModelFiles(const std::filesystem::path& source_dir);

}  // namespace qforge
