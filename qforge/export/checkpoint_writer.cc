// Sharded, atomic HF checkpoint writing from a planned layout (checkpoint_writer.h).
#include "qforge/export/checkpoint_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "qforge/base/error.h"
#include "qforge/base/progress.h"
#include "qforge/base/strings.h"
#include "qforge/io/safetensors.h"

namespace qforge {
namespace fs = std::filesystem;

namespace {

constexpr int kSizeClasses = 4;  // element sizes 8, 4, 2, 1 bytes, in that order in a shard

int SizeClass(DType d) {
  switch (DTypeSize(d)) {
    case 8: return 0;
    case 4: return 1;
    case 2: return 2;
    default: return 3;
  }
}

}  // namespace

uint64_t PlannedTensor::nbytes() const {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

CheckpointWriter::CheckpointWriter(fs::path out_dir, std::vector<PlannedTensor> plan,
                                   const CheckpointWriterOptions& options)
    : dir_(std::move(out_dir), options.replace), max_queued_bytes_(std::max<uint64_t>(options.max_queued_bytes, 1)) {
  slots_.reserve(plan.size());
  for (auto& t : plan) {
    for (int64_t d : t.shape) QF_ASSERT(d >= 0, "tensor '{}' planned with a negative dimension", t.name);
    QF_ASSERT(slot_of_.emplace(t.name, slots_.size()).second, "tensor '{}' planned twice", t.name);
    slots_.emplace_back();
    slots_.back().t = std::move(t);
  }
  Layout(std::max<uint64_t>(options.max_shard_bytes, 1));
  try {
    for (Shard& s : shards_) CreateShard(s);
  } catch (...) {  // no destructor runs for a throwing constructor: close what was opened
    for (Shard& s : shards_) {
      if (s.fd >= 0) ::close(s.fd);
    }
    throw;
  }
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 4u));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { WriterLoop(); });
}

CheckpointWriter::~CheckpointWriter() {
  Stop();
  for (Shard& s : shards_) {
    if (s.fd >= 0) ::close(s.fd);
  }
}

// A shard closes once its bytes reach the limit, in plan order; offsets follow the size classes.
void CheckpointWriter::Layout(uint64_t max_shard_bytes) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (shards_.empty() || bytes >= max_shard_bytes) {
      shards_.emplace_back();
      shards_.back().tmp_name = fmt::format("shard-{:05d}.part", shards_.size());
      bytes = 0;
    }
    shards_.back().slots.push_back(i);
    ++shards_.back().unwritten;
    slots_[i].shard = static_cast<int>(shards_.size()) - 1;
    bytes += slots_[i].t.nbytes();
    total_bytes_ += slots_[i].t.nbytes();
  }
}

void CheckpointWriter::CreateShard(Shard& s) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  std::vector<std::pair<size_t, uint64_t>> data_offsets;
  for (int c = 0; c < kSizeClasses; ++c) {
    for (size_t i : s.slots) {
      const PlannedTensor& t = slots_[i].t;
      if (SizeClass(t.dtype) != c) continue;
      h[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                   {"shape", t.shape},
                   {"data_offsets", {offset, offset + t.nbytes()}}};
      data_offsets.emplace_back(i, offset);
      offset += t.nbytes();
    }
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');
  const uint64_t data_start = 8 + header.size();
  for (const auto& [i, off] : data_offsets) slots_[i].file_offset = data_start + off;
  s.file_bytes = data_start + offset;

  const fs::path path = dir_.path() / s.tmp_name;
  s.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  QF_CHECK(s.fd >= 0, "cannot create '{}': {}", path.string(), ErrnoText());
  // Reserve the space now: a full disk fails here, before any weight is encoded, not in the middle.
  if (s.file_bytes > 0 && ::fallocate(s.fd, 0, 0, static_cast<off_t>(s.file_bytes)) != 0) {
    QF_CHECK(errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL,
             "cannot reserve {} bytes for '{}': {} (the checkpoint needs {} bytes in all)", s.file_bytes,
             path.string(), ErrnoText(), total_bytes_);
    QF_CHECK(::ftruncate(s.fd, static_cast<off_t>(s.file_bytes)) == 0, "cannot size '{}' to {} bytes: {}",
             path.string(), s.file_bytes, ErrnoText());
  }
  uint8_t len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  PwriteAll(s.fd, len, 8, 0, path);
  PwriteAll(s.fd, header.data(), header.size(), 8, path);
}

void CheckpointWriter::Add(const std::string& name, Tensor tensor, std::function<void(const Tensor&)> done) {
  auto it = slot_of_.find(name);
  QF_ASSERT(it != slot_of_.end(), "tensor '{}' was not planned", name);
  Slot& slot = slots_[it->second];
  QF_ASSERT(!slot.added, "tensor '{}' added twice", name);
  QF_CHECK(tensor.defined(), "tensor '{}' has no data", name);
  QF_ASSERT(tensor.dtype() == slot.t.dtype && tensor.shape() == slot.t.shape,
            "tensor '{}' is {} {}, planned as {} {}", name, DTypeName(tensor.dtype()), ShapeToString(tensor.shape()),
            DTypeName(slot.t.dtype), ShapeToString(slot.t.shape));
  slot.added = true;
  const uint64_t bytes = tensor.nbytes();
  std::unique_lock lock(mu_);
  // Waits for room, except for a tensor larger than the whole allowance (it goes alone).
  space_cv_.wait(lock, [&] { return error_ || queued_bytes_ == 0 || queued_bytes_ + bytes <= max_queued_bytes_; });
  if (error_) std::rethrow_exception(error_);
  queue_.push_back({it->second, std::move(tensor), std::move(done)});
  queued_bytes_ += bytes;
  work_cv_.notify_one();
}

