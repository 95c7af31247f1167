// `qforge check` on damaged copies of ModelOpt's own exports (tests/golden/modelopt_export): non-finite values
// in any floating tensor, KV-cache scales present in some layers only, and model identity in config.json.
// Also the bit-pattern scan (value_scan.h) on every floating dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "qforge/base/file.h"
#include "qforge/export/check.h"
#include "qforge/export/value_scan.h"
#include "qforge/io/safetensors.h"

namespace qforge::exporter {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
const fs::path kGolden = fs::path(QF_SOURCE_DIR) / "tests" / "golden" / "modelopt_export";

// True iff some finding of `severity` has `rule` and a subject containing `subject`.
bool Has(const CheckReport& r, Severity severity, const std::string& rule, const std::string& subject = "") {
  for (const auto& f : r.findings) {
    if (f.severity == severity && f.rule == rule && f.subject.find(subject) != std::string::npos) return true;
  }
  return false;
}

// A copy of one reference export that a test damages, then checks.
class DamagedExport : public ::testing::Test {
 protected:
  void Copy(const std::string& golden) {
    dir_ = fs::temp_directory_path() / ("qf_check_values_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const auto& e : fs::directory_iterator(kGolden / golden)) {
      if (e.path().extension() != ".txt") fs::copy_file(e.path(), dir_ / e.path().filename());
    }
    auto f = SafetensorsFile::Open(dir_ / "model.safetensors");
    for (const auto& n : f->names()) tensors_.emplace_back(n, f->Get(n).Clone());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  CheckReport Check(CheckOptions o = {}) {
    WriteSafetensors(dir_ / "model.safetensors", tensors_);
    return CheckCheckpoint(dir_, o);
  }
  void Remove(const std::function<bool(const std::string&)>& pred) {
    std::erase_if(tensors_, [&](const auto& p) { return pred(p.first); });
  }
  Tensor& At(const std::string& name) {
    for (auto& [n, t] : tensors_) {
      if (n == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    static Tensor none;
    return none;
  }
  void EditConfig(const std::function<void(json&)>& edit) {
    json j = json::parse(ReadFileToString(dir_ / "config.json"));
    edit(j);
    WriteFileAtomic(dir_ / "config.json", j.dump(2));
  }
  fs::path dir_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

TEST_F(DamagedExport, ReferenceExportPasses) {
  Copy("qwen2_fp8_kv_fp8");
  const CheckReport r = Check();
  EXPECT_TRUE(r.ok()) << r.ToText();
  EXPECT_FALSE(Has(r, Severity::kError, "kv.incomplete"));
}

TEST_F(DamagedExport, NonFiniteUnquantizedTensors) {
  Copy("qwen2_fp8_kv_fp8");
  At("lm_head.weight").mutable_data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  At("model.norm.weight").mutable_data<float>()[0] = std::numeric_limits<float>::infinity();
  const CheckReport r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "tensor.value", "lm_head.weight")) << r.ToText();
  EXPECT_TRUE(Has(r, Severity::kError, "tensor.value", "model.norm.weight")) << r.ToText();
  EXPECT_NE(r.ToText().find("1 of 16384 elements are NaN or infinite (first at flat index 5) in model.safetensors"),
            std::string::npos)
      << r.ToText();
  // Value scanning off: not read.
  CheckOptions o;
  o.scan_values = false;
  EXPECT_FALSE(Has(Check(o), Severity::kError, "tensor.value"));
}

TEST_F(DamagedExport, F16NonFinite) {
  Copy("qwen2_fp8_kv_fp8");
  Tensor& b = At("model.embed_tokens.weight");  // stored as F16 (float32 still names the other weights)
  b = b.FromF32To(DType::kF16);
  static_cast<uint16_t*>(b.mutable_raw())[7] = 0x7C00;  // +inf
  const CheckReport r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "tensor.value", "model.embed_tokens.weight")) << r.ToText();
}

TEST_F(DamagedExport, KvScaleMissingInOneLayerIsAnError) {
  Copy("qwen2_fp8_kv_fp8");
  Remove([](const std::string& n) { return n == "model.layers.1.self_attn.v_proj.v_scale"; });
  const CheckReport r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "kv.incomplete", "model.layers.1.self_attn")) << r.ToText();
  EXPECT_NE(r.ToText().find("has no v_scale"), std::string::npos) << r.ToText();
  EXPECT_FALSE(Has(r, Severity::kError, "kv.incomplete", "model.layers.0.self_attn")) << r.ToText();
}

