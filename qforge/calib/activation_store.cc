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

ActivationStore::ActivationStore(Backend& be, int64_t memory_budget, std::filesystem::path spill_path,
                                 int64_t device_budget)
    : be_(&be),
      // On the CPU backend memory is host memory: one tier with the host budget.
      budget_(be.host_accessible() ? 0 : memory_budget),
      device_budget_(be.host_accessible() ? memory_budget : device_budget),
      spill_path_(std::move(spill_path)) {}

ActivationStore::~ActivationStore() { Clear(); }

ActivationStore::ActivationStore(ActivationStore&& o) noexcept { *this = std::move(o); }

ActivationStore& ActivationStore::operator=(ActivationStore&& o) noexcept {
  if (this == &o) return *this;
  Clear();
  be_ = o.be_;
  budget_ = o.budget_;
  device_budget_ = o.device_budget_;
  spill_path_ = std::move(o.spill_path_);
  spill_fd_ = o.spill_fd_;
  spill_registration_ = std::move(o.spill_registration_);
  spill_size_ = o.spill_size_;
  entries_ = std::move(o.entries_);
  bytes_ = o.bytes_;
  memory_bytes_ = o.memory_bytes_;
  device_bytes_ = o.device_bytes_;
  spilled_bytes_ = o.spilled_bytes_;
  o.spill_fd_ = -1;
  o.entries_.clear();
  o.bytes_ = o.memory_bytes_ = o.device_bytes_ = o.spilled_bytes_ = o.spill_size_ = 0;
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
  bytes_ = memory_bytes_ = device_bytes_ = spilled_bytes_ = spill_size_ = 0;
}

void ActivationStore::Spill(const void* data, int64_t n, Entry& e) {
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
  PwriteAll(spill_fd_, data, static_cast<uint64_t>(n), static_cast<uint64_t>(spill_size_), spill_path_);
  e.file_offset = spill_size_;
  spill_size_ += n;
  spilled_bytes_ += n;
}

void ActivationStore::Append(HiddenStates&& h) {
  QF_ASSERT(h.hidden.backend() == be_, "ActivationStore::Append: hidden states of another backend");
  Entry e;
  e.batch = h.batch;
  e.seq = h.seq;
  e.rows = h.rows();
  e.cols = h.dim;
  const int64_t n = h.bytes();
  if (device_bytes_ + n <= device_budget_) {
    e.on_backend = std::move(h.hidden);
    device_bytes_ += n;
  } else if (be_->host_accessible()) {
    Spill(h.data(), n, e);
  } else {
    Tensor host = DownloadHidden(*be_, h);
    if (memory_bytes_ + n <= budget_) {
      e.in_memory = std::move(host);
      memory_bytes_ += n;
    } else {
      Spill(host.raw(), n, e);
    }
  }
  bytes_ += n;
  entries_.push_back(std::move(e));
}

std::pair<int64_t, int64_t> ActivationStore::shape(int64_t i) const {
  const Entry& e = entries_.at(static_cast<size_t>(i));
  return {e.rows, e.cols};
}

HiddenStates ActivationStore::Get(int64_t i) const {
  QF_ASSERT(i >= 0 && i < size(), "activation batch {} out of range ({})", i, size());
  const Entry& e = entries_[static_cast<size_t>(i)];
  HiddenStates h;
  h.batch = e.batch;
  h.seq = e.seq;
  h.dim = e.cols;
  const int64_t n = e.rows * e.cols * static_cast<int64_t>(sizeof(float));
  h.hidden = be_->Alloc(n);
  if (!e.on_backend.empty()) {
    be_->Copy(h.hidden.data(), e.on_backend.data(), n);
    return h;
  }
  if (e.file_offset < 0) {
    be_->Upload(h.hidden.data(), e.in_memory.raw(), n);
    return h;
  }
  // A spilled batch: read into host memory (directly into the buffer on the CPU), then upload.
  std::vector<char> staging(be_->host_accessible() ? 0 : static_cast<size_t>(n));
  char* p = be_->host_accessible() ? h.hidden.as<char>() : staging.data();
  int64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(spill_fd_, p + done, static_cast<size_t>(n - done), e.file_offset + done);
    QF_CHECK(r > 0, "reading activation spill file (truncated?) '{}': {}", spill_path_.string(), std::strerror(errno));
    done += r;
  }
  if (!be_->host_accessible()) be_->Upload(h.hidden.data(), staging.data(), n);
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
    const Tensor b = DownloadHidden(*be_, Get(i));
    w.Write(b.raw(), b.nbytes());
    if (between_batches) between_batches();
  }
  w.Commit();
}

ActivationStore ActivationStore::Load(const std::filesystem::path& path, Backend& be, int64_t memory_budget,
                                      std::filesystem::path spill_path, int64_t device_budget) {
  auto f = SafetensorsFile::Open(path);
  const auto& meta = f->metadata();
  auto it = meta.find("batches");
  QF_CHECK(it != meta.end(), "'{}': not a qforge activation file (no 'batches' metadata)", path.string());
  const int64_t n = std::stoll(it->second);
  ActivationStore s(be, memory_budget, std::move(spill_path), device_budget);
  for (int64_t i = 0; i < n; ++i) {
    const std::string name = fmt::format("batch_{:05d}", i);
    auto m = meta.find(name);
    QF_CHECK(m != meta.end() && f->Contains(name), "'{}': batch tensor '{}' missing", path.string(), name);
    int64_t batch = 0, seq = 0;
    QF_CHECK(std::sscanf(m->second.c_str(), "%ld,%ld", &batch, &seq) == 2 && batch > 0 && seq > 0,
             "'{}': bad metadata '{}' for {}", path.string(), m->second, name);
    const Tensor t = f->Get(name);
    QF_CHECK(t.dtype() == DType::kF32 && t.rank() == 2 && t.dim(0) == batch * seq,
             "'{}': tensor '{}' has shape {} (expected [{}*{}, hidden] f32)", path.string(), name,
             ShapeToString(t.shape()), batch, seq);
    s.Append(UploadHidden(be, t, batch, seq));
    f->Release(name);
  }
  return s;
}

}  // namespace qforge
