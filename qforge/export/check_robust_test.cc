// `qforge check` on hostile input: every damaged file becomes a finding, never an exception or a crash, and
// no finding is rule "internal" (an exception that qforge's own validation should have caught by name).
// Each case starts from a golden ModelOpt export (tests/golden/modelopt_export) and breaks one thing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "qforge/base/file.h"
#include "qforge/export/check.h"

namespace qforge::exporter {
namespace {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;
const fs::path kGolden = fs::path(QF_SOURCE_DIR) / "tests/golden/modelopt_export/qwen2_fp8_kv_fp8";

class CheckRobust : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qforge_check_robust_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"config.json", "hf_quant_config.json", "model.safetensors"}) {
      fs::copy_file(kGolden / f, dir_ / f);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  OJson Read(const char* f) { return OJson::parse(ReadFileToString(dir_ / f)); }
  void Write(const char* f, const std::string& text) {
    fs::remove(dir_ / f);
    std::ofstream(dir_ / f, std::ios::binary) << text;
  }
  // Runs check; it must not throw, must report at least one error mentioning `needle` (rule or message), and
  // must report nothing as "internal".
  void ExpectFinding(const std::string& what, const std::string& needle) {
    CheckReport r;
    ASSERT_NO_THROW(r = CheckCheckpoint(dir_)) << what;
    bool found = false;
    for (const auto& f : r.findings) {
      EXPECT_NE(f.rule, "internal") << what << ": " << f.message;
      if (f.severity == Severity::kError &&
          (f.rule.find(needle) != std::string::npos || f.message.find(needle) != std::string::npos)) {
        found = true;
      }
    }
    EXPECT_TRUE(found) << what << ": no error mentioning '" << needle << "' in\n" << r.ToText();
    EXPECT_NO_THROW(r.ToJson().dump()) << what;
  }
  fs::path dir_;
};

TEST_F(CheckRobust, GoldenIsClean) {
  const CheckReport r = CheckCheckpoint(dir_);
  EXPECT_TRUE(r.ok()) << r.ToText();
}

TEST_F(CheckRobust, WrongJsonTypesAreFindings) {
  OJson c = Read("config.json");
  c["quantization_config"]["quant_method"] = 7;  // value("quant_method", string) used to throw type_error
  Write("config.json", c.dump());
  ExpectFinding("numeric quant_method", "quant_method");

  c = Read("config.json");
  c["tie_word_embeddings"] = "yes";  // value("tie_word_embeddings", false) used to throw type_error
  Write("config.json", c.dump());
  CheckReport r;
  ASSERT_NO_THROW(r = CheckCheckpoint(dir_));
  for (const auto& f : r.findings) EXPECT_NE(f.rule, "internal") << f.message;

  Write("config.json", Read("config.json").dump());
  OJson h = Read("hf_quant_config.json");
  h["quantization"]["quant_algo"] = {{"not", "a string"}};
  h["quantization"]["exclude_modules"] = "lm_head";
  Write("hf_quant_config.json", h.dump());
  ExpectFinding("mistyped hf_quant_config", "quant_algo");
}

TEST_F(CheckRobust, UnparsableAndHostileFilesAreFindings) {
  Write("config.json", std::string(100000, '[') + std::string(100000, ']'));
  ExpectFinding("deeply nested config.json", "nest deeper");
  Write("config.json", "{\"a\": ");
  ExpectFinding("truncated config.json", "config.json");
  fs::remove(dir_ / "config.json");
  fs::copy_file(kGolden / "config.json", dir_ / "config.json");
  Write("hf_quant_config.json", "\xff\xfe garbage");
  ExpectFinding("binary hf_quant_config.json", "hf_quant_config.json");
  fs::remove(dir_ / "hf_quant_config.json");
  fs::copy_file(kGolden / "hf_quant_config.json", dir_ / "hf_quant_config.json");
  // A header promising 2^62 F64 elements in 0 bytes (the product wraps), and a shape entry above INT64_MAX.
  for (const std::string& header :
       {std::string(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
        std::string(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})")}) {
    std::string file(8, '\0');
    for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(header.size() >> (8 * i));
    Write("model.safetensors", file + header);
    ExpectFinding(header, "model.safetensors");
  }
  // config.json as a device: the read is bounded and the result is a finding.
  fs::remove(dir_ / "config.json");
  fs::create_symlink("/dev/zero", dir_ / "config.json");
  ExpectFinding("config.json -> /dev/zero", "holds more than");
}

// std::filesystem::exists throws on a symlink loop (ELOOP); check used to report that as "internal".
TEST_F(CheckRobust, SymlinkLoopsAreFindingsNamingTheFile) {
  for (const char* f : {"config.json", "model.safetensors.index.json", "hf_quant_config.json"}) {
    SetUp();  // fresh copy of the golden
    fs::remove(dir_ / f);
    fs::create_symlink(f, dir_ / f);  // points at itself
    ExpectFinding(std::string("looping ") + f, f);
  }
}

// Fuzzer reproducer (check_fuzzer): a config.json cut inside a string with a stray 0xB1 byte. nlohmann's
// parse error quotes the bytes it read, the finding's message carried them, and `check --json` died in dump()
// with type_error 316.
TEST_F(CheckRobust, FindingsQuotingInvalidUtf8StillSerialise) {
  Write("config.json", "{\"architectures\": [\"Qwen2\xB1\xB1");
  Write("hf_quant_config.json", "{\"quantization\": {\"quant_algo\": \"FP8\xB1\"}}");
  CheckReport r;
  ASSERT_NO_THROW(r = CheckCheckpoint(dir_));
  EXPECT_FALSE(r.ok());
  std::string json;
  ASSERT_NO_THROW(json = r.ToJson().dump());
  EXPECT_NE(json.find("\xEF\xBF\xBD"), std::string::npos) << json;  // the stray bytes became U+FFFD
  for (const auto& f : r.findings) EXPECT_NE(f.rule, "internal") << f.message;
}

}  // namespace
}  // namespace qforge::exporter
