// POSIX implementations of the memory map and atomic writers.
#include "qforge/base/file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/base/kill_point.h"
#include "qforge/base/log.h"

namespace qforge {
namespace fs = std::filesystem;

std::string ErrnoText() { return std::strerror(errno); }

void PwriteAll(int fd, const void* data, uint64_t size, uint64_t offset, const fs::path& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, uint64_t{1} << 30));
    const ssize_t n = ::pwrite(fd, p, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    QF_CHECK(n > 0, "error writing '{}' at byte {}: {}", path.string(), offset, n < 0 ? ErrnoText() : "no progress");
    p += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
}

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

// ---------------------------------------------------------------------------------------------------------
// Registry of temporaries (for interrupt cleanup).

namespace {

struct TemporaryRegistry {
  std::mutex mu;
  std::map<int64_t, fs::path> paths;
  int64_t next = 0;
  bool exiting = false;  // set by RemoveAllTemporariesForExit: no new registrations, no commits
};

TemporaryRegistry& Registry() {
  static TemporaryRegistry* r = new TemporaryRegistry();  // never destroyed: used until _exit
  return *r;
}

// Blocks forever once the process is exiting (the interrupt handler owns the rest of its life).
std::unique_lock<std::mutex> LockRegistry() {
  std::unique_lock lock(Registry().mu);
  while (Registry().exiting) {
    lock.unlock();
    ::pause();
    lock.lock();
  }
  return lock;
}

bool ProcessAlive(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
  return errno == EPERM;  // exists, owned by someone else
}

void SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

fs::path Resolved(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? fs::absolute(p).lexically_normal() : r;
}

// `a` equals `b` or is one of its ancestors (both resolved).
bool IsSameOrAncestor(const fs::path& a, const fs::path& b) {
  auto ai = a.begin(), bi = b.begin();
  for (; ai != a.end(); ++ai, ++bi) {
    if (ai->empty()) continue;  // trailing separator
    if (bi == b.end() || *ai != *bi) return false;
  }
  return true;
}

}  // namespace

ScopedTemporary::ScopedTemporary(fs::path path) {
  auto lock = LockRegistry();
  id_ = Registry().next++;
  Registry().paths.emplace(id_, std::move(path));
}

ScopedTemporary::~ScopedTemporary() { Release(); }

ScopedTemporary::ScopedTemporary(ScopedTemporary&& o) noexcept : id_(o.id_) { o.id_ = -1; }

ScopedTemporary& ScopedTemporary::operator=(ScopedTemporary&& o) noexcept {
  if (this != &o) {
    Release();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

void ScopedTemporary::Release() {
  if (id_ < 0) return;
  auto lock = LockRegistry();
  Registry().paths.erase(id_);
  id_ = -1;
}

std::vector<fs::path> RemoveAllTemporariesForExit() {
  std::lock_guard lock(Registry().mu);
  Registry().exiting = true;
  std::vector<fs::path> removed;
  for (const auto& [id, p] : Registry().paths) {
    std::error_code ec;
    if (fs::remove_all(p, ec) > 0) removed.push_back(p);
  }
  Registry().paths.clear();
  return removed;
}

std::vector<std::string> RecoverStaleTemporaries(const fs::path& final_path) {
  std::vector<std::string> actions;
  fs::path final = final_path;
  if (!final.has_filename()) final = final.parent_path();
  const fs::path parent = final.has_parent_path() ? final.parent_path() : fs::path(".");
  const std::string base = final.filename().string();
  std::error_code ec;
  fs::directory_iterator it(parent, ec), end;
  if (ec) return actions;
  std::vector<std::pair<fs::path, std::string>> candidates;  // path, ".tmp." or ".old."
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    for (const char* kind : {".tmp.", ".old."}) {
      const std::string prefix = base + kind;
      if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
          name.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
        candidates.emplace_back(it->path(), kind);
      }
    }
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [path, kind] : candidates) {
    const std::string name = path.filename().string();
    const long pid = std::strtol(name.c_str() + base.size() + 5, nullptr, 10);
    if (pid == static_cast<long>(::getpid())) continue;
    std::string action;
    if (ProcessAlive(pid)) {
      action = fmt::format("left '{}' alone: it belongs to a running process (pid {})", path.string(), pid);
    } else if (std::string_view(kind) == ".old." && !fs::exists(final, ec)) {
      fs::rename(path, final, ec);
      action = ec ? fmt::format("could not restore '{}' from '{}' (left by a killed run, pid {}): {}", final.string(),
                                path.string(), pid, ec.message())
                  : fmt::format("restored '{}' from '{}': a run (pid {}) was killed while replacing it",
                                final.string(), path.string(), pid);
    } else {
      fs::remove_all(path, ec);
      action = ec ? fmt::format("could not remove '{}' (left by a killed run, pid {}): {}", path.string(), pid,
                                ec.message())
                  : fmt::format("removed '{}', left by a killed run (pid {})", path.string(), pid);
    }
    LogWarning("{}", action);
    actions.push_back(std::move(action));
  }
  return actions;
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp." + std::to_string(::getpid());
  registration_ = ScopedTemporary(tmp_);
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
  {
    auto lock = LockRegistry();  // an interrupt either removes the temporary or sees it renamed
    QF_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename '{}' to '{}': {}", tmp_.string(),
             path_.string(), ErrnoText());
    committed_ = true;
  }
  registration_.Release();
}

