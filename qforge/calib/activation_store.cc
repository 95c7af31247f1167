// In-memory / spilled activation storage and its safetensors form (next_inputs of a checkpoint).
#include "qforge/calib/activation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"

namespace qforge {

ActivationStore::ActivationStore(int64_t memory_budget, std::filesystem::path spill_path)
    : budget_(memory_budget), spill_path_(std::move(spill_path)) {}

ActivationStore::~ActivationStore() { Clear(); }

ActivationStore::ActivationStore(ActivationStore&& o) noexcept { *this = std::move(o); }

ActivationStore& ActivationStore::operator=(ActivationStore&& o) noexcept {
  if (this == &o) return *this;
  Clear();
  budget_ = o.budget_;
  spill_path_ = std::move(o.spill_path_);
  spill_fd_ = o.spill_fd_;
  spill_registration_ = std::move(o.spill_registration_);
  spill_size_ = o.spill_size_;
  entries_ = std::move(o.entries_);
  bytes_ = o.bytes_;
  memory_bytes_ = o.memory_bytes_;
  spilled_bytes_ = o.spilled_bytes_;
  o.spill_fd_ = -1;
  o.entries_.clear();
  o.bytes_ = o.memory_bytes_ = o.spilled_bytes_ = o.spill_size_ = 0;
  return *this;
}

void ActivationStore::Clear() {
  entries_.clear();
  if (spill_fd_ >= 0) {
    ::close(spill_fd_);
    spill_fd_ = -1;
    std::error_code ec;
    std::filesystem::remove(spill_path_, ec);
    spill_registration_.Release();
  }
  bytes_ = memory_bytes_ = spilled_bytes_ = spill_size_ = 0;
}

void ActivationStore::Append(const HiddenStates& h) {
  Entry e;
  e.batch = h.batch;
  e.seq = h.seq;
  e.rows = h.hidden.dim(0);
  e.cols = h.hidden.dim(1);
  const int64_t n = static_cast<int64_t>(h.hidden.nbytes());
  if (memory_bytes_ + n <= budget_) {
    e.in_memory = h.hidden.Clone();
    memory_bytes_ += n;
  } else {
    if (spill_fd_ < 0) {
      if (spill_path_.empty()) {
        static std::atomic<int> counter{0};
        spill_path_ = std::filesystem::temp_directory_path() /
                      fmt::format("qforge-activations-{}-{}.bin", ::getpid(), counter++);
      }
      std::filesystem::create_directories(spill_path_.parent_path());
      spill_registration_ = ScopedTemporary(spill_path_);  // removed on SIGINT / SIGTERM too
      spill_fd_ = ::open(spill_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      QF_CHECK(spill_fd_ >= 0, "cannot create activation spill file '{}': {}", spill_path_.string(),
               std::strerror(errno));
    }
    const char* p = static_cast<const char*>(h.hidden.raw());
    int64_t done = 0;
    while (done < n) {
      const ssize_t w = ::pwrite(spill_fd_, p + done, static_cast<size_t>(n - done), spill_size_ + done);
      QF_CHECK(w > 0, "writing activation spill file '{}': {}", spill_path_.string(), std::strerror(errno));
      done += w;
    }
    e.file_offset = spill_size_;
    spill_size_ += n;
    spilled_bytes_ += n;
  }
  bytes_ += n;
  entries_.push_back(std::move(e));
}

HiddenStates ActivationStore::Get(int64_t i) const {
  QF_ASSERT(i >= 0 && i < size(), "activation batch {} out of range ({})", i, size());
  const Entry& e = entries_[static_cast<size_t>(i)];
  HiddenStates h;
  h.batch = e.batch;
  h.seq = e.seq;
  if (e.file_offset < 0) {
    h.hidden = e.in_memory.Clone();
    return h;
  }
  h.hidden = Tensor::Zeros(DType::kF32, {e.rows, e.cols});
  char* p = static_cast<char*>(h.hidden.mutable_raw());
  const int64_t n = static_cast<int64_t>(h.hidden.nbytes());
  int64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(spill_fd_, p + done, static_cast<size_t>(n - done), e.file_offset + done);
    QF_CHECK(r > 0, "reading activation spill file (truncated?) '{}': {}", spill_path_.string(), std::strerror(errno));
    done += r;
  }
  return h;
}

void ActivationStore::Save(const std::filesystem::path& path, const std::function<void()>& between_batches) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "qforge-activations";
  meta["batches"] = std::to_string(entries_.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    const std::string name = fmt::format("batch_{:05d}", i);
    const uint64_t n = static_cast<uint64_t>(e.rows * e.cols) * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", {e.rows, e.cols}}, {"data_offsets", {offset, offset + n}}};
    meta[name] = fmt::format("{},{}", e.batch, e.seq);
    offset += n;
  }
  header["__metadata__"] = meta;
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  AtomicFileWriter w(path);
  const uint64_t len = h.size();
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(len >> (8 * i));
  w.Write(le, 8);
  w.Write(h);
  for (int64_t i = 0; i < size(); ++i) {
    const HiddenStates b = Get(i);
    w.Write(b.hidden.raw(), b.hidden.nbytes());
    if (between_batches) between_batches();
  }
  w.Commit();
}

ActivationStore ActivationStore::Load(const std::filesystem::path& path, int64_t memory_budget,
                                      std::filesystem::path spill_path) {
  auto f = SafetensorsFile::Open(path);
  const auto& meta = f->metadata();
  auto it = meta.find("batches");
  QF_CHECK(it != meta.end(), "'{}': not a qforge activation file (no 'batches' metadata)", path.string());
  const int64_t n = std::stoll(it->second);
  ActivationStore s(memory_budget, std::move(spill_path));
  for (int64_t i = 0; i < n; ++i) {
    const std::string name = fmt::format("batch_{:05d}", i);
    auto m = meta.find(name);
    QF_CHECK(m != meta.end() && f->Contains(name), "'{}': batch tensor '{}' missing", path.string(), name);
    HiddenStates h;
    QF_CHECK(std::sscanf(m->second.c_str(), "%ld,%ld", &h.batch, &h.seq) == 2, "'{}': bad metadata '{}' for {}",
             path.string(), m->second, name);
    h.hidden = f->Get(name);
    QF_CHECK(h.hidden.dtype() == DType::kF32 && h.hidden.rank() == 2 && h.hidden.dim(0) == h.batch * h.seq,
             "'{}': tensor '{}' has shape {} (expected [{}*{}, hidden] f32)", path.string(), name,
             ShapeToString(h.hidden.shape()), h.batch, h.seq);
    s.Append(h);
    f->Release(name);
  }
  return s;
}

}  // namespace qforge
