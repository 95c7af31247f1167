// Tests for base/: error macros, log capture, atomic file and directory writes, mmap.
#include <gtest/gtest.h>

#include <filesystem>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/strings.h"

namespace qforge {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("qforge_base_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(Error, CheckThrowsWithFormattedMessage) {
  try {
    QF_CHECK(1 + 1 == 3, "tensor '{}' has {} dims", "w", 3);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'w' has 3 dims");
  }
  EXPECT_NO_THROW(QF_CHECK(true, "never"));
}

TEST(Log, CaptureCollectsWarnings) {
  ScopedLogCapture cap;
  LogWarning("deprecated key '{}'", "layerwise");
  LogInfo("just info");
  EXPECT_TRUE(cap.Contains("deprecated key 'layerwise'"));
  EXPECT_FALSE(cap.Contains("just info"));
  EXPECT_EQ(cap.Messages(LogLevel::kInfo).size(), 2u);
}

TEST(File, AtomicWriterCommitsOrLeavesNothing) {
  fs::path dir = TempDir("atomic");
  {
    AtomicFileWriter w(dir / "a.bin");
    w.Write("hello");
    // destroyed without commit
  }
  EXPECT_FALSE(fs::exists(dir / "a.bin"));
  EXPECT_TRUE(fs::is_empty(dir));
  WriteFileAtomic(dir / "a.bin", "hello");
  EXPECT_EQ(ReadFileToString(dir / "a.bin"), "hello");
  auto m = MappedFile::Open(dir / "a.bin");
  ASSERT_EQ(m->size(), 5u);
  EXPECT_EQ(static_cast<char>(m->data()[4]), 'o');
  EXPECT_THROW(MappedFile::Open(dir / "missing"), Error);
  fs::remove_all(dir);
}

TEST(File, AtomicDirectoryReplacesOnlyOnCommit) {
  fs::path dir = TempDir("atomicdir");
  fs::path out = dir / "export";
  {
    AtomicDirectory d(out);
    WriteFileAtomic(d.path() / "x", "1");
  }
  EXPECT_FALSE(fs::exists(out));
  {
    AtomicDirectory d(out);
    WriteFileAtomic(d.path() / "x", "2");
    d.Commit();
  }
  EXPECT_EQ(ReadFileToString(out / "x"), "2");
  {
    AtomicDirectory d(out);
    WriteFileAtomic(d.path() / "y", "3");
    d.Commit();
  }
  EXPECT_FALSE(fs::exists(out / "x"));
  EXPECT_EQ(ReadFileToString(out / "y"), "3");
  fs::remove_all(dir);
}

TEST(Strings, ParseIntIsStrict) {
  EXPECT_EQ(ParseInt("-12"), -12);
  EXPECT_FALSE(ParseInt("12x").has_value());
  EXPECT_FALSE(ParseInt("").has_value());
  EXPECT_EQ(Split("a,b,,c", ',').size(), 4u);
  EXPECT_EQ(Trim("  x \n"), "x");
}

}  // namespace
}  // namespace qforge
