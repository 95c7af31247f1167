// Background host <-> device copies for the CUDA backend: one worker thread and one copy stream per
// direction, each copying through two pinned buffers of its own, so that the copies run beside the ops of
// the op stream.
//
// Uploads (Backend::UploadInBackground): the worker reads the host bytes (often an mmap of the checkpoint,
// which page-faults as it is read) into a pinned buffer and queues its DMA, so that the next decoder layer's
// weights cross while the current one computes. Submit() makes the copy stream wait for the op stream's work
// issued so far (the destination may be memory those ops freed). Await(t) makes the op stream wait for every
// copy up to ticket t, after the worker has queued them; the host never waits for the device here.
//
// Downloads (Backend::DownloadInBackground): each job's DMA waits for the op stream's work up to its Submit
// (an event per job, so that a job never waits for op work issued after it); the worker copies each chunk
// out of its pinned buffer while the next chunk's DMA runs. The op stream never waits; Await blocks the host
// until the bytes are in host memory.
#pragma once

#include <cuda_runtime.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace qforge::cuda {

// What the two directions share: the job queue and its tickets, the worker thread, the copy stream and
// the two pinned buffers with an event each, and the first error (reported by every later wait).
class BackgroundCopier {
 public:
  BackgroundCopier(const BackgroundCopier&) = delete;
  BackgroundCopier& operator=(const BackgroundCopier&) = delete;

 protected:
  struct Job {
    char* dst = nullptr;
    const char* src = nullptr;
    int64_t bytes = 0;
    std::shared_ptr<const void> owner;  // uploads: keeps the host bytes alive until read
    cudaEvent_t ready = nullptr;        // downloads: recorded on the op stream at Submit
    int64_t ticket = 0;
  };
  // `device`: the GPU; `what`: the direction, for error messages. Starts nothing until the first Enqueue.
  BackgroundCopier(int device, const char* what) : device_(device), what_(what) {}
  // Derived destructors call Stop first: the worker runs their Copy.
  ~BackgroundCopier();
  // Stops the worker after the jobs queued so far, and waits for the copy stream.
  void Stop();
  // Queues `job` (its ticket is set here) and returns its ticket.
  int64_t Enqueue(Job job);
  // Waits until the worker has finished every job up to `ticket`; throws qforge::Error if a copy failed.
  void WaitFor(int64_t ticket);
  // Copies one job (on the worker thread).
  virtual void Copy(const Job& job) = 0;
  void Throw(cudaError_t e, const char* what) const;
  // dst[0, len) = src[0, len) on a few host threads (a pinned buffer filled or emptied).
  static void HostCopy(char* dst, const char* src, size_t len);
  // Creates the stream, the pinned buffers and their events, then starts the worker.
  void Start();

  static constexpr size_t kChunkBytes = size_t{32} << 20;  // per pinned buffer
  int device_;
  const char* what_;
  cudaStream_t copy_stream_ = nullptr;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_event_[2] = {nullptr, nullptr};  // recorded after the last DMA that used each

 private:
  void Run();

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  int64_t next_ticket_ = 1;
  int64_t done_ticket_ = 0;  // every job up to it has been copied (uploads: its DMA queued)
  bool stop_ = false;
  std::string error_;  // the first failure
};

class BackgroundUploader final : public BackgroundCopier {
 public:
  explicit BackgroundUploader(int device) : BackgroundCopier(device, "background upload") {}
  ~BackgroundUploader();

  // Queues dst[0, bytes) = host[0, bytes) after the work issued on `op_stream` so far. Returns its ticket.
  int64_t Submit(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner,
                 cudaStream_t op_stream);
  // Waits until the worker has read every job up to `ticket` and queued its copies, then orders
  // `op_stream` after them. Throws qforge::Error if a copy failed.
  void Await(int64_t ticket, cudaStream_t op_stream);

 private:
  void Copy(const Job& job) override;
  cudaEvent_t submitted_ = nullptr;  // recorded on the op stream at Submit (the copy stream waits on it)
  cudaEvent_t copied_ = nullptr;     // recorded on the copy stream after each job's last copy
};

class BackgroundDownloader final : public BackgroundCopier {
 public:
  explicit BackgroundDownloader(int device) : BackgroundCopier(device, "background download") {}
  ~BackgroundDownloader() { Stop(); }

  // Queues host[0, bytes) = src[0, bytes) after the work issued on `op_stream` so far. Returns its ticket.
  int64_t Submit(void* host, const void* src, int64_t bytes, cudaStream_t op_stream);
  // Returns once every job up to `ticket` is in host memory. Throws qforge::Error if a copy failed.
  void Await(int64_t ticket) {
    if (ticket > 0) WaitFor(ticket);
  }

 private:
  void Copy(const Job& job) override;
};

}  // namespace qforge::cuda
