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

// Streams bytes into `<path>.tmp.<pid>` and renames onto `path` on Commit(). If destroyed without
// Commit() (error or exception), the temp file is removed and `path` is untouched.
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
};

// A directory built under a temporary name beside `final_path` and renamed into place by Commit().
// If `final_path` exists at commit time it is replaced (the old one is moved aside, then removed).
// Destroyed without Commit(): the temporary directory is removed.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::filesystem::path final_path);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // The directory to write into until Commit().
  const std::filesystem::path& path() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  void Commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path tmp_;
  bool committed_ = false;
};

}  // namespace qforge
