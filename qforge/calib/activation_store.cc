// In-memory / spilled activation storage and its safetensors form (next_inputs of a checkpoint).
#include "qforge/calib/activation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"

namespace qforge {

DType ActivationStorageDType(const Backend& be) {
  return be.compute_dtype() == ComputeDType::kBF16 ? DType::kBF16 : DType::kF32;
}

ActivationStore::ActivationStore(Backend& be, int64_t memory_budget, std::filesystem::path spill_path,
                                 int64_t device_budget, DType storage)
    : be_(&be),
      // On the CPU backend memory is host memory: one tier with the host budget.
      budget_(be.host_accessible() ? 0 : memory_budget),
      device_budget_(be.host_accessible() ? memory_budget : device_budget),
      storage_(storage),
      spill_path_(std::move(spill_path)) {
  QF_ASSERT(storage == DType::kF32 || storage == DType::kBF16, "activation storage must be F32 or BF16, not {}",
            DTypeName(storage));
}

ActivationStore::~ActivationStore() { Clear(); }

ActivationStore::ActivationStore(ActivationStore&& o) noexcept { *this = std::move(o); }

ActivationStore& ActivationStore::operator=(ActivationStore&& o) noexcept {
  if (this == &o) return *this;
  Clear();
  be_ = o.be_;
  budget_ = o.budget_;
  device_budget_ = o.device_budget_;
  storage_ = o.storage_;
  spill_path_ = std::move(o.spill_path_);
  spill_fd_ = o.spill_fd_;
  spill_registration_ = std::move(o.spill_registration_);
  spill_size_ = o.spill_size_;
  entries_ = std::move(o.entries_);
  downloads_in_flight_ = std::move(o.downloads_in_flight_);
  o.downloads_in_flight_.clear();
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
  // Copies in flight read or write the entries' memory: wait for them first. (Clear runs in the destructor
  // and in noexcept moves: a failed copy's error is not thrown here; the backend reports it to the next
  // caller that awaits a copy.)
  try {
    if (!downloads_in_flight_.empty()) FinishDownload(entries_[static_cast<size_t>(downloads_in_flight_.back())]);
    int64_t last_upload = 0;  // tickets complete in order: the last covers the others
    for (const Entry& e : entries_) last_upload = std::max(last_upload, e.upload_ticket);
    be_->AwaitUpload(last_upload);
  } catch (const std::exception&) {
  }
  downloads_in_flight_.clear();
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

Buffer ActivationStore::ToStored(HiddenStates&& h) const {
  if (storage_ == DType::kF32) return std::move(h.hidden);
  const int64_t n = h.rows() * h.dim;
  Buffer b = be_->Alloc(n * static_cast<int64_t>(sizeof(uint16_t)));
  be_->ToBf16(h.data(), b.as<uint16_t>(), n);
  return b;  // h's f32 buffer is freed with h
}

HiddenStates ActivationStore::FromStored(const Entry& e, const void* stored) const {
  HiddenStates h;
  h.batch = e.batch;
  h.seq = e.seq;
  h.dim = e.cols;
  h.hidden = be_->Alloc(h.bytes());
  if (storage_ == DType::kF32) {
    be_->Copy(h.hidden.data(), stored, h.bytes());
  } else {
    be_->FromBf16(static_cast<const uint16_t*>(stored), h.data(), h.rows() * h.dim);
  }
  return h;
}

void ActivationStore::FinishDownload(const Entry& e) const {
  if (e.download_ticket == 0) return;
  be_->AwaitDownload(e.download_ticket);  // tickets complete in order: every download before it is done too
  const int64_t done = e.download_ticket;
  while (!downloads_in_flight_.empty()) {
    const Entry& f = entries_[static_cast<size_t>(downloads_in_flight_.front())];
    if (f.download_ticket > done) break;
    f.downloading = Buffer();
    f.download_ticket = 0;
    downloads_in_flight_.pop_front();
  }
  QF_ASSERT(e.download_ticket == 0, "activation download of ticket {} not in flight", done);
}

Buffer ActivationStore::TakePrefetched(const Entry& e) const {
  if (e.prefetched.empty()) return Buffer();
  be_->AwaitUpload(e.upload_ticket);
  e.upload_ticket = 0;
  return std::move(e.prefetched);
}

void ActivationStore::Prefetch(int64_t i) {
  if (i < 0 || i >= size()) return;
  Entry& e = entries_[static_cast<size_t>(i)];
  if (e.tier != Tier::kHost || e.taken || !e.prefetched.empty() || be_->host_accessible()) return;
  FinishDownload(e);  // the host bytes must be the batch's latest
  const int64_t n = StoredBytes(e);
  e.prefetched = be_->Alloc(n);
  // in_memory outlives the copy: Put needs a Take first, which awaits it, and Clear awaits it.
  e.upload_ticket = be_->UploadInBackground(e.prefetched.data(), e.in_memory.raw(), n, nullptr);
}

void ActivationStore::ReadStored(const Entry& e, void* dst) const {
  const int64_t n = StoredBytes(e);
  FinishDownload(e);
  switch (e.tier) {
    case Tier::kBackend:
      QF_ASSERT(!e.on_backend.empty(), "activation batch read while taken");
      be_->Download(dst, e.on_backend.data(), n);
      return;
    case Tier::kHost:
      std::memcpy(dst, e.in_memory.raw(), static_cast<size_t>(n));
      return;
    case Tier::kSpill: {
      char* p = static_cast<char*>(dst);
      int64_t done = 0;
      while (done < n) {
        const ssize_t r = ::pread(spill_fd_, p + done, static_cast<size_t>(n - done), e.file_offset + done);
        if (r < 0 && errno == EINTR) continue;
        QF_CHECK(r > 0, "reading activation spill file (truncated?) '{}': {}", spill_path_.string(),
                 r < 0 ? std::strerror(errno) : "unexpected end of file");
        done += r;
      }
      return;
    }
  }
}

Buffer ActivationStore::StoredOnBackend(const Entry& e) const {
  const int64_t n = StoredBytes(e);
  if (e.tier == Tier::kHost) {
    if (Buffer p = TakePrefetched(e); !p.empty()) return p;
    FinishDownload(e);
  }
  Buffer b = be_->Alloc(n);
  if (e.tier == Tier::kHost) {
    be_->Upload(b.data(), e.in_memory.raw(), n);
  } else if (be_->host_accessible()) {
    ReadStored(e, b.data());  // straight into the buffer: it is host memory
  } else {
    std::vector<char> staging(static_cast<size_t>(n));
    ReadStored(e, staging.data());
    be_->Upload(b.data(), staging.data(), n);
  }
  return b;
}

void ActivationStore::Append(HiddenStates&& h) {
  QF_ASSERT(h.hidden.backend() == be_, "ActivationStore::Append: hidden states of another backend");
  Entry e;
  e.batch = h.batch;
  e.seq = h.seq;
  e.rows = h.rows();
  e.cols = h.dim;
  const int64_t n = StoredBytes(e);
  Buffer stored = ToStored(std::move(h));
  if (device_bytes_ + n <= device_budget_) {
    e.tier = Tier::kBackend;
    e.on_backend = std::move(stored);
    device_bytes_ += n;
  } else if (be_->host_accessible()) {
    e.tier = Tier::kSpill;
    Spill(stored.data(), n, e);
  } else {
    Tensor host = Tensor::Zeros(storage_, {e.rows, e.cols});
    be_->Download(host.mutable_raw(), stored.data(), n);
    if (memory_bytes_ + n <= budget_) {
      e.tier = Tier::kHost;
      e.in_memory = std::move(host);
      memory_bytes_ += n;
    } else {
      e.tier = Tier::kSpill;
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
  QF_ASSERT(!e.taken && (e.tier != Tier::kBackend || !e.on_backend.empty()), "activation batch {} read while taken",
            i);
  if (e.tier == Tier::kBackend) return FromStored(e, e.on_backend.data());
  if (storage_ == DType::kF32) {  // the stored bytes are the f32 batch: no second buffer
    HiddenStates h;
    h.batch = e.batch;
    h.seq = e.seq;
    h.dim = e.cols;
    h.hidden = StoredOnBackend(e);
    return h;
  }
  const Buffer stored = StoredOnBackend(e);
  return FromStored(e, stored.data());
}

HiddenStates ActivationStore::Take(int64_t i) {
  QF_ASSERT(i >= 0 && i < size(), "activation batch {} out of range ({})", i, size());
  Entry& e = entries_[static_cast<size_t>(i)];
  QF_ASSERT(!e.taken, "activation batch {} taken twice", i);
  if (e.tier != Tier::kBackend) {
    HiddenStates h = Get(i);
    e.taken = true;
    return h;
  }
  HiddenStates h;
  if (storage_ == DType::kF32) {
    h.batch = e.batch;
    h.seq = e.seq;
    h.dim = e.cols;
    h.hidden = std::move(e.on_backend);
  } else {
    h = FromStored(e, e.on_backend.data());
    e.on_backend = Buffer();  // the f32 batch replaces it until Put
  }
  e.taken = true;
  return h;
}

void ActivationStore::Put(int64_t i, HiddenStates&& h) {
  QF_ASSERT(i >= 0 && i < size(), "activation batch {} out of range ({})", i, size());
  Entry& e = entries_[static_cast<size_t>(i)];
  QF_ASSERT(e.taken, "activation batch {} put back without Take", i);
  QF_ASSERT(h.hidden.backend() == be_ && h.batch == e.batch && h.seq == e.seq && h.dim == e.cols,
            "activation batch {} put back with another shape or backend", i);
  const int64_t n = StoredBytes(e);
  Buffer stored = ToStored(std::move(h));
  switch (e.tier) {
    case Tier::kBackend:
      e.on_backend = std::move(stored);
      break;
    case Tier::kHost: {
      QF_ASSERT(e.download_ticket == 0 && e.prefetched.empty(), "activation batch {} put back while in flight", i);
      e.download_ticket = be_->DownloadInBackground(e.in_memory.mutable_raw(), stored.data(), n);
      if (e.download_ticket != 0) {
        e.downloading = std::move(stored);
        downloads_in_flight_.push_back(i);
        if (static_cast<int>(downloads_in_flight_.size()) > kDownloadsInFlight) {
          FinishDownload(entries_[static_cast<size_t>(downloads_in_flight_.front())]);
        }
      }
      break;
    }
    case Tier::kSpill: {
      std::vector<char> staging(be_->host_accessible() ? 0 : static_cast<size_t>(n));
      const void* src = stored.data();
      if (!be_->host_accessible()) {
        be_->Download(staging.data(), stored.data(), n);
        src = staging.data();
      }
      PwriteAll(spill_fd_, src, static_cast<uint64_t>(n), static_cast<uint64_t>(e.file_offset), spill_path_);
      break;
    }
  }
  e.taken = false;
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
    const uint64_t n = static_cast<uint64_t>(StoredBytes(e));
    header[name] = {{"dtype", std::string(DTypeName(storage_))}, {"shape", {e.rows, e.cols}},
                    {"data_offsets", {offset, offset + n}}};
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
  std::vector<char> bytes;
  for (const Entry& e : entries_) {
    bytes.resize(static_cast<size_t>(StoredBytes(e)));
    ReadStored(e, bytes.data());
    w.Write(bytes.data(), bytes.size());
    if (between_batches) between_batches();
  }
  w.Commit();
}

ActivationStore ActivationStore::Load(const std::filesystem::path& path, Backend& be, int64_t memory_budget,
                                      std::filesystem::path spill_path, int64_t device_budget, DType storage) {
  auto f = SafetensorsFile::Open(path);
  const auto& meta = f->metadata();
  auto it = meta.find("batches");
  QF_CHECK(it != meta.end(), "'{}': not a qforge activation file (no 'batches' metadata)", path.string());
  const int64_t n = std::stoll(it->second);
  ActivationStore s(be, memory_budget, std::move(spill_path), device_budget, storage);
  for (int64_t i = 0; i < n; ++i) {
    const std::string name = fmt::format("batch_{:05d}", i);
    auto m = meta.find(name);
    QF_CHECK(m != meta.end() && f->Contains(name), "'{}': batch tensor '{}' missing", path.string(), name);
    int64_t batch = 0, seq = 0;
    QF_CHECK(std::sscanf(m->second.c_str(), "%ld,%ld", &batch, &seq) == 2 && batch > 0 && seq > 0,
             "'{}': bad metadata '{}' for {}", path.string(), m->second, name);
    const Tensor t = f->Get(name);
    QF_CHECK((t.dtype() == DType::kF32 || t.dtype() == DType::kBF16) && t.rank() == 2 && t.dim(0) == batch * seq,
             "'{}': tensor '{}' is {} {} (expected [{}*{}, hidden] F32 or BF16)", path.string(), name,
             DTypeName(t.dtype()), ShapeToString(t.shape()), batch, seq);
    if (t.dtype() == DType::kF32) {
      s.Append(UploadHidden(be, t, batch, seq));
    } else {
      const int64_t n = t.numel();
      Buffer raw = be.AllocCopy(t.raw(), static_cast<int64_t>(t.nbytes()));
      HiddenStates h;
      h.batch = batch;
      h.seq = seq;
      h.dim = t.dim(1);
      h.hidden = be.Alloc(n * static_cast<int64_t>(sizeof(float)));
      be.FromBf16(raw.as<uint16_t>(), h.data(), n);
      s.Append(std::move(h));
    }
    f->Release(name);
  }
  return s;
}

}  // namespace qforge
