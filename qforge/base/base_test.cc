// Tests for base/: error macros, log capture, atomic file and directory writes, mmap.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "qforge/base/blas_core.h"
#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/hash.h"
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

// A pid that cannot belong to a live process (above Linux's PID_MAX_LIMIT of 2^22).
constexpr const char* kDeadPid = "99999999";

TEST(File, AtomicDirectoryModesGuardExistingContent) {
  fs::path dir = TempDir("atomicdir_modes");
  fs::path out = dir / "export";
  fs::create_directories(out);  // an empty directory may always be replaced
  {
    AtomicDirectory d(out, ReplaceMode::kNever);
    WriteFileAtomic(d.path() / "config.json", "{}");
    d.Commit();
  }
  {
    AtomicDirectory d(out, ReplaceMode::kNever);  // now non-empty: refused at commit, old kept, temp removed
    WriteFileAtomic(d.path() / "config.json", "new");
    EXPECT_THROW(d.Commit(), Error);
  }
  EXPECT_EQ(ReadFileToString(out / "config.json"), "{}");
  {
    AtomicDirectory d(out, ReplaceMode::kExportOnly);  // an HF export may be replaced
    WriteFileAtomic(d.path() / "config.json", "v2");
    d.Commit();
  }
  EXPECT_EQ(ReadFileToString(out / "config.json"), "v2");
  fs::remove(out / "config.json");
  WriteFileAtomic(out / "notes.txt", "user data");
  {
    AtomicDirectory d(out, ReplaceMode::kExportOnly);  // not an export any more: refused
    WriteFileAtomic(d.path() / "config.json", "v3");
    EXPECT_THROW(d.Commit(), Error);
  }
  EXPECT_EQ(ReadFileToString(out / "notes.txt"), "user data");
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "export");
  fs::remove_all(dir);
}

TEST(File, AtomicDirectoryReplaceWithoutExchangeKeepsOldUntilSwapped) {
  fs::path dir = TempDir("atomicdir_noexchange");
  fs::path out = dir / "export";
  fs::create_directories(out);
  WriteFileAtomic(out / "config.json", "old");
  ::setenv("QF_TEST_NO_RENAME_EXCHANGE", "1", 1);
  {
    AtomicDirectory d(out, ReplaceMode::kExportOnly);
    WriteFileAtomic(d.path() / "config.json", "new");
    d.Commit();
  }
  ::unsetenv("QF_TEST_NO_RENAME_EXCHANGE");
  EXPECT_EQ(ReadFileToString(out / "config.json"), "new");
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "export");
  fs::remove_all(dir);
}

TEST(File, RecoverStaleTemporariesRestoresOrRemoves) {
  fs::path dir = TempDir("stale");
  fs::path out = dir / "export";
  // A replace killed between "move the old one aside" and "rename the new one in": the old one comes back.
  fs::create_directories(dir / (std::string("export.old.") + kDeadPid));
  WriteFileAtomic(dir / (std::string("export.old.") + kDeadPid) / "config.json", "old");
  fs::create_directories(dir / (std::string("export.tmp.") + kDeadPid));
  WriteFileAtomic(dir / (std::string("export.tmp.") + kDeadPid) / "half", "x");
  // Another process's live temporary (our parent's pid is alive) and an unrelated name are left alone.
  const std::string live = "export.tmp." + std::to_string(::getppid());
  fs::create_directories(dir / live);
  fs::create_directories(dir / "export.tmp.notapid");
  const auto actions = RecoverStaleTemporaries(out);
  EXPECT_EQ(ReadFileToString(out / "config.json"), "old");
  EXPECT_FALSE(fs::exists(dir / (std::string("export.tmp.") + kDeadPid)));
  EXPECT_TRUE(fs::exists(dir / live));
  EXPECT_TRUE(fs::exists(dir / "export.tmp.notapid"));
  EXPECT_EQ(actions.size(), 3u);
  // With the final path present, a stale .old. is just removed.
  fs::create_directories(dir / (std::string("export.old.") + kDeadPid));
  RecoverStaleTemporaries(out);
  EXPECT_FALSE(fs::exists(dir / (std::string("export.old.") + kDeadPid)));
  EXPECT_EQ(ReadFileToString(out / "config.json"), "old");
  fs::remove_all(dir);
}

