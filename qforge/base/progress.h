// Progress reporting for long work: a single updating line with rate and ETA on a terminal, and a
// sparse plain line every few seconds otherwise (so logs of batch runs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace qforge {

// Monotonic wall-clock stopwatch in seconds.
class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  void Reset() { start_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Reports progress of `total` units (`unit` names them, e.g. "tokens"). Not thread-safe: call from one
// thread. Finish() prints the final line with the overall rate. Quiet when QF_PROGRESS=0.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  // Advances by `n` units; `detail` is appended to the line (e.g. "layer 3/8").
  void Add(int64_t n, const std::string& detail = "");
  void Finish(const std::string& detail = "");

 private:
  void Print(bool final_line, const std::string& detail);
  std::string label_;
  std::string unit_;
  int64_t total_;
  int64_t done_ = 0;
  Timer timer_;
  double last_print_ = -1e9;
  bool tty_;
  bool enabled_;
  bool finished_ = false;
};

// Formats seconds as "12.3s", "4m05s" or "1h02m".
std::string FormatDuration(double seconds);
// Formats a count with a k/M/G suffix ("12.3k").
std::string FormatCount(double n);

}  // namespace qforge
