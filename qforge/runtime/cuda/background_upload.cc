// The CUDA backend's background uploader (background_upload.h).
#include "qforge/runtime/cuda/background_upload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "qforge/base/error.h"

namespace qforge::cuda {
namespace {

// Per pinned buffer; two alternate so that the host copy of one chunk overlaps the DMA of the other.
constexpr size_t kChunkBytes = size_t{32} << 20;
// Host threads that fill a pinned buffer: reading a cold mmap page-faults, and one thread alone reaches
// about 1.4 GB/s; a few threads keep up with a decoder layer's compute without taking the op thread's cores.
constexpr int kCopyThreads = 4;

void Throw(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw Error(fmt::format("background upload: {} failed: {} ({})", what, cudaGetErrorName(e), cudaGetErrorString(e)));
  }
}

}  // namespace

BackgroundUploader::~BackgroundUploader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  cudaSetDevice(device_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (int i = 0; i < 2; ++i) {
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
    if (staging_done_[i] != nullptr) cudaEventDestroy(staging_done_[i]);
  }
  if (submitted_ != nullptr) cudaEventDestroy(submitted_);
  if (copied_ != nullptr) cudaEventDestroy(copied_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
}

void BackgroundUploader::Start() {
  Throw(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "cudaStreamCreate (copy stream)");
  Throw(cudaEventCreateWithFlags(&submitted_, cudaEventDisableTiming), "cudaEventCreate");
  Throw(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming), "cudaEventCreate");
  for (int i = 0; i < 2; ++i) {
    Throw(cudaHostAlloc(&staging_[i], kChunkBytes, cudaHostAllocDefault), "cudaHostAlloc (pinned staging)");
    Throw(cudaEventCreateWithFlags(&staging_done_[i], cudaEventDisableTiming), "cudaEventCreate");
  }
  worker_ = std::thread([this] { Run(); });
}

int64_t BackgroundUploader::Submit(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner,
                                   cudaStream_t op_stream) {
  QF_ASSERT(bytes > 0 && dst != nullptr && host != nullptr, "BackgroundUploader::Submit of {} bytes", bytes);
  if (!worker_.joinable()) Start();
  // The copies start after the op stream's work so far: dst may be memory that work still reads.
  Throw(cudaEventRecord(submitted_, op_stream), "cudaEventRecord");
  Throw(cudaStreamWaitEvent(copy_stream_, submitted_, 0), "cudaStreamWaitEvent (copy stream)");
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t ticket = next_ticket_++;
  jobs_.push_back(Job{dst, static_cast<const char*>(host), bytes, std::move(owner), ticket});
  cv_.notify_all();
  return ticket;
}

void BackgroundUploader::Await(int64_t ticket, cudaStream_t op_stream) {
  if (ticket <= 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  QF_ASSERT(ticket < next_ticket_, "BackgroundUploader::Await of ticket {} never submitted", ticket);
  cv_.wait(lock, [&] { return done_ticket_ >= ticket; });
  if (!error_.empty()) throw Error(error_);
  // `copied_` was last recorded after a job at or beyond `ticket`; the copy stream runs jobs in order.
  Throw(cudaStreamWaitEvent(op_stream, copied_, 0), "cudaStreamWaitEvent (op stream)");
}

void BackgroundUploader::Run() {
  cudaSetDevice(device_);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stop_ with nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::string failure;
    if (error_.empty()) {
      try {
        Copy(job);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    job.owner.reset();  // the host bytes have been read
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure.empty() && error_.empty()) error_ = failure;
      done_ticket_ = job.ticket;
    }
    cv_.notify_all();
  }
}

void BackgroundUploader::Copy(const Job& job) {
  auto* d = static_cast<char*>(job.dst);
  int64_t chunk_index = 0;
  for (int64_t off = 0; off < job.bytes; off += static_cast<int64_t>(kChunkBytes), ++chunk_index) {
    const size_t len = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kChunkBytes), job.bytes - off));
    const int i = static_cast<int>(chunk_index & 1);
    Throw(cudaEventSynchronize(staging_done_[i]), "cudaEventSynchronize (pinned staging)");
    constexpr size_t kPiece = size_t{2} << 20;
    const int64_t pieces = static_cast<int64_t>((len + kPiece - 1) / kPiece);
    char* stage = static_cast<char*>(staging_[i]);
    const char* src = job.host + off;
#pragma omp parallel for num_threads(kCopyThreads) schedule(dynamic, 1) if (pieces > 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const size_t o = static_cast<size_t>(p) * kPiece;
      std::memcpy(stage + o, src + o, std::min(kPiece, len - o));
    }
    Throw(cudaMemcpyAsync(d + off, stage, len, cudaMemcpyHostToDevice, copy_stream_), "cudaMemcpyAsync");
    Throw(cudaEventRecord(staging_done_[i], copy_stream_), "cudaEventRecord");
  }
  Throw(cudaEventRecord(copied_, copy_stream_), "cudaEventRecord");
}

