// The CUDA backend's background copies (background_upload.h).
#include "qforge/runtime/cuda/background_upload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "qforge/base/error.h"

namespace qforge::cuda {
namespace {

// Host threads that fill or empty a pinned buffer: reading a cold mmap page-faults, and one thread alone
// reaches about 1.4 GB/s; a few threads keep up with a decoder layer's compute without taking the op
// thread's cores.
constexpr int kCopyThreads = 4;

}  // namespace

// --- the shared worker --------------------------------------------------------------------------------------

void BackgroundCopier::Throw(cudaError_t e, const char* what) const {
  if (e != cudaSuccess) {
    throw Error(fmt::format("{}: {} failed: {} ({})", what_, what, cudaGetErrorName(e), cudaGetErrorString(e)));
  }
}

void BackgroundCopier::HostCopy(char* dst, const char* src, size_t len) {
  constexpr size_t kPiece = size_t{2} << 20;
  const int64_t pieces = static_cast<int64_t>((len + kPiece - 1) / kPiece);
#pragma omp parallel for num_threads(kCopyThreads) schedule(dynamic, 1) if (pieces > 1)
  for (int64_t p = 0; p < pieces; ++p) {
    const size_t o = static_cast<size_t>(p) * kPiece;
    std::memcpy(dst + o, src + o, std::min(kPiece, len - o));
  }
}

void BackgroundCopier::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  cudaSetDevice(device_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
}

BackgroundCopier::~BackgroundCopier() {
  Stop();
  for (Job& j : jobs_) {  // (left only if the worker never started)
    if (j.ready != nullptr) cudaEventDestroy(j.ready);
  }
  for (int i = 0; i < 2; ++i) {
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
    if (staging_event_[i] != nullptr) cudaEventDestroy(staging_event_[i]);
  }
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
}

void BackgroundCopier::Start() {
  Throw(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking), "cudaStreamCreate (copy stream)");
  for (int i = 0; i < 2; ++i) {
    Throw(cudaHostAlloc(&staging_[i], kChunkBytes, cudaHostAllocDefault), "cudaHostAlloc (pinned staging)");
    Throw(cudaEventCreateWithFlags(&staging_event_[i], cudaEventDisableTiming), "cudaEventCreate");
  }
  worker_ = std::thread([this] { Run(); });
}

int64_t BackgroundCopier::Enqueue(Job job) {
  std::lock_guard<std::mutex> lock(mu_);
  job.ticket = next_ticket_++;
  const int64_t ticket = job.ticket;
  jobs_.push_back(std::move(job));
  cv_.notify_all();
  return ticket;
}

void BackgroundCopier::WaitFor(int64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  QF_ASSERT(ticket < next_ticket_, "{}: wait for ticket {} never submitted", what_, ticket);
  cv_.wait(lock, [&] { return done_ticket_ >= ticket; });
  if (!error_.empty()) throw Error(error_);
}

void BackgroundCopier::Run() {
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
    if (job.ready != nullptr) cudaEventDestroy(job.ready);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure.empty() && error_.empty()) error_ = failure;
      done_ticket_ = job.ticket;
    }
    cv_.notify_all();
  }
}

// --- uploads ------------------------------------------------------------------------------------------------

BackgroundUploader::~BackgroundUploader() {
  Stop();
  if (submitted_ != nullptr) cudaEventDestroy(submitted_);
  if (copied_ != nullptr) cudaEventDestroy(copied_);
}

int64_t BackgroundUploader::Submit(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner,
                                   cudaStream_t op_stream) {
  QF_ASSERT(bytes > 0 && dst != nullptr && host != nullptr, "BackgroundUploader::Submit of {} bytes", bytes);
  if (copy_stream_ == nullptr) {
    Throw(cudaEventCreateWithFlags(&submitted_, cudaEventDisableTiming), "cudaEventCreate");
    Throw(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming), "cudaEventCreate");
    Start();
  }
  // The copies start after the op stream's work so far: dst may be memory that work still reads.
  Throw(cudaEventRecord(submitted_, op_stream), "cudaEventRecord");
  Throw(cudaStreamWaitEvent(copy_stream_, submitted_, 0), "cudaStreamWaitEvent (copy stream)");
  Job job;
  job.dst = static_cast<char*>(dst);
  job.src = static_cast<const char*>(host);
  job.bytes = bytes;
  job.owner = std::move(owner);
  return Enqueue(std::move(job));
}

