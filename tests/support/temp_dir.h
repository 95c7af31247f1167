// A fresh temporary directory (mkdtemp under the system's temp directory) removed with everything in it at
// scope exit, for tests that write checkpoints or model copies.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace qforge::testing_support {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "qf_test") {
    std::string t = (std::filesystem::temp_directory_path() / (prefix + ".XXXXXX")).string();
    EXPECT_NE(::mkdtemp(t.data()), nullptr) << t;
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace qforge::testing_support
