// Default stderr sink and the capture stack behind ScopedLogCapture.
#include "qforge/base/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace qforge {
namespace {

std::mutex g_mu;
ScopedLogCapture* g_capture = nullptr;

LogLevel InitialLevel() {
  const char* env = std::getenv("QF_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "warning") == 0) return LogLevel::kWarning;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

LogLevel g_level = InitialLevel();

const char* Prefix(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug: ";
    case LogLevel::kInfo: return "";
    case LogLevel::kWarning: return "warning: ";
    case LogLevel::kError: return "error: ";
  }
  return "";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }
LogLevel GetLogLevel() { return g_level; }

void Log(LogLevel level, std::string_view message) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_capture != nullptr) {
    g_capture->entries_.push_back({level, std::string(message)});
    return;
  }
  if (level < g_level) return;
  std::fprintf(stderr, "%s%.*s\n", Prefix(level), static_cast<int>(message.size()), message.data());
}

ScopedLogCapture::ScopedLogCapture() {
  std::lock_guard<std::mutex> lock(g_mu);
  prev_ = g_capture;
  g_capture = this;
}

ScopedLogCapture::~ScopedLogCapture() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_capture = prev_;
}

std::vector<std::string> ScopedLogCapture::Messages(LogLevel level) const {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (e.level >= level) out.push_back(e.text);
  }
  return out;
}

bool ScopedLogCapture::Contains(std::string_view needle, LogLevel level) const {
  for (const auto& m : Messages(level)) {
    if (m.find(needle) != std::string::npos) return true;
  }
  return false;
}

}  // namespace qforge
