// Size limits of config.json (ModelSizeLimits) and the checks that run before anything is allocated from
// them: absurd, wrapping or inconsistent sizes are errors naming the file and key, never a crash, an overflow
// or a billion module records.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/model/model.h"
#include "qforge/model/model_config.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const fs::path kModels = fs::path(QF_SHARED_DIR) / "data" / "models";

json Config(const std::string& model) { return json::parse(ReadFileToString(kModels / model / "config.json")); }

// The message of the Error ParseModelConfig throws for `j` ("" if none).
std::string ParseError(const json& j) {
  try {
    ParseModelConfig(j, "dir/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void ExpectParseError(const json& j, const std::string& key, const std::string& also = "") {
  const std::string e = ParseError(j);
  EXPECT_NE(e.find("dir/config.json"), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << "expected key '" << key << "' in: " << e;
  if (!also.empty()) {
    EXPECT_NE(e.find(also), std::string::npos) << e;
  }
}

TEST(ModelSizeLimits, RealConfigsAreWithinTheLimits) {
  for (const char* m : {"llama-dense-26M", "qwen2moe-25M", "stories260K/hf", "tiny/mixtral", "tiny/qwen3_moe"}) {
    EXPECT_EQ(ParseError(Config(m)), "") << m;
  }
}

TEST(ModelSizeLimits, EachSizeAboveItsLimitNamesTheKey) {
  const json dense = Config("llama-dense-26M");
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size",
                          "max_position_embeddings", "head_dim"}) {
    json j = dense;
    j[key] = int64_t{1} << 40;
    ExpectParseError(j, key);
  }
  json moe = Config("qwen2moe-25M");
  moe["num_experts"] = 1000000000;  // 1e9 experts: refused before any module record exists
  ExpectParseError(moe, "num_experts", "[0, 65536]");
  moe = Config("qwen2moe-25M");
  moe["moe_intermediate_size"] = 0;
  ExpectParseError(moe, "moe_intermediate_size", "positive");
  moe = Config("qwen2moe-25M");
  moe["mlp_only_layers"] = std::vector<int>(100, 0);
  ExpectParseError(moe, "mlp_only_layers");
}

TEST(ModelSizeLimits, IntegersAboveInt64MaxDoNotWrap) {
  json j = Config("llama-dense-26M");
  j["hidden_size"] = uint64_t{18446744073709551615u};  // would be -1 as int64
  ExpectParseError(j, "hidden_size", "2^63");
  j = Config("llama-dense-26M");
  j["num_hidden_layers"] = uint64_t{9223372036854775808u};  // INT64_MIN as int64
  ExpectParseError(j, "num_hidden_layers");
}

TEST(ModelSizeLimits, ProductsAreBoundedBeforeUse) {
  // Each size within its own limit, but vocab x hidden is 2^44 elements in one tensor.
  json j = Config("llama-dense-26M");
  j["vocab_size"] = int64_t{1} << 24;
  j["hidden_size"] = int64_t{1} << 20;
  j["num_attention_heads"] = 1 << 10;
  j["num_key_value_heads"] = 1 << 10;
  j.erase("head_dim");
  ExpectParseError(j, "vocab_size x hidden_size");
  // Experts x intermediate x hidden x layers: fine per tensor, too many parameters in total.
  json moe = Config("qwen2moe-25M");
  moe["num_experts"] = 60000;
  moe["num_hidden_layers"] = 10000;
  moe["moe_intermediate_size"] = 1 << 16;
  moe["hidden_size"] = 1 << 14;
  moe["num_attention_heads"] = 16;
  moe["num_key_value_heads"] = 16;
  ExpectParseError(moe, "parameters", "num_experts");
  // num_attention_heads x head_dim beyond the attention width limit.
  j = Config("llama-dense-26M");
  j["num_attention_heads"] = 1 << 14;
  j["num_key_value_heads"] = 1 << 14;
  j["head_dim"] = 1 << 14;
  ExpectParseError(j, "num_attention_heads", "head_dim");
}

TEST(ModelSizeLimits, ModuleCountIsCheckedAgainstTheCheckpointBeforeModulesAreBuilt) {
  // qwen2moe-25M's weights with a config.json claiming 60000 experts per layer (within the limit): Load must
  // fail on the tensor count at once instead of building 4 x 180000 module records and then failing.
  const fs::path dir = fs::temp_directory_path() / ("qforge_limits_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kModels / "qwen2moe-25M")) {
    if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json") {
      fs::create_symlink(e.path(), dir / e.path().filename());
    }
  }
  json j = Config("qwen2moe-25M");
  j["num_experts"] = 60000;
  WriteFileAtomic(dir / "config.json", j.dump());
  try {
    Model::Load(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("num_experts 60000"), std::string::npos) << m;
    EXPECT_NE(m.find("config.json"), std::string::npos) << m;
    EXPECT_NE(m.find("do not match"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

TEST(ModelSizeLimits, ConfigJsonReadsAreBounded) {
  const fs::path dir = fs::temp_directory_path() / ("qforge_limits_dev_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  // A config.json that is a device: the read stops at kMaxConfigJsonBytes instead of filling memory.
  fs::create_symlink("/dev/zero", dir / "config.json");
  try {
    LoadModelConfig(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds more than"), std::string::npos) << e.what();
  }
  fs::remove(dir / "config.json");
  // Deep nesting is refused by the bounded JSON parser.
  WriteFileAtomic(dir / "config.json", R"({"architectures": )" + std::string(1000, '[') + std::string(1000, ']') + "}");
  try {
    LoadModelConfig(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nest deeper"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qforge
