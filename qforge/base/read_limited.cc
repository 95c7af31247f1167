// Bounded file reads through read(2): no size is taken from stat (FIFOs and devices report 0 or lie).
#include "qforge/base/read_limited.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "qforge/base/error.h"

namespace qforge {
namespace {
std::string ErrnoString() { return std::strerror(errno); }
}  // namespace

LimitedReader::LimitedReader(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  QF_CHECK(fd_ >= 0, "cannot open '{}': {}", path.string(), ErrnoString());
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    QF_FAIL("cannot read '{}': it is a directory", path.string());
  }
}

LimitedReader::~LimitedReader() {
  if (fd_ >= 0) ::close(fd_);
}

size_t LimitedReader::Append(std::string* out, size_t n) {
  size_t got = 0;
  const size_t start = out->size();
  out->resize(start + n);
  while (got < n && !eof_) {
    const ssize_t r = ::read(fd_, out->data() + start + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      const std::string err = ErrnoString();
      out->resize(start + got);
      QF_FAIL("error reading '{}' after {} bytes: {}", path_.string(), bytes_read_ + got, err);
    }
    if (r == 0) {
      eof_ = true;
      break;
    }
    got += static_cast<size_t>(r);
  }
  out->resize(start + got);
  bytes_read_ += got;
  return got;
}

std::string ReadFileLimited(const std::filesystem::path& path, uint64_t max_bytes, std::string_view what) {
  LimitedReader r(path);
  std::string out;
  // Grow geometrically so a small file costs one small read and a big one O(log) reallocations.
  size_t chunk = 64 << 10;
  while (!r.eof()) {
    const uint64_t room = max_bytes + 1 - r.bytes_read();  // one byte past the limit proves it is exceeded
    r.Append(&out, static_cast<size_t>(std::min<uint64_t>(chunk, room)));
    QF_CHECK(r.bytes_read() <= max_bytes, "'{}' holds more than {} bytes, the limit for {} (a device, a FIFO or a "
             "corrupt file?)", path.string(), max_bytes, what);
    chunk = std::min<size_t>(chunk * 2, 64 << 20);
  }
  return out;
}

}  // namespace qforge