BackgroundDownloader::~BackgroundDownloader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  cudaSetDevice(device_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  for (Job& j : jobs_) {  // (left only if the worker never started)
    if (j.ready != nullptr) cudaEventDestroy(j.ready);
  }
  for (int i = 0; i < 2; ++i) {
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
    if (staging_full_[i] != nullptr) cudaEventDestroy(staging_full_[i]);
  }
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
}

void BackgroundDownloader::Start() {
  Throw(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "cudaStreamCreate (download stream)");
  for (int i = 0; i < 2; ++i) {
    Throw(cudaHostAlloc(&staging_[i], kChunkBytes, cudaHostAllocDefault), "cudaHostAlloc (pinned staging)");
    Throw(cudaEventCreateWithFlags(&staging_full_[i], cudaEventDisableTiming), "cudaEventCreate");
  }
  worker_ = std::thread([this] { Run(); });
}

int64_t BackgroundDownloader::Submit(void* host, const void* src, int64_t bytes, cudaStream_t op_stream) {
  QF_ASSERT(bytes > 0 && host != nullptr && src != nullptr, "BackgroundDownloader::Submit of {} bytes", bytes);
  if (!worker_.joinable()) Start();
  Job job{static_cast<char*>(host), static_cast<const char*>(src), bytes, nullptr, 0};
  Throw(cudaEventCreateWithFlags(&job.ready, cudaEventDisableTiming), "cudaEventCreate");
  Throw(cudaEventRecord(job.ready, op_stream), "cudaEventRecord");
  std::lock_guard<std::mutex> lock(mu_);
  job.ticket = next_ticket_++;
  jobs_.push_back(job);
  cv_.notify_all();
  return job.ticket;
}

void BackgroundDownloader::Await(int64_t ticket) {
  if (ticket <= 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  QF_ASSERT(ticket < next_ticket_, "BackgroundDownloader::Await of ticket {} never submitted", ticket);
  cv_.wait(lock, [&] { return done_ticket_ >= ticket; });
  if (!error_.empty()) throw Error(error_);
}

void BackgroundDownloader::Run() {
  cudaSetDevice(device_);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = jobs_.front();
      jobs_.pop_front();
    }
    std::string failure;
    if (error_.empty()) {
      try {
        Copy(job);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    cudaEventDestroy(job.ready);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure.empty() && error_.empty()) error_ = failure;
      done_ticket_ = job.ticket;
    }
    cv_.notify_all();
  }
}

void BackgroundDownloader::Copy(const Job& job) {
  Throw(cudaStreamWaitEvent(copy_stream_, job.ready, 0), "cudaStreamWaitEvent (download stream)");
  // Chunk c's DMA goes into staging[c & 1] while the host copies chunk c - 1 out of the other one.
  auto copy_out = [&](int64_t off, size_t len, int i) {
    Throw(cudaEventSynchronize(staging_full_[i]), "cudaEventSynchronize (pinned staging)");
    constexpr size_t kPiece = size_t{2} << 20;
    const int64_t pieces = static_cast<int64_t>((len + kPiece - 1) / kPiece);
    const char* stage = static_cast<const char*>(staging_[i]);
    char* dst = job.host + off;
#pragma omp parallel for num_threads(kCopyThreads) schedule(dynamic, 1) if (pieces > 1)
    for (int64_t p = 0; p < pieces; ++p) {
      const size_t o = static_cast<size_t>(p) * kPiece;
      std::memcpy(dst + o, stage + o, std::min(kPiece, len - o));
    }
  };
  int64_t prev_off = -1;
  size_t prev_len = 0;
  int64_t chunk_index = 0;
  for (int64_t off = 0; off < job.bytes; off += static_cast<int64_t>(kChunkBytes), ++chunk_index) {
    const size_t len = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kChunkBytes), job.bytes - off));
    const int i = static_cast<int>(chunk_index & 1);
    Throw(cudaMemcpyAsync(staging_[i], job.src + off, len, cudaMemcpyDeviceToHost, copy_stream_), "cudaMemcpyAsync");
    Throw(cudaEventRecord(staging_full_[i], copy_stream_), "cudaEventRecord");
    if (prev_off >= 0) copy_out(prev_off, prev_len, i ^ 1);
    prev_off = off;
    prev_len = len;
  }
  if (prev_off >= 0) copy_out(prev_off, prev_len, static_cast<int>((chunk_index - 1) & 1));
}

}  // namespace qforge::cuda