TEST_F(DamagedExport, KScalesWithoutVScalesAreErrors) {
  Copy("qwen2_fp8_kv_fp8");
  Remove([](const std::string& n) { return n.ends_with(".v_scale"); });
  const CheckReport r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "kv.incomplete", "model.layers.0.self_attn")) << r.ToText();
  EXPECT_TRUE(Has(r, Severity::kError, "kv.incomplete", "model.layers.1.self_attn")) << r.ToText();
}

TEST_F(DamagedExport, NoKvScaleAnywhereStaysAWarning) {
  // ModelOpt's cast KV recipes (use_constant_amax) write no k_scale / v_scale at all (spec §10.2).
  Copy("qwen2_fp8_kv_fp8");
  Remove([](const std::string& n) { return n.ends_with(".k_scale") || n.ends_with(".v_scale"); });
  const CheckReport r = Check();
  EXPECT_TRUE(r.ok()) << r.ToText();
  EXPECT_TRUE(Has(r, Severity::kWarning, "kv.missing")) << r.ToText();
}

TEST_F(DamagedExport, ModelIdentity) {
  Copy("mixtral_fp8_kv_fp8");
  EditConfig([](json& j) { j["model_type"] = "qwen2"; });
  CheckReport r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "config.identity", "config.json:model_type")) << r.ToText();
  EditConfig([](json& j) {
    j["model_type"] = "mixtral";
    j["dtype"] = "bfloat16";  // the unquantized tensors are float32
  });
  r = Check();
  EXPECT_TRUE(Has(r, Severity::kError, "config.identity", "config.json:dtype")) << r.ToText();
  EditConfig([](json& j) { j["dtype"] = "fp32"; });
  EXPECT_TRUE(Has(Check(), Severity::kError, "config.identity", "config.json:dtype"));
  EditConfig([](json& j) {
    j["dtype"] = "float32";
    j.erase("architectures");
  });
  EXPECT_TRUE(Has(Check(), Severity::kError, "config.identity", "config.json:architectures"));
  // An architecture qforge does not run cannot be verified: a warning, not an error.
  EditConfig([](json& j) {
    j["architectures"] = {"DeepseekV3ForCausalLM"};
    j["model_type"] = "deepseek_v3";
  });
  r = Check();
  EXPECT_TRUE(Has(r, Severity::kWarning, "config.identity", "config.json:architectures")) << r.ToText();
  EXPECT_FALSE(Has(r, Severity::kError, "config.identity")) << r.ToText();
}

TEST(ValueScan, EveryFloatingDtype) {
  struct Case {
    DType dtype;
    std::vector<uint8_t> finite, bad;  // one element's bytes (little endian)
  };
  const Case cases[] = {
      {DType::kF32, {0x00, 0x00, 0x7F, 0x7F}, {0x00, 0x00, 0x80, 0xFF}},  // max finite; -inf
      {DType::kF16, {0xFF, 0x7B}, {0x01, 0x7C}},                          // 65504; NaN
      {DType::kBF16, {0x7F, 0x7F}, {0x80, 0x7F}},                         // max finite; +inf
      {DType::kF64, {0, 0, 0, 0, 0, 0, 0xEF, 0x7F}, {0, 0, 0, 0, 0, 0, 0xF8, 0x7F}},
      {DType::kF8E4M3, {0x7E}, {0xFF}},  // 448; NaN
      {DType::kF8E5M2, {0x7B}, {0x7C}},  // 57344; inf
  };
  for (const auto& c : cases) {
    Tensor t = Tensor::Zeros(c.dtype, {4});
    auto* p = static_cast<uint8_t*>(t.mutable_raw());
    const size_t n = c.finite.size();
    for (int i = 0; i < 4; ++i) std::memcpy(p + i * n, c.finite.data(), n);
    EXPECT_EQ(ScanNonFinite(t).count, 0) << DTypeName(c.dtype);
    std::memcpy(p + 2 * n, c.bad.data(), n);
    const NonFiniteScan s = ScanNonFinite(t);
    EXPECT_TRUE(s.scanned);
    EXPECT_EQ(s.count, 1) << DTypeName(c.dtype);
    EXPECT_EQ(s.first, 2) << DTypeName(c.dtype);
  }
  EXPECT_FALSE(ScanNonFinite(Tensor::Zeros(DType::kU8, {4})).scanned);
}

}  // namespace
}  // namespace qforge::exporter
