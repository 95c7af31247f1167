// Logging: leveled messages to stderr, with a replaceable sink so tests and callers can capture warnings.
//
// Warnings that change what a user gets (deprecations, fallbacks) also go through here; callers that must
// record them in a summary or report keep their own structured list as well (house style rule 8).
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Minimum level printed by the default sink (default kInfo; QF_LOG_LEVEL=debug|info|warning|error).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Emits one message. Thread-safe.
void Log(LogLevel level, std::string_view message);

// Captures every message logged on any thread while alive (for tests and for "warning emitted" checks).
class ScopedLogCapture {
 public:
  ScopedLogCapture();
  ~ScopedLogCapture();
  ScopedLogCapture(const ScopedLogCapture&) = delete;
  ScopedLogCapture& operator=(const ScopedLogCapture&) = delete;
  // Messages at or above `level`.
  std::vector<std::string> Messages(LogLevel level = LogLevel::kWarning) const;
  bool Contains(std::string_view needle, LogLevel level = LogLevel::kWarning) const;

 private:
  struct Entry {
    LogLevel level;
    std::string text;
  };
  std::vector<Entry> entries_;
  ScopedLogCapture* prev_;
  friend void Log(LogLevel, std::string_view);
};

template <typename... Args>
void LogDebug(fmt::format_string<Args...> f, Args&&... args) {
  if (GetLogLevel() <= LogLevel::kDebug) Log(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogInfo(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogWarning(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogError(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace qforge
