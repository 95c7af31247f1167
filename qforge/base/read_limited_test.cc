// Bounded reads: regular files, devices, FIFOs and directories.
#include "qforge/base/read_limited.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <thread>

#include "qforge/base/error.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;

class ReadLimited : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qforge_read_limited_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string ErrorOf(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  }
  fs::path dir_;
};

TEST_F(ReadLimited, RegularFilesUpToTheLimitAreReadWhole) {
  std::string content(200000, 'x');
  for (size_t i = 0; i < content.size(); i += 7) content[i] = static_cast<char>(i % 251);
  std::ofstream(dir_ / "f", std::ios::binary) << content;
  EXPECT_EQ(ReadFileLimited(dir_ / "f", content.size(), "a test file"), content);
  const std::string e = ErrorOf([&] { ReadFileLimited(dir_ / "f", content.size() - 1, "a test file"); });
  EXPECT_NE(e.find((dir_ / "f").string()), std::string::npos) << e;
  EXPECT_NE(e.find("holds more than 199999 bytes, the limit for a test file"), std::string::npos) << e;
  std::ofstream(dir_ / "empty");
  EXPECT_EQ(ReadFileLimited(dir_ / "empty", 0, "a test file"), "");
}

TEST_F(ReadLimited, DevicesStopAtTheLimit) {
  EXPECT_NE(ErrorOf([] { ReadFileLimited("/dev/zero", 1 << 20, "x"); }).find("holds more than 1048576"),
            std::string::npos);
  LimitedReader r("/dev/urandom");
  std::string buf;
  EXPECT_EQ(r.Append(&buf, 4096), 4096u);
  EXPECT_EQ(r.Append(&buf, 100), 100u);
  EXPECT_EQ(buf.size(), 4196u);
  EXPECT_EQ(r.bytes_read(), 4196u);
  EXPECT_FALSE(r.eof());
}

TEST_F(ReadLimited, FifoIsReadWithoutWaitingForEndOfFile) {
  const fs::path fifo = dir_ / "p";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread writer([&] {
    std::FILE* f = std::fopen(fifo.c_str(), "wb");
    if (f == nullptr) return;
    const std::string block(4096, 'a');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  });
  {
    LimitedReader r(fifo);
    std::string buf;
    EXPECT_EQ(r.Append(&buf, 10000), 10000u);  // blocks until 10000 bytes arrived, not until EOF
    EXPECT_EQ(buf, std::string(10000, 'a'));
  }
  writer.join();
}

TEST_F(ReadLimited, MissingFilesAndDirectoriesNameThePath) {
  EXPECT_NE(ErrorOf([&] { ReadFileLimited(dir_ / "nope", 10, "x"); }).find("cannot open"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { LimitedReader r(dir_); }).find("is a directory"), std::string::npos);
  std::ofstream(dir_ / "short") << "abc";
  LimitedReader r(dir_ / "short");
  std::string buf;
  EXPECT_EQ(r.Append(&buf, 10), 3u);
  EXPECT_TRUE(r.eof());
  EXPECT_EQ(r.Append(&buf, 10), 0u);
}

}  // namespace
}  // namespace qforge
