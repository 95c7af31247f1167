// Background host <-> device copies for the CUDA backend. Uploads (Backend::UploadInBackground): a worker thread
// reads the host bytes (often an mmap of the checkpoint, which page-faults as it is read) into its own
// pinned buffers and queues their DMA on a copy stream of its own, so that the next decoder layer's weights
// cross while the current one computes on the op stream.
//
// Ordering. Submit() makes the copy stream wait for the op stream's work issued so far (the destination
// may be memory those ops freed). Await(t) makes the op stream wait for every copy up to ticket t, after
// the worker has queued them; the host never waits for the device here.
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

class BackgroundUploader {
 public:
  // `device`: the GPU whose memory the copies write. Starts nothing until the first Submit.
  explicit BackgroundUploader(int device) : device_(device) {}
  ~BackgroundUploader();
  BackgroundUploader(const BackgroundUploader&) = delete;
  BackgroundUploader& operator=(const BackgroundUploader&) = delete;

  // Queues dst[0, bytes) = host[0, bytes) after the work issued on `op_stream` so far. Returns its ticket.
  int64_t Submit(void* dst, const void* host, int64_t bytes, std::shared_ptr<const void> owner,
                 cudaStream_t op_stream);
  // Waits until the worker has read every job up to `ticket` and queued its copies, then orders
  // `op_stream` after them. Throws qforge::Error if a copy failed.
  void Await(int64_t ticket, cudaStream_t op_stream);

 private:
  struct Job {
    void* dst = nullptr;
    const char* host = nullptr;
    int64_t bytes = 0;
    std::shared_ptr<const void> owner;
    int64_t ticket = 0;
  };
  void Start();  // stream, pinned buffers, events, thread
  void Run();    // the worker
  void Copy(const Job& job);

  int device_;
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t submitted_ = nullptr;  // recorded on the op stream at Submit (the copy stream waits on it)
  cudaEvent_t copied_ = nullptr;     // recorded on the copy stream after each job's last copy
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  int64_t next_ticket_ = 1;
  int64_t done_ticket_ = 0;  // every job up to it has been read and its copies queued
  bool stop_ = false;
  std::string error_;        // the first failure, reported by Await
};

// Background device -> host copies (Backend::DownloadInBackground): each job's DMA runs on a copy stream of
// its own, after the op stream's work up to its Submit (an event per job, so that a job never waits for op
// work issued after it), through two pinned buffers that a worker thread copies out to the host destination
// while the next chunk's DMA runs. The op stream never waits for it; Await blocks the host only.
class BackgroundDownloader {
 public:
  explicit BackgroundDownloader(int device) : device_(device) {}
  ~BackgroundDownloader();
  BackgroundDownloader(const BackgroundDownloader&) = delete;
  BackgroundDownloader& operator=(const BackgroundDownloader&) = delete;

  // Queues host[0, bytes) = src[0, bytes) after the work issued on `op_stream` so far. Returns its ticket.
  int64_t Submit(void* host, const void* src, int64_t bytes, cudaStream_t op_stream);
  // Returns once every job up to `ticket` is in host memory. Throws qforge::Error if a copy failed.
  void Await(int64_t ticket);

 private:
  struct Job {
    char* host = nullptr;
    const char* src = nullptr;
    int64_t bytes = 0;
    cudaEvent_t ready = nullptr;  // recorded on the op stream at Submit
    int64_t ticket = 0;
  };
  void Start();
  void Run();
  void Copy(const Job& job);

  int device_;
  cudaStream_t copy_stream_ = nullptr;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_full_[2] = {nullptr, nullptr};  // recorded after the DMA into each

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  int64_t next_ticket_ = 1;
  int64_t done_ticket_ = 0;  // every job up to it is in host memory
  bool stop_ = false;
  std::string error_;
};

}  // namespace qforge::cuda
