// Files: read-only memory maps, whole-file reads, and atomic writes (temp file or directory + rename).
//
// Every output qforge writes goes through AtomicFileWriter or AtomicDirectory, so a failed or killed run
// never leaves a half-written file or checkpoint under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

// A read-only, private memory map of a whole file. Move-only; unmapped on destruction.
// Empty files map to an empty span. Errors (missing file, permission) throw qforge::Error naming the path.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> Open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  // Hints the kernel that [offset, offset+len) is no longer needed (lets RSS shrink after streaming).
  void DontNeed(size_t offset, size_t len) const;

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file into a string. Throws qforge::Error naming the path on failure.
std::string ReadFileToString(const std::filesystem::path& path);

// Writes `content` to `path` atomically (temp file in the same directory, fsync, rename).
void WriteFileAtomic(const std::filesystem::path& path, std::string_view content);

// Temporaries: every temporary file or directory qforge creates while writing (AtomicFileWriter,
// AtomicDirectory, activation spill files) is registered here while it exists, so that an interrupt
// (base/interrupt.h) can remove them all before the process exits. Thread-safe.
class ScopedTemporary {
 public:
  ScopedTemporary() = default;
  explicit ScopedTemporary(std::filesystem::path path);
  ~ScopedTemporary();
  ScopedTemporary(ScopedTemporary&& o) noexcept;
  ScopedTemporary& operator=(ScopedTemporary&& o) noexcept;
  ScopedTemporary(const ScopedTemporary&) = delete;
  ScopedTemporary& operator=(const ScopedTemporary&) = delete;
  // Forgets the path (it was renamed into place or removed by its owner).
  void Release();

 private:
  int64_t id_ = -1;
};
// Removes every registered temporary (files and directories, recursively) and blocks further registrations
// and commits for the rest of the process. Returns the paths removed. For the interrupt handler only.
std::vector<std::filesystem::path> RemoveAllTemporariesForExit();

// Names of the temporaries of `final_path` that an earlier process left behind:
// `<final>.tmp.<pid>` (a half-written file or directory) and `<final>.old.<pid>` (the previous version,
// moved aside while being replaced). Those whose process is gone are cleaned: a stale `.tmp.` is removed,
// a stale `.old.` is put back if `<final>` is missing (a replace killed half-way), else removed. Those of a
// live process are left alone. Every action is logged as a warning and returned as a sentence.
std::vector<std::string> RecoverStaleTemporaries(const std::filesystem::path& final_path);

// Streams bytes into `<path>.tmp.<pid>` and renames onto `path` on Commit(). If destroyed without
// Commit() (error or exception), the temp file is removed and `path` is untouched.
// strerror(errno), for error messages.
std::string ErrnoText();

// Writes all of [data, data + size) at byte `offset` of the open file `fd` (pwrite may write less, or be
// interrupted). Throws qforge::Error naming `path` and the offset on failure.
void PwriteAll(int fd, const void* data, uint64_t size, uint64_t offset, const std::filesystem::path& path);

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void Write(const void* data, size_t size);
  void Write(std::string_view s) { Write(s.data(), s.size()); }
  // Writes `size` zero bytes.
  void WriteZeros(size_t size);
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs and renames into place. Throws on failure.
  void Commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
  ScopedTemporary registration_;
};

// What AtomicDirectory::Commit may do with a directory already at the final path.
enum class ReplaceMode : uint8_t {
  kNever,       // refuse unless it is missing or an empty directory
  kExportOnly,  // also replace a directory holding config.json or hf_quant_config.json (an HF export)
  kAlways,      // replace whatever is there (directories qforge itself owns, e.g. checkpoint layer dirs)
};

// A directory built under a temporary name beside `final_path` and renamed into place by Commit().
// Replacing an existing directory is crash-safe: the new one is swapped in with one atomic
// renameat2(RENAME_EXCHANGE), so at every instant the final path holds either the old or the new directory;
// the old one is removed afterwards. On filesystems without RENAME_EXCHANGE the old one is moved to
// `<final>.old.<pid>` first, and RecoverStaleTemporaries puts it back if the process dies before the new one
// is in place. Destroyed without Commit(): the temporary directory is removed.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::filesystem::path final_path, ReplaceMode replace = ReplaceMode::kAlways);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // The directory to write into until Commit().
  const std::filesystem::path& path() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  // Renames the directory into place (fsyncing the parent). Kill points (base/kill_point.h) for tests:
  // "dir_commit" before the swap and again after it (before the old directory is removed).
  void Commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path tmp_;
  ReplaceMode replace_;
  bool committed_ = false;
  ScopedTemporary registration_;
};

// True if `dir` is a directory that holds config.json or hf_quant_config.json (an HF model or export).
bool LooksLikeHfCheckpoint(const std::filesystem::path& dir);

// Refuses an output directory that would destroy data the user did not ask to replace, before any work
// starts. `flag` names the option in messages ("--export"). Rules, in order:
//   * the output must not be, or contain, any of `inputs` (the model directory, calibration files, a
//     checkpoint being read): refused even with `overwrite`;
//   * a missing path or an empty directory is fine;
//   * an existing file, or a non-empty directory without `overwrite`, is refused naming it;
//   * with `overwrite`, a directory that is not an HF checkpoint/export (LooksLikeHfCheckpoint) is refused.
// Symbolic links are resolved before comparing. Returns the ReplaceMode the writer must commit with.
ReplaceMode CheckOutputDirectory(const std::filesystem::path& out, std::string_view flag, bool overwrite,
                                 const std::vector<std::filesystem::path>& inputs);

// Throws if `path` is, or contains, one of `inputs` (resolved): the first rule of CheckOutputDirectory, for
// paths a run writes into without replacing them (a layerwise --checkpoint-dir).
void CheckNotInputOrAncestor(const std::filesystem::path& path, std::string_view flag,
                             const std::vector<std::filesystem::path>& inputs);

// The same for an output file (qforge pack/qdq/unpack OUT): never one of `inputs`; an existing file only
// with `overwrite`; never a directory.
void CheckOutputFile(const std::filesystem::path& out, std::string_view flag, bool overwrite,
                     const std::vector<std::filesystem::path>& inputs);

// An advisory lock on `<dir>/<name>` (flock), held while the object lives and released by the kernel when
// the process dies, so a killed run never leaves a stale lock. Exclusive locks write the holder's pid into
// the file for the error message of the next one. Throws, naming `what` and the holder, if it is held.
class DirectoryLock {
 public:
  DirectoryLock(const std::filesystem::path& dir, std::string_view name, bool exclusive, std::string_view what);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace qforge
