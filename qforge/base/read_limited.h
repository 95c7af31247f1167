// Bounded reading of files whose size qforge cannot trust: config and tokenizer JSON, calibration text. A path
// may name a FIFO, a character device (/dev/zero, /dev/urandom) or an enormous file; these readers never hold
// more than the caller's byte limit in memory and never block past it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace qforge {

// Reads the whole of `path` (a regular file, FIFO or device) if it holds at most `max_bytes` bytes; throws
// qforge::Error naming the file and the limit as soon as byte max_bytes + 1 arrives (so /dev/zero fails after
// max_bytes + 1 bytes), and naming the file when it cannot be opened or read. `what` says what the file is
// and is used in the message, e.g. "a config.json".
std::string ReadFileLimited(const std::filesystem::path& path, uint64_t max_bytes, std::string_view what);

// Sequential reads of a file in caller-sized pieces, for consumers that stop early (calibration text: only
// as much as the samples need). Not thread-safe; the file stays open for the reader's lifetime.
class LimitedReader {
 public:
  // Opens `path` for reading; throws qforge::Error naming it if it cannot be opened or is a directory.
  explicit LimitedReader(const std::filesystem::path& path);
  ~LimitedReader();
  LimitedReader(const LimitedReader&) = delete;
  LimitedReader& operator=(const LimitedReader&) = delete;

  // Appends up to `n` more bytes to `*out` (fewer only at end of file); returns the number appended. Blocks
  // on a FIFO until `n` bytes or end of file arrive. Throws qforge::Error naming the file on a read error.
  size_t Append(std::string* out, size_t n);
  // True once a read has hit end of file.
  bool eof() const { return eof_; }
  // Bytes read so far.
  uint64_t bytes_read() const { return bytes_read_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool eof_ = false;
  uint64_t bytes_read_ = 0;
};

}  // namespace qforge