bool LooksLikeHfCheckpoint(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) &&
         (fs::exists(dir / "config.json", ec) || fs::exists(dir / "hf_quant_config.json", ec));
}

namespace {

bool IsEmptyDirectory(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_empty(dir, ec) && !ec;
}

}  // namespace

void CheckNotInputOrAncestor(const fs::path& out, std::string_view flag, const std::vector<fs::path>& inputs) {
  const fs::path o = Resolved(out);
  for (const auto& in : inputs) {
    if (in.empty()) continue;
    const fs::path i = Resolved(in);
    QF_CHECK(!IsSameOrAncestor(o, i), "{} '{}' {} '{}', which this run reads; qforge never replaces its inputs: "
             "choose another output path",
             flag, out.string(), o == i ? "is" : "contains", in.string());
  }
}

ReplaceMode CheckOutputDirectory(const fs::path& out, std::string_view flag, bool overwrite,
                                 const std::vector<fs::path>& inputs) {
  QF_CHECK(!out.empty(), "{} needs a path", flag);
  CheckNotInputOrAncestor(out, flag, inputs);
  RecoverStaleTemporaries(out);  // first: a replace killed half-way puts the previous export back
  std::error_code ec;
  const auto st = fs::status(out, ec);
  if (!fs::exists(st) || IsEmptyDirectory(out)) return ReplaceMode::kNever;
  QF_CHECK(fs::is_directory(st), "{} '{}' exists and is not a directory; qforge will not replace it", flag,
           out.string());
  QF_CHECK(overwrite,
           "{} '{}' already exists and is not empty; pass --overwrite to replace it (qforge never deletes a "
           "directory you did not ask it to)",
           flag, out.string());
  QF_CHECK(LooksLikeHfCheckpoint(out),
           "{} '{}' is not a qforge/HF export (it has no config.json or hf_quant_config.json); refusing to replace "
           "it even with --overwrite",
           flag, out.string());
  return ReplaceMode::kExportOnly;
}

void CheckOutputFile(const fs::path& out, std::string_view flag, bool overwrite, const std::vector<fs::path>& inputs) {
  QF_CHECK(!out.empty(), "{} needs a path", flag);
  CheckNotInputOrAncestor(out, flag, inputs);
  RecoverStaleTemporaries(out);  // `<out>.tmp.<pid>` of a killed run
  std::error_code ec;
  const auto st = fs::status(out, ec);
  if (!fs::exists(st)) return;
  QF_CHECK(!fs::is_directory(st), "{} '{}' is a directory; give a file name", flag, out.string());
  QF_CHECK(overwrite, "{} '{}' already exists; pass --overwrite to replace it", flag, out.string());
}