void CheckpointWriter::WriterLoop() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ with nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      ++active_;
    }
    Timer timer;
    std::exception_ptr err;
    const Slot& slot = slots_[job.slot];
    Shard& shard = shards_[static_cast<size_t>(slot.shard)];
    const fs::path path = dir_.path() / shard.tmp_name;
    try {
      const uint64_t n = job.tensor.nbytes();
      if (n > 0) {
        PwriteAll(shard.fd, job.tensor.raw(), n, slot.file_offset, path);
        // Start writeback of big tensors now (asynchronous), so the final fsync has little left to do.
        if (n >= (uint64_t{64} << 20)) {
          (void)::sync_file_range(shard.fd, static_cast<off_t>(slot.file_offset), static_cast<off_t>(n),
                                  SYNC_FILE_RANGE_WRITE);
        }
      }
      if (job.done) job.done(job.tensor);
    } catch (...) {
      err = std::current_exception();
    }
    bool sync_now = false;
    {
      std::lock_guard lock(mu_);
      sync_now = !err && --shard.unwritten == 0;
    }
    // The shard is complete: make it durable now, while other shards are still being written.
    if (sync_now) {
      if (::fsync(shard.fd) == 0) {
        std::lock_guard lock(mu_);
        shard.synced = true;
      } else {
        try {
          QF_FAIL("error syncing '{}': {}", path.string(), ErrnoText());
        } catch (...) {
          err = std::current_exception();
        }
      }
    }
    const uint64_t bytes = job.tensor.nbytes();
    job = Job{};  // frees the tensor outside the lock
    {
      std::lock_guard lock(mu_);
      write_seconds_ += timer.Seconds();
      if (err && !error_) error_ = err;
      queued_bytes_ -= bytes;
      --active_;
    }
    space_cv_.notify_all();
  }
}

void CheckpointWriter::Drain() {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return error_ || (queue_.empty() && active_ == 0); });
  if (error_) std::rethrow_exception(error_);
}

void CheckpointWriter::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();  // Commit drained it; otherwise the export failed and the rest is not wanted
  }
  work_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

double CheckpointWriter::write_seconds() const {
  std::lock_guard lock(mu_);
  return write_seconds_;
}

std::vector<fs::path> AuxiliaryModelFiles(const fs::path& source_dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(source_dir)) return out;
  for (const auto& e : fs::directory_iterator(source_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string n = e.path().filename().string();
    const bool aux = StartsWith(n, "tokenizer") || n == "special_tokens_map.json" || n == "generation_config.json" ||
                     n == "added_tokens.json" || StartsWith(n, "vocab") || n == "merges.txt" ||
                     EndsWith(n, ".jinja") || n == "chat_template.json" || n == "preprocessor_config.json";
    if (aux) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void CheckpointWriter::Commit(const nlohmann::ordered_json& config_json,
                              const std::optional<nlohmann::ordered_json>& hf_quant_config,
                              const fs::path& source_dir) {
  Drain();
  Stop();
  for (const Slot& s : slots_) QF_ASSERT(s.added, "planned tensor '{}' was never written", s.t.name);
  for (Shard& s : shards_) {
    const fs::path path = dir_.path() / s.tmp_name;
    QF_CHECK(s.synced || ::fsync(s.fd) == 0, "error syncing '{}': {}", path.string(), ErrnoText());
    const int fd = s.fd;
    s.fd = -1;
    QF_CHECK(::close(fd) == 0, "error closing '{}': {}", path.string(), ErrnoText());
  }
  const size_t n = shards_.size();
  if (n == 0) {  // an empty model still gets a (header-only) file
    WriteSafetensors(dir_.path() / "model.safetensors", {}, {{"format", "pt"}});
  } else if (n == 1) {
    fs::rename(dir_.path() / shards_[0].tmp_name, dir_.path() / "model.safetensors");
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::vector<std::pair<std::string, std::string>> entries;
    for (size_t i = 0; i < n; ++i) {
      const std::string final_name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
      fs::rename(dir_.path() / shards_[i].tmp_name, dir_.path() / final_name);
      for (size_t slot : shards_[i].slots) entries.emplace_back(slots_[slot].t.name, final_name);
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [t, f] : entries) weight_map[t] = f;
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
    WriteFileAtomic(dir_.path() / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  WriteFileAtomic(dir_.path() / "config.json", config_json.dump(2) + "\n");
  if (hf_quant_config) WriteFileAtomic(dir_.path() / "hf_quant_config.json", hf_quant_config->dump(4) + "\n");
  for (const auto& f : AuxiliaryModelFiles(source_dir)) {
    std::error_code ec;
    fs::copy_file(f, dir_.path() / f.filename(), fs::copy_options::overwrite_existing, ec);
    QF_CHECK(!ec, "cannot copy '{}' into the export: {}", f.string(), ec.message());
    fs::permissions(dir_.path() / f.filename(), fs::perms::owner_write, fs::perm_options::add, ec);
  }
  dir_.Commit();
}

}  // namespace qforge