TEST(File, CheckOutputDirectoryNeverReplacesInputsOrUserData) {
  fs::path dir = TempDir("outcheck");
  const fs::path model = dir / "models" / "m";
  fs::create_directories(model);
  WriteFileAtomic(model / "config.json", "{}");
  const std::vector<fs::path> inputs = {model};
  auto message = [&](const fs::path& out, bool overwrite) -> std::string {
    try {
      CheckOutputDirectory(out, "--export", overwrite, inputs);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(model, true).find("is '"), std::string::npos);          // the model itself
  EXPECT_NE(message(dir / "models", true).find("contains"), std::string::npos);  // a parent of it
  EXPECT_NE(message(dir / "models/m/../m", true), "");                        // spelled differently
  fs::create_directory_symlink(model, dir / "link");
  EXPECT_NE(message(dir / "link", true), "");                                 // through a symlink
  EXPECT_EQ(message(dir / "new", false), "");                                 // missing: fine
  fs::create_directories(dir / "empty");
  EXPECT_EQ(message(dir / "empty", false), "");                               // empty: fine
  fs::create_directories(dir / "old_export");
  WriteFileAtomic(dir / "old_export" / "hf_quant_config.json", "{}");
  EXPECT_NE(message(dir / "old_export", false).find("--overwrite"), std::string::npos);
  EXPECT_EQ(message(dir / "old_export", true), "");
  EXPECT_EQ(CheckOutputDirectory(dir / "old_export", "--export", true, inputs), ReplaceMode::kExportOnly);
  fs::create_directories(dir / "photos");
  WriteFileAtomic(dir / "photos" / "a.jpg", "x");
  EXPECT_NE(message(dir / "photos", true).find("not a qforge/HF export"), std::string::npos);
  WriteFileAtomic(dir / "file", "x");
  EXPECT_NE(message(dir / "file", true).find("not a directory"), std::string::npos);
  EXPECT_NE(message("", false), "");
  // Output files: never an input, an existing one only with overwrite.
  EXPECT_THROW(CheckOutputFile(model / "config.json", "OUT", true, {model / "config.json"}), Error);
  EXPECT_THROW(CheckOutputFile(dir / "file", "OUT", false, {}), Error);
  EXPECT_NO_THROW(CheckOutputFile(dir / "file", "OUT", true, {}));
  EXPECT_THROW(CheckOutputFile(dir / "empty", "OUT", true, {}), Error);
  fs::remove_all(dir);
}

TEST(File, DirectoryLockIsExclusiveAndReleasedOnClose) {
  fs::path dir = TempDir("lock");
  {
    DirectoryLock a(dir, ".lock", /*exclusive=*/true, "checkpoint directory");
    // flock locks belong to the open file description: a second open in this process conflicts too.
    try {
      DirectoryLock b(dir, ".lock", /*exclusive=*/true, "checkpoint directory");
      FAIL() << "second lock taken";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("in use by another qforge run (pid " + std::to_string(::getpid())),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(DirectoryLock(dir, ".lock", /*exclusive=*/false, "checkpoint directory"), Error);
  }
  DirectoryLock c(dir, ".lock", /*exclusive=*/true, "checkpoint directory");  // released by the destructor
  fs::remove_all(dir);
}

TEST(File, InterruptCleanupRemovesRegisteredTemporaries) {
  fs::path dir = TempDir("cleanup");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AtomicDirectory d(dir / "export");
    WriteFileAtomic(d.path() / "config.json", "{}");
    AtomicFileWriter w(dir / "file");
    w.Write("partial");
    ScopedTemporary spill(dir / "spill.bin");
    WriteFileAtomic(dir / "spill.bin", "x");
    const auto removed = RemoveAllTemporariesForExit();
    ::_exit(removed.size() == 3 ? 0 : 1);  // what the interrupt handler does
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST(Hash, Xxh3IsStableAndStreamsLikeOneShot) {
  EXPECT_EQ(Xxh3Hex(std::string_view("")), "99aa06d3014798d86001c324468d497f");
  Xxh3Hasher h;
  h.Update(std::string_view("hello "));
  h.Update(std::string_view("world"));
  EXPECT_EQ(h.Hex(), Xxh3Hex(std::string_view("hello world")));
  EXPECT_NE(Xxh3Hex(std::string_view("hello world")), Xxh3Hex(std::string_view("hello worle")));
  EXPECT_EQ(HashHex(""), "2d06800538d394c2");  // XXH3-64 of the empty input
}

TEST(Strings, ParseIntIsStrict) {
  EXPECT_EQ(ParseInt("-12"), -12);
  EXPECT_FALSE(ParseInt("12x").has_value());
  EXPECT_FALSE(ParseInt("").has_value());
  EXPECT_EQ(Split("a,b,,c", ',').size(), 4u);
  EXPECT_EQ(Trim("  x \n"), "x");
}

// The test binaries' core: SkylakeX (or its family) on AVX-512, Sandybridge on AVX; never an AVX2 core.
TEST(BlasCore, TestBinariesPinABatchInvariantCore) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Haswell"), "SkylakeX");
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Zen"), "SkylakeX");
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Prescott"), "SkylakeX");
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Cooperlake"), "Cooperlake");
    EXPECT_STREQ(BatchInvariantOpenBlasCore(nullptr), "SkylakeX");
  } else if (__builtin_cpu_supports("avx")) {
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Haswell"), "Sandybridge");
    EXPECT_STREQ(BatchInvariantOpenBlasCore("Sandybridge"), "Sandybridge");
  } else {
    EXPECT_EQ(BatchInvariantOpenBlasCore("Prescott"), nullptr);
  }
#endif
}

}  // namespace
}  // namespace qforge

