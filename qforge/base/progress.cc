// Progress line rendering.
#include "qforge/base/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qforge {

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return fmt::format("{}h{:02d}m", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
}

std::string FormatCount(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}G", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e4) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
  tty_ = ::isatty(STDERR_FILENO) != 0;
  const char* env = std::getenv("QF_PROGRESS");
  enabled_ = !(env != nullptr && std::strcmp(env, "0") == 0);
}

Progress::~Progress() {
  if (!finished_ && tty_ && enabled_ && last_print_ > -1e9) std::fprintf(stderr, "\n");
}

void Progress::Add(int64_t n, const std::string& detail) {
  done_ += n;
  const double now = timer_.Seconds();
  const double interval = tty_ ? 0.2 : 5.0;
  if (now - last_print_ >= interval) {
    last_print_ = now;
    Print(false, detail);
  }
}

void Progress::Finish(const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  Print(true, detail);
}

void Progress::Print(bool final_line, const std::string& detail) {
  if (!enabled_) return;
  const double t = timer_.Seconds();
  const double rate = t > 0 ? static_cast<double>(done_) / t : 0.0;
  std::string line;
  if (final_line) {
    line = fmt::format("{}: {} {} in {} ({} {}/s)", label_, FormatCount(static_cast<double>(done_)), unit_,
                       FormatDuration(t), FormatCount(rate), unit_);
  } else {
    const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : NAN;
    line = fmt::format("{}: {:5.1f}% {}/{} {} | {} {}/s | ETA {}", label_, 100.0 * frac,
                       FormatCount(static_cast<double>(done_)), FormatCount(static_cast<double>(total_)), unit_,
                       FormatCount(rate), unit_, FormatDuration(eta));
  }
  if (!detail.empty()) line += " | " + detail;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace qforge
