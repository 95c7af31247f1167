// safetensors files: a validated, memory-mapped reader and an atomic writer; sharded checkpoints.
//
// File layout: [u64 little-endian header length N][N bytes of JSON header][data]. The header maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} relative to the data section, plus an
// optional "__metadata__" string map. Open() validates everything (sizes, dtypes, offsets, overlaps,
// holes, truncation) before any tensor is touched, so a bad file gives an Error naming the file and
// tensor, never a crash.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "qforge/base/file.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;  // byte offset in the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws qforge::Error naming the file (and tensor) on any problem.
  static std::shared_ptr<SafetensorsFile> Open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  // Tensor names in file order (by data offset).
  const std::vector<std::string>& names() const { return names_; }
  bool Contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws naming the file if absent.
  const TensorInfo& Info(const std::string& name) const;
  // A zero-copy, read-only view of the tensor (copied only if the mmap offset is misaligned for the
  // dtype). The view keeps the file mapped.
  Tensor Get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Releases the pages of a tensor from RSS (after streaming it).
  void Release(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors to `path` atomically (temp file + rename). Tensors are laid out sorted by decreasing
// element size, then name (so every tensor is aligned to its element size, as the reference writer does).
// Names must be unique and non-empty.
void WriteSafetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A checkpoint's tensors across one file or shards listed in `model.safetensors.index.json`.
// Shards are opened lazily on first access.
class CheckpointTensors {
 public:
  // `dir` holds `model.safetensors` or `model.safetensors.index.json` (or any single *.safetensors file).
  static CheckpointTensors Open(const std::filesystem::path& dir);

  const std::vector<std::string>& names() const { return names_; }
  bool Contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& Info(const std::string& name) const;
  Tensor Get(const std::string& name) const;
  void Release(const std::string& name) const;
  // The file (relative name) holding tensor `name`, for error messages; throws if absent.
  const std::string& FileOf(const std::string& name) const;
  // The shard files (relative names) in index order.
  std::vector<std::string> shard_files() const;
  const std::filesystem::path& dir() const { return dir_; }
  // Total bytes of all tensors.
  uint64_t total_bytes() const;

 private:
  std::shared_ptr<SafetensorsFile> Shard(const std::string& file) const;
  std::filesystem::path dir_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::string> where_;  // tensor -> shard file name
  mutable std::map<std::string, std::shared_ptr<SafetensorsFile>> shards_;
};

}  // namespace qforge