namespace qforge {
namespace {

// OpenBLAS's Prescott fallback is overridden by what the CPU has, and so are its AVX2 cores on an AVX-512 CPU;
// other cores, and a user's setting, are kept.
TEST(BlasCore, OnlyThePrescottFallbackIsOverriddenAndTheUsersSettingWins) {
  const char* saved = std::getenv("OPENBLAS_CORETYPE");
  const std::string keep = saved != nullptr ? saved : "";
  ::unsetenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(OpenBlasCoreOverride("SkylakeX"), nullptr);
  EXPECT_EQ(OpenBlasCoreOverride("Sandybridge"), nullptr);
  EXPECT_EQ(OpenBlasCoreOverride(nullptr), nullptr);
  const char* o = OpenBlasCoreOverride("Prescott");
  const char* h = OpenBlasCoreOverride("Haswell");
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    EXPECT_STREQ(o, "SkylakeX");
    EXPECT_STREQ(h, "SkylakeX");
    EXPECT_STREQ(OpenBlasCoreOverride("Zen"), "SkylakeX");
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_STREQ(o, "Haswell");
    EXPECT_EQ(h, nullptr);
  } else {
    EXPECT_EQ(o, nullptr);
    EXPECT_EQ(h, nullptr);
  }
#endif
  ::setenv("OPENBLAS_CORETYPE", "Sandybridge", 1);
  EXPECT_EQ(OpenBlasCoreOverride("Prescott"), nullptr);
  if (saved != nullptr) {
    ::setenv("OPENBLAS_CORETYPE", keep.c_str(), 1);
  } else {
    ::unsetenv("OPENBLAS_CORETYPE");
  }
}

}  // namespace
}  // namespace qforge
