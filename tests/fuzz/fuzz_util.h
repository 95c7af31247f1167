// Helpers shared by the libFuzzer harnesses: a per-process scratch directory, file writes, and splitting one
// fuzz input into several files.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "qforge/base/log.h"

namespace qforge::fuzz {

// Warnings (legacy quant_cfg shapes, recipe deprecations) would be printed on every execution.
inline const bool kQuietLogs = (SetLogLevel(LogLevel::kError), true);

// Separates the parts of a multi-file input (a line that no JSON, YAML or safetensors header of the seeds
// contains). Seeds are written by fuzz_seeds.cc with the same separator.
inline constexpr std::string_view kPartSeparator = "\n#%%qf-part%%#\n";

// Splits `data` at kPartSeparator into at most `max_parts` parts (the last part keeps any further
// separators). Fewer separators give fewer parts.
inline std::vector<std::string> SplitParts(const uint8_t* data, size_t size, size_t max_parts) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = in.find(kPartSeparator);
    if (at == std::string_view::npos) break;
    parts.emplace_back(in.substr(0, at));
    in.remove_prefix(at + kPartSeparator.size());
  }
  parts.emplace_back(in);
  return parts;
}

// A scratch directory private to this process (under /dev/shm when it exists: no disk writes per run).
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("qforge-fuzz." + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return dir;
}

inline void WriteFile(const std::filesystem::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

// Empties `dir` (recreating it).
inline void ResetDir(const std::filesystem::path& dir) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
}

}  // namespace qforge::fuzz
