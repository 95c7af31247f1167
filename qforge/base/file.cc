// POSIX implementations of the memory map and atomic writers.
#include "qforge/base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "qforge/base/error.h"

namespace qforge {
namespace fs = std::filesystem;

namespace {
std::string ErrnoText() { return std::strerror(errno); }
}  // namespace

std::shared_ptr<MappedFile> MappedFile::Open(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  QF_CHECK(fd >= 0, "cannot open '{}': {}", path.string(), ErrnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string err = ErrnoText();
    ::close(fd);
    QF_FAIL("cannot stat '{}': {}", path.string(), err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    QF_FAIL("'{}' is not a regular file", path.string());
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string err = ErrnoText();
      ::close(fd);
      QF_FAIL("cannot mmap '{}' ({} bytes): {}", path.string(), f->size_, err);
    }
    f->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::DontNeed(size_t offset, size_t len) const {
  if (data_ == nullptr || len == 0) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t begin = (offset + page - 1) / page * page;  // only whole pages inside the range
  size_t end = std::min(offset + len, size_) / page * page;
  if (end > begin) ::madvise(const_cast<std::byte*>(data_) + begin, end - begin, MADV_DONTNEED);
}

std::string ReadFileToString(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  QF_CHECK(in.good(), "cannot open '{}': {}", path.string(), ErrnoText());
  std::ostringstream ss;
  ss << in.rdbuf();
  QF_CHECK(!in.bad(), "error reading '{}'", path.string());
  return ss.str();
}

void WriteFileAtomic(const fs::path& path, std::string_view content) {
  AtomicFileWriter w(path);
  w.Write(content);
  w.Commit();
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  QF_CHECK(fd_ >= 0, "cannot create '{}': {}", tmp_.string(), ErrnoText());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicFileWriter::Write(const void* data, size_t size) {
  QF_ASSERT(fd_ >= 0 && !committed_);
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    QF_CHECK(n > 0, "error writing '{}': {}", tmp_.string(), ErrnoText());
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFileWriter::WriteZeros(size_t size) {
  static const std::vector<char> zeros(1 << 16, 0);
  while (size > 0) {
    size_t n = std::min(size, zeros.size());
    Write(zeros.data(), n);
    size -= n;
  }
}

void AtomicFileWriter::Commit() {
  QF_ASSERT(fd_ >= 0 && !committed_);
  QF_CHECK(::fsync(fd_) == 0, "error syncing '{}': {}", tmp_.string(), ErrnoText());
  QF_CHECK(::close(fd_) == 0, "error closing '{}': {}", tmp_.string(), ErrnoText());
  fd_ = -1;
  QF_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename '{}' to '{}': {}", tmp_.string(),
           path_.string(), ErrnoText());
  committed_ = true;
}

AtomicDirectory::AtomicDirectory(fs::path final_path) : final_(std::move(final_path)) {
  if (final_.has_filename() == false) final_ = final_.parent_path();
  tmp_ = final_;
  tmp_ += ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  QF_CHECK(!ec, "cannot create directory '{}': {}", tmp_.string(), ec.message());
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void AtomicDirectory::Commit() {
  QF_ASSERT(!committed_);
  std::error_code ec;
  fs::path old;
  if (fs::exists(final_)) {
    old = final_;
    old += ".old." + std::to_string(::getpid());
    fs::remove_all(old, ec);
    fs::rename(final_, old, ec);
    QF_CHECK(!ec, "cannot move existing '{}' aside: {}", final_.string(), ec.message());
  }
  fs::rename(tmp_, final_, ec);
  QF_CHECK(!ec, "cannot rename '{}' to '{}': {}", tmp_.string(), final_.string(), ec.message());
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace qforge
