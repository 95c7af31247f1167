// Model identity and culprit errors on load: model_type / architectures / dtype in config.json, rms_norm_eps,
// non-finite router weights and tokenizer/embedding vocabulary mismatches, each built from a shared model copied
// to a temporary directory and damaged; every shared model and ModelOpt reference export still loads.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"
#include "qforge/model/model.h"
#include "qforge/model/tokenizer.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const fs::path kModels = fs::path(QF_SHARED_DIR) / "data" / "models";

ModelLoadOptions Lazy() {
  ModelLoadOptions o;
  o.load_all_layers = false;
  return o;
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

// A copy of a shared model directory whose config and tensors a test edits.
class DamagedModel : public ::testing::Test {
 protected:
  void Copy(const fs::path& src) {
    dir_ = fs::temp_directory_path() / ("qf_identity_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(src / "config.json", dir_ / "config.json");
    auto f = SafetensorsFile::Open(src / "model.safetensors");
    for (const auto& n : f->names()) tensors_.emplace_back(n, f->Get(n).Clone());
    Write();
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void Write() { WriteSafetensors(dir_ / "model.safetensors", tensors_); }
  void EditConfig(const std::function<void(json&)>& edit) {
    json j = json::parse(ReadFileToString(dir_ / "config.json"));
    edit(j);
    WriteFileAtomic(dir_ / "config.json", j.dump(2));
  }
  Tensor& At(const std::string& name) {
    for (auto& [n, t] : tensors_) {
      if (n == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    static Tensor none;
    return none;
  }
  std::string LoadError(ModelLoadOptions o = {}) {
    try {
      Model::Load(dir_, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

TEST(ModelIdentity, EverySharedModelAndReferenceExportIsConsistent) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::recursive_directory_iterator(kModels)) {
    if (e.path().filename() == "config.json") dirs.push_back(e.path().parent_path());
  }
  for (const auto& e : fs::directory_iterator(fs::path(QF_SOURCE_DIR) / "tests/golden/modelopt_export")) {
    if (fs::exists(e.path() / "config.json")) dirs.push_back(e.path());
  }
  ASSERT_GE(dirs.size(), 15u);
  for (const auto& d : dirs) {
    const json j = json::parse(ReadFileToString(d / "config.json"));
    for (const auto& p : ConfigIdentityProblems(j)) ADD_FAILURE() << d << ": " << p.key << " " << p.message;
    std::vector<std::pair<std::string, DType>> tensors;
    CheckpointTensors ckpt = CheckpointTensors::Open(d);
    for (const auto& n : ckpt.names()) tensors.emplace_back(n, ckpt.Info(n).dtype);
    if (auto p = ConfigDtypeProblem(j, tensors)) ADD_FAILURE() << d << ": " << p->key << " " << p->message;
    if (!j.contains("quantization_config")) {
      EXPECT_NO_THROW(Model::Load(d, Lazy())) << d;
    }
  }
}

TEST_F(DamagedModel, ModelTypeOfAnotherArchitecture) {
  Copy(kModels / "tiny" / "qwen2");
  EditConfig([](json& j) { j["model_type"] = "llama"; });
  const std::string e = LoadError();
  EXPECT_HAS(e, "\"model_type\" \"llama\" does not match architectures[0] \"Qwen2ForCausalLM\"");
  EXPECT_HAS(e, "LlamaForCausalLM");
  EXPECT_HAS(e, "config.json");
  EditConfig([](json& j) { j["model_type"] = "falcon"; });
  EXPECT_HAS(LoadError(), "\"falcon\" does not match");
  EditConfig([](json& j) { j.erase("model_type"); });
  EXPECT_HAS(LoadError(), "\"model_type\" is missing");
}

TEST_F(DamagedModel, UnknownOrDisagreeingDtype) {
  Copy(kModels / "tiny" / "qwen2");
  EditConfig([](json& j) { j["dtype"] = "float33"; });
  EXPECT_HAS(LoadError(), "\"dtype\" \"float33\" is not a dtype of floating weights");
  EditConfig([](json& j) {
    j["dtype"] = "float32";
    j["torch_dtype"] = "bfloat16";
  });
  EXPECT_HAS(LoadError(), "\"torch_dtype\" \"bfloat16\" disagrees with \"dtype\" \"float32\"");
}

TEST_F(DamagedModel, DtypeThatNoWeightHas) {
  Copy(kModels / "tiny" / "qwen2");  // float32 weights
  EditConfig([](json& j) { j["dtype"] = "bfloat16"; });
  const std::string e = LoadError();
  EXPECT_HAS(e, "\"dtype\" is \"bfloat16\" but no floating weight of the checkpoint has that dtype");
  EXPECT_HAS(e, "F32");
  // The same weights stored as bf16 match.
  for (auto& [n, t] : tensors_) {
    if (IsFloat(t.dtype())) t = t.ToF32().FromF32To(DType::kBF16);
  }
  Write();
  EXPECT_EQ(LoadError(), "(no error)");
}

TEST_F(DamagedModel, RmsNormEpsNamesTheKey) {
  Copy(kModels / "tiny" / "qwen2");
  for (double eps : {-1e-6, 0.0}) {
    EditConfig([&](json& j) { j["rms_norm_eps"] = eps; });
    const std::string e = LoadError();
    EXPECT_HAS(e, "\"rms_norm_eps\" must be finite and positive");
    EXPECT_HAS(e, "config.json");
  }
}

TEST_F(DamagedModel, NonFiniteRouterWeightNamesTheRouter) {
  Copy(kModels / "tiny" / "qwen3_moe");
  Tensor& r = At("model.layers.1.mlp.gate.weight");
  ASSERT_EQ(r.dtype(), DType::kF32);
  r.mutable_data<float>()[70] = std::numeric_limits<float>::quiet_NaN();  // row 1, column 6 of [4, 64]
  Write();
  std::string e = LoadError();
  EXPECT_HAS(e, "MoE router weight 'model.layers.1.mlp.gate.weight' in model.safetensors has 1 non-finite value(s) "
                "(first at [1, 6])");
  // Lazily loaded models (layerwise, export) read it through LinearWeight.
  auto m = Model::Load(dir_, Lazy());
  try {
    (void)m->LinearWeight(m->FindModule("model.layers.1.mlp.gate"));
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_HAS(std::string(err.what()), "model.layers.1.mlp.gate.weight");
  }
}

TEST(TokenizerFit, VocabularyMismatchNamesBothFilesAndSizes) {
  const fs::path tok_dir = kModels / "stories260K" / "hf";
  const Tokenizer tok = Tokenizer::FromFile(tok_dir);
  auto same = Model::Load(tok_dir, Lazy());
  EXPECT_NO_THROW(CheckTokenizerFitsModel(tok, tok_dir, *same));
  auto small = Model::Load(kModels / "tiny" / "qwen2", Lazy());  // 256 embedding rows
  ASSERT_GT(tok.vocab_size(), 256u);
  try {
    CheckTokenizerFitsModel(tok, tok_dir, *small);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_HAS(m, (tok_dir / "tokenizer.json").string());
    EXPECT_HAS(m, fmt::format("has {} token ids", tok.vocab_size()));
    EXPECT_HAS(m, "'model.embed_tokens.weight' of " + (kModels / "tiny" / "qwen2").string() + " has 256 rows");
  }
}

}  // namespace
}  // namespace qforge
