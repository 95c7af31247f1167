// Calibration data: bounded prefix reads give exactly the samples of whole-file tokenization, and devices,
// FIFOs and pathological files are read only as far as the samples need (or up to the byte cap).
#include "qforge/calib/calib_data.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "qforge/base/error.h"
#include "qforge/base/file.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
const fs::path kShared = QF_SHARED_DIR;

const Tokenizer& LlamaTokenizer() {
  static const Tokenizer tok = Tokenizer::FromFile(kShared / "data/models/llama-dense-26M");
  return tok;
}

std::vector<fs::path> AustenFiles() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kShared / "data/text/janeausten")) {
    if (e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Today's reference: every file tokenized whole, concatenated until `wanted` ids are there, then cut.
CalibData WholeFileReference(const std::vector<fs::path>& files, int64_t num_samples, int64_t seq_len) {
  static std::map<fs::path, std::vector<int32_t>> cache;
  std::vector<int32_t> ids;
  for (const auto& f : files) {
    if (static_cast<int64_t>(ids.size()) >= num_samples * seq_len) break;
    auto it = cache.find(f);
    if (it == cache.end()) it = cache.emplace(f, LlamaTokenizer().Encode(ReadFileToString(f))).first;
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }
  return CutCalibSamples(ids, num_samples, seq_len);
}

TEST(CalibData, PrefixReadsGiveTheSamplesOfWholeFileTokenization) {
  const auto files = AustenFiles();
  ASSERT_EQ(files.size(), 6u);
  CalibReadLimits small;  // small first reads: most calls go through several prefixes
  small.first_chunk = 4096;
  small.margin_tokens = 16;
  CalibReadLimits odd = small;  // chunk ends at odd offsets (inside words, lines, multi-byte characters)
  odd.first_chunk = 5003;
  // (samples, seq_len): within the first file, spanning files, and more than all the text holds.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{32, 512}, {7, 3001}, {1, 250000}, {3, 200000},
                                                           {100000, 512}};
  for (const auto& [n, len] : shapes) {
    const CalibData want = WholeFileReference(files, n, len);
    for (const CalibReadLimits& limits : {CalibReadLimits{}, small, odd}) {
      const CalibData got = BuildCalibData(LlamaTokenizer(), files, n, len, limits);
      ASSERT_EQ(got.samples.size(), want.samples.size()) << n << " x " << len;
      for (size_t i = 0; i < want.samples.size(); ++i) {
        ASSERT_EQ(got.samples[i], want.samples[i]) << "sample " << i << " of " << n << " x " << len
                                                    << " (first_chunk " << limits.first_chunk << ")";
      }
      EXPECT_EQ(got.warnings.size(), want.warnings.size());
    }
  }
}

class CalibFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qforge_calib_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CalibFiles, MultiByteCharactersCutByAReadAreKeptWhole) {
  // Two-, three- and four-byte characters at every offset modulo the chunk size.
  std::string text;
  for (int i = 0; i < 4000; ++i) text += i % 3 == 0 ? "caf\xC3\xA9 " : i % 3 == 1 ? "\xE2\x82\xAC" "5 " : "\xF0\x9F\x98\x80 x ";
  WriteFileAtomic(dir_ / "utf8.txt", text);
  const std::vector<int32_t> whole = LlamaTokenizer().Encode(text);
  ASSERT_GT(whole.size(), 3000u);
  // 500 wanted tokens: the first read is `first_chunk` bytes (above 6 bytes per wanted token), so every
  // boundary below falls at a different place in the characters; later reads grow 1.5x from there.
  for (uint64_t chunk : {4096u, 4097u, 4098u, 4099u}) {
    CalibReadLimits l;
    l.first_chunk = chunk;
    l.margin_tokens = 8;
    const std::vector<int32_t> got = TokenizeCalibFile(LlamaTokenizer(), dir_ / "utf8.txt", 500, l);
    ASSERT_EQ(got.size(), 500u) << chunk;
    const auto diff = std::mismatch(got.begin(), got.end(), whole.begin());
    EXPECT_EQ(diff.first, got.end()) << "first chunk " << chunk << ": ids differ from token "
                                     << (diff.first - got.begin());
  }
}

TEST_F(CalibFiles, FifoIsReadOnlyAsFarAsNeeded) {
  // The writer never closes the FIFO: a reader that waited for end of file would hang here.
  const fs::path fifo = dir_ / "calib.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::signal(SIGPIPE, SIG_IGN);  // the writer learns the reader is gone from EPIPE
  const std::string text = ReadFileToString(kShared / "data/text/janeausten/emma.txt");
  std::thread writer([&] {
    std::FILE* f = std::fopen(fifo.c_str(), "wb");
    if (f == nullptr) return;
    while (std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  });
  const CalibData d = BuildCalibData(LlamaTokenizer(), {fifo}, 64, 512);
  writer.join();
  EXPECT_EQ(d.samples.size(), 64u);
  EXPECT_EQ(d.samples, WholeFileReference({kShared / "data/text/janeausten/emma.txt"}, 64, 512).samples);
}

TEST_F(CalibFiles, DevicesAreBounded) {
  // /dev/zero: NUL characters are valid text; only the wanted tokens are read.
  const std::vector<int32_t> zeros = TokenizeCalibFile(LlamaTokenizer(), "/dev/zero", 1000);
  ASSERT_EQ(zeros.size(), 1000u);
  // /dev/urandom is not UTF-8: an error naming the file, after one bounded read.
  try {
    TokenizeCalibFile(LlamaTokenizer(), "/dev/urandom", 1000);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/urandom"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
  }
  // A text that never settles the wanted tokens within the byte cap is an error, not an endless read.
  CalibReadLimits tight;
  tight.max_bytes_per_token = 1;
  tight.min_byte_cap = 4096;
  try {
    TokenizeCalibFile(LlamaTokenizer(), "/dev/zero", 5000, tight);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not settle 5000 tokens"), std::string::npos) << e.what();
  }
}

TEST(CalibData, TokenCountOverflowIsAnError) {
  const fs::path emma = kShared / "data/text/janeausten/emma.txt";
  EXPECT_THROW(BuildCalibData(LlamaTokenizer(), {emma}, int64_t{1} << 40, int64_t{1} << 40), Error);
  EXPECT_THROW(BuildCalibData(LlamaTokenizer(), {emma}, int64_t{1} << 20, int64_t{1} << 20), Error);
  EXPECT_THROW(BuildCalibData(LlamaTokenizer(), {emma}, 0, 512), Error);
}

}  // namespace
}  // namespace qforge