void BackgroundUploader::Await(int64_t ticket, cudaStream_t op_stream) {
  if (ticket <= 0) return;
  WaitFor(ticket);
  // `copied_` was last recorded after a job at or beyond `ticket`; the copy stream runs jobs in order.
  Throw(cudaStreamWaitEvent(op_stream, copied_, 0), "cudaStreamWaitEvent (op stream)");
}

void BackgroundUploader::Copy(const Job& job) {
  int64_t chunk_index = 0;
  for (int64_t off = 0; off < job.bytes; off += static_cast<int64_t>(kChunkBytes), ++chunk_index) {
    const size_t len = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kChunkBytes), job.bytes - off));
    const int i = static_cast<int>(chunk_index & 1);
    Throw(cudaEventSynchronize(staging_event_[i]), "cudaEventSynchronize (pinned staging)");
    HostCopy(static_cast<char*>(staging_[i]), job.src + off, len);
    Throw(cudaMemcpyAsync(job.dst + off, staging_[i], len, cudaMemcpyHostToDevice, copy_stream_), "cudaMemcpyAsync");
    Throw(cudaEventRecord(staging_event_[i], copy_stream_), "cudaEventRecord");
  }
  Throw(cudaEventRecord(copied_, copy_stream_), "cudaEventRecord");
}

// --- downloads ----------------------------------------------------------------------------------------------

int64_t BackgroundDownloader::Submit(void* host, const void* src, int64_t bytes, cudaStream_t op_stream) {
  QF_ASSERT(bytes > 0 && host != nullptr && src != nullptr, "BackgroundDownloader::Submit of {} bytes", bytes);
  if (copy_stream_ == nullptr) Start();
  Job job;
  job.dst = static_cast<char*>(host);
  job.src = static_cast<const char*>(src);
  job.bytes = bytes;
  Throw(cudaEventCreateWithFlags(&job.ready, cudaEventDisableTiming), "cudaEventCreate");
  Throw(cudaEventRecord(job.ready, op_stream), "cudaEventRecord");
  return Enqueue(std::move(job));
}

void BackgroundDownloader::Copy(const Job& job) {
  Throw(cudaStreamWaitEvent(copy_stream_, job.ready, 0), "cudaStreamWaitEvent (download stream)");
  // Chunk c's DMA goes into staging[c & 1] while the host copies chunk c - 1 out of the other one.
  auto copy_out = [&](int64_t off, size_t len, int i) {
    Throw(cudaEventSynchronize(staging_event_[i]), "cudaEventSynchronize (pinned staging)");
    HostCopy(job.dst + off, static_cast<const char*>(staging_[i]), len);
  };
  int64_t prev_off = -1;
  size_t prev_len = 0;
  int64_t chunk_index = 0;
  for (int64_t off = 0; off < job.bytes; off += static_cast<int64_t>(kChunkBytes), ++chunk_index) {
    const size_t len = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(kChunkBytes), job.bytes - off));
    const int i = static_cast<int>(chunk_index & 1);
    Throw(cudaMemcpyAsync(staging_[i], job.src + off, len, cudaMemcpyDeviceToHost, copy_stream_), "cudaMemcpyAsync");
    Throw(cudaEventRecord(staging_event_[i], copy_stream_), "cudaEventRecord");
    if (prev_off >= 0) copy_out(prev_off, prev_len, i ^ 1);
    prev_off = off;
    prev_len = len;
  }
  if (prev_off >= 0) copy_out(prev_off, prev_len, static_cast<int>((chunk_index - 1) & 1));
}

}  // namespace qforge::cuda