AtomicDirectory::AtomicDirectory(fs::path final_path, ReplaceMode replace)
    : final_(std::move(final_path)), replace_(replace) {
  if (final_.has_filename() == false) final_ = final_.parent_path();
  RecoverStaleTemporaries(final_);
  tmp_ = final_;
  tmp_ += ".tmp." + std::to_string(::getpid());
  registration_ = ScopedTemporary(tmp_);
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
  const fs::path parent = final_.has_parent_path() ? final_.parent_path() : fs::path(".");
  SyncDirectory(tmp_);
  const bool exists = fs::exists(fs::symlink_status(final_, ec));
  if (exists) {
    switch (replace_) {
      case ReplaceMode::kNever:
        QF_CHECK(IsEmptyDirectory(final_),
                 "'{}' appeared while qforge was writing it and is not empty; refusing to replace it (pass "
                 "--overwrite to replace an existing export)",
                 final_.string());
        break;
      case ReplaceMode::kExportOnly:
        QF_CHECK(LooksLikeHfCheckpoint(final_) || IsEmptyDirectory(final_),
                 "'{}' is no longer a qforge/HF export (no config.json or hf_quant_config.json); refusing to "
                 "replace it",
                 final_.string());
        break;
      case ReplaceMode::kAlways:
        break;
    }
  }
  KillPoint("dir_commit");
  fs::path old;  // where the previous directory is after the swap (removed at the end)
  {
    auto lock = LockRegistry();
    if (!exists) {
      fs::rename(tmp_, final_, ec);
      QF_CHECK(!ec, "cannot rename '{}' to '{}': {}", tmp_.string(), final_.string(), ec.message());
    } else if (std::getenv("QF_TEST_NO_RENAME_EXCHANGE") == nullptr &&
               ::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0) {
      old = tmp_;  // the swap put the previous directory under the temporary name
    } else {
      QF_CHECK(std::getenv("QF_TEST_NO_RENAME_EXCHANGE") != nullptr || errno == EINVAL || errno == ENOSYS ||
                   errno == ENOTSUP,
               "cannot swap '{}' into '{}': {}", tmp_.string(), final_.string(), ErrnoText());
      // No atomic exchange here: move the old one aside (RecoverStaleTemporaries restores it if we die now).
      old = final_;
      old += ".old." + std::to_string(::getpid());
      fs::remove_all(old, ec);
      fs::rename(final_, old, ec);
      QF_CHECK(!ec, "cannot move existing '{}' aside: {}", final_.string(), ec.message());
      KillPoint("dir_commit_moved_aside");
      fs::rename(tmp_, final_, ec);
      QF_CHECK(!ec, "cannot rename '{}' to '{}': {}", tmp_.string(), final_.string(), ec.message());
    }
    committed_ = true;
    SyncDirectory(parent);
  }
  registration_.Release();
  if (!old.empty()) {
    ScopedTemporary old_registration(old);  // an interrupt during the removal finishes it
    KillPoint("dir_commit");
    fs::remove_all(old, ec);
  }
}

DirectoryLock::DirectoryLock(const fs::path& dir, std::string_view name, bool exclusive, std::string_view what) {
  const fs::path p = dir / std::string(name);
  fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  QF_CHECK(fd_ >= 0, "cannot open lock file '{}': {}", p.string(), ErrnoText());
  if (::flock(fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    ::close(fd_);
    fd_ = -1;
    QF_CHECK(err != EWOULDBLOCK, "{} '{}' is in use by another qforge run{}; wait for it to finish or use another "
             "directory",
             what, dir.string(), n > 0 ? fmt::format(" (pid {})", std::string_view(buf, static_cast<size_t>(n))) : "");
    QF_FAIL("cannot lock '{}': {}", p.string(), std::strerror(err));
  }
  if (exclusive) {
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) == 0) (void)::pwrite(fd_, pid.data(), pid.size(), 0);
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

}  // namespace qforge
