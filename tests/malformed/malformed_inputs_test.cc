// The malformed-input catalogue: every class of bad input qforge has been hardened against (data safety,
// crashes and hangs, unbounded allocations, silent wrong results, bad flags), built at test time from the
// shared models, run through the real `qforge` binary. Each case must end with exit status 1 (or the
// documented status) and an error naming the culprit: never a signal, never a hang, never exit 0 on a bad
// input, and never a change to the input files.
//
// Cases that need a process to die at a precise point (SIGKILL during a replace, SIGINT cleanup, the lock of a
// running checkpoint) live in tests/e2e/data_safety_test.sh and tests/e2e/layerwise_kill_test.sh.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

const fs::path kShared = QF_SHARED_DIR;
const fs::path kStories = kShared / "data/models/stories260K/hf";  // f32, tied, has tokenizer.json
const fs::path kLlama = kShared / "data/models/llama-dense-26M";    // bf16, untied lm_head, 4 shards
const fs::path kText = kShared / "data/text/janeausten/emma.txt";

struct CliResult {
  int exit_code = -1;   // -1 if killed by a signal or timed out
  int signal = 0;       // the signal that ended it, 0 if none
  bool timed_out = false;
  std::string output;   // stdout + stderr
};

// Runs `qforge args...` with a wall-clock limit; output captured through a file.
CliResult RunQforge(const std::vector<std::string>& args, const fs::path& log, int timeout_s = 120) {
  CliResult r;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    std::string bin = QF_QFORGE_BIN;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::setenv("QF_PROGRESS", "0", 1);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (!r.timed_out && WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  std::ifstream in(log);
  r.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

class Malformed : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "qf_malformed.XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A private copy of a shared model, to damage.
  fs::path CopyModel(const fs::path& src, const std::string& name) {
    const fs::path d = dir_ / name;
    fs::copy(src, d, fs::copy_options::recursive);
    return d;
  }
  json ReadJson(const fs::path& p) { return json::parse(ReadFileToString(p)); }
  void WriteJson(const fs::path& p, const json& j) { WriteFileAtomic(p, j.dump(2)); }
  // Rewrites one tensor of a model's safetensors file (every other tensor kept).
  void EditTensor(const fs::path& file, const std::string& name, const std::function<void(Tensor&)>& edit) {
    auto f = SafetensorsFile::Open(file);
    std::vector<std::pair<std::string, Tensor>> ts;
    for (const auto& n : f->names()) {
      Tensor t = f->Get(n).Clone();
      if (n == name) edit(t);
      ts.emplace_back(n, std::move(t));
    }
    f.reset();
    WriteSafetensors(file, ts);
  }
  // Expects a clean failure: exit status `code`, no signal, no hang, and every `needles` in the output.
  void ExpectError(const std::vector<std::string>& args, const std::vector<std::string>& needles, int code = 1,
                   int timeout_s = 120) {
    const CliResult r = RunQforge(args, dir_ / "log.txt", timeout_s);
    EXPECT_FALSE(r.timed_out) << "hung: " << testing::PrintToString(args);
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << ": " << r.output;
    EXPECT_EQ(r.exit_code, code) << r.output;
    for (const auto& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << "missing '" << n << "' in:\n" << r.output;
  }
  std::vector<std::string> QuantizeArgs(const fs::path& model, const fs::path& out) {
    return {"quantize", "--model", model.string(), "--qformat", "fp8", "--calib", kText.string(), "--calib-size", "2",
            "--calib-seq-len", "32", "--export", out.string(), "--no-progress"};
  }
  fs::path dir_;
};

std::vector<std::string> With(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// ---- Devices ---------------------------------------------------------------------------------------------------

// Device flags fail before any work, naming the flag; a CPU build says how to get a CUDA one. The export
// directory is never created.
TEST_F(Malformed, DeviceFlagsFailCleanlyBeforeWork) {
  const fs::path out = dir_ / "never";
  ExpectError(With(QuantizeArgs(kLlama, out), {"--device", "tpu"}), {"--device 'tpu': unknown backend"});
  ExpectError(With(QuantizeArgs(kLlama, out), {"--device", "cuda:x"}), {"expected cuda or cuda:N"});
  ExpectError(With(QuantizeArgs(kLlama, out), {"--compute-dtype", "fp16"}), {"--compute-dtype 'fp16': expected f32 or bf16"});
  ExpectError(With(QuantizeArgs(kLlama, out), {"--compute-dtype", "bf16"}), {"the CPU backend computes in f32 only"});
  const CliResult r = RunQforge(With(QuantizeArgs(kLlama, out), {"--device", "cuda"}), dir_ / "log.txt");
  if (r.exit_code != 0) {  // a CPU build, or no usable GPU here
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(r.output.find("built without CUDA") != std::string::npos || r.output.find("GPU") != std::string::npos ||
                r.output.find("driver") != std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
  ExpectError({"eval", "--model", kLlama.string(), "--ids", kLlama.string() + "/config.json", "--device", "tpu"},
              {"unknown backend"});
  EXPECT_FALSE(fs::exists(out));
}

// ---- Data safety ---------------------------------------------------------------------------------------------

TEST_F(Malformed, ExportOverExistingDirectoryNeedsOverwrite) {
  fs::create_directories(dir_ / "out");
  WriteFileAtomic(dir_ / "out" / "config.json", "{}");
  ExpectError(QuantizeArgs(kStories, dir_ / "out"), {"already exists and is not empty", "--overwrite"});
  EXPECT_EQ(ReadFileToString(dir_ / "out" / "config.json"), "{}");
}

TEST_F(Malformed, ExportOntoTheModelOrItsParentIsAlwaysRefused) {
  const fs::path m = CopyModel(kStories, "m");
  const std::string before = ReadFileToString(m / "model.safetensors");
  ExpectError(With(QuantizeArgs(m, m), {"--overwrite"}), {"which this run reads"});
  ExpectError(With(QuantizeArgs(m, dir_), {"--overwrite"}), {"contains"});
  EXPECT_EQ(ReadFileToString(m / "model.safetensors"), before);
}

TEST_F(Malformed, OverwriteNeverReplacesANonExport) {
  fs::create_directories(dir_ / "notes");
  WriteFileAtomic(dir_ / "notes" / "todo.txt", "keep");
  ExpectError(With(QuantizeArgs(kStories, dir_ / "notes"), {"--overwrite"}), {"not a qforge/HF export"});
  EXPECT_EQ(ReadFileToString(dir_ / "notes" / "todo.txt"), "keep");
}

TEST_F(Malformed, CheckpointDirOfForeignFilesIsRefusedEvenWithRestart) {
  fs::create_directories(dir_ / "ck");
  WriteFileAtomic(dir_ / "ck" / "config.json", "mine");
  ExpectError(With(QuantizeArgs(kStories, dir_ / "out"), {"--layerwise", "--checkpoint-dir", (dir_ / "ck").string(),
                                                          "--restart"}),
              {"not a qforge layerwise checkpoint"});
  EXPECT_EQ(ReadFileToString(dir_ / "ck" / "config.json"), "mine");
}

TEST_F(Malformed, PackOutputOverItsInputIsRefused) {
  const fs::path m = CopyModel(kStories, "m");
  const fs::path in = m / "model.safetensors";
  ExpectError({"qdq", "--cfg", R"({"num_bits": [4, 3]})", in.string(), in.string(), "--overwrite"},
              {"which this run reads"});
  ExpectError({"pack", "--format", "fp8", in.string(), (m / "config.json").string()}, {"already exists"});
}

// ---- No crash, no hang, no unbounded allocation --------------------------------------------------------------

TEST_F(Malformed, TruncatedShardIsAnErrorNamingTheFile) {
  const fs::path m = CopyModel(kStories, "m");
  const std::string bytes = ReadFileToString(m / "model.safetensors");
  WriteFileAtomic(m / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  ExpectError(QuantizeArgs(m, dir_ / "out"), {"model.safetensors", "truncated"});
  ExpectError({"check", m.string()}, {"truncated"});
}

TEST_F(Malformed, SafetensorsHeaderSizesThatWouldWrapAreRefused) {
  const fs::path m = CopyModel(kStories, "m");
  // A tensor whose shape x 4 bytes wraps 64 bits to a small number.
  json h = {{"w", {{"dtype", "F32"}, {"shape", {uint64_t{1} << 62, 4}}, {"data_offsets", {0, 0}}}}};
  std::string hs = h.dump();
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>((hs.size() >> (8 * i)) & 0xFF);
  WriteFileAtomic(m / "model.safetensors", file + hs);
  ExpectError({"inspect", "--model", m.string()}, {"model.safetensors", "'w'"});
  // A header length of 2^64 - 1.
  WriteFileAtomic(m / "model.safetensors", std::string(8, '\xff') + "{}");
  ExpectError({"inspect", "--model", m.string()}, {"header length"});
}

TEST_F(Malformed, AbsurdConfigSizesAreRefusedBeforeAllocating) {
  const fs::path m = CopyModel(kStories, "m");
  for (const char* key : {"hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "head_dim"}) {
    json c = ReadJson(kStories / "config.json");
    c[key] = int64_t{1} << 40;
    WriteJson(m / "config.json", c);
    ExpectError({"inspect", "--model", m.string()}, {"config.json", key});
  }
  json c = ReadJson(kStories / "config.json");
  c["rms_norm_eps"] = -1e-5;
  WriteJson(m / "config.json", c);
  ExpectError({"inspect", "--model", m.string()}, {"rms_norm_eps"});
}

TEST_F(Malformed, DeeplyNestedJsonIsAnErrorNotAStackOverflow) {
  const fs::path m = CopyModel(kStories, "m");
  std::string deep = R"({"architectures": ["LlamaForCausalLM"], "x": )" + std::string(200000, '[') +
                     std::string(200000, ']') + "}";
  WriteFileAtomic(m / "config.json", deep);
  ExpectError({"inspect", "--model", m.string()}, {"config.json"});
  ExpectError({"check", m.string()}, {"config.json"});
}

TEST_F(Malformed, YamlAliasBombAndDeepNestingAreBounded) {
  std::string bomb = "# modelopt-schema: modelopt.torch.quantization.config.QuantizeConfig\na: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 12; ++i) {
    bomb += fmt::format("{}: &{} [", static_cast<char>('a' + i), static_cast<char>('a' + i));
    for (int k = 0; k < 10; ++k) bomb += fmt::format("{}*{}", k ? ", " : "", static_cast<char>('a' + i - 1));
    bomb += "]\n";
  }
  WriteFileAtomic(dir_ / "bomb.yaml", bomb);
  ExpectError({"recipe", "check", (dir_ / "bomb.yaml").string()}, {"bomb.yaml"}, 1, 60);
  WriteFileAtomic(dir_ / "deep.yaml", std::string(100000, '[') + std::string(100000, ']') + "\n");
  ExpectError({"recipe", "check", (dir_ / "deep.yaml").string()}, {"deep.yaml"}, 1, 60);
}

TEST_F(Malformed, CalibrationFromADeviceOrFifoReadsOnlyWhatItNeeds) {
  const fs::path m = kStories;
  // /dev/zero never ends: the run must finish (or fail cleanly) without reading it all.
  const CliResult z = RunQforge({"quantize", "--model", m.string(), "--qformat", "fp8", "--calib", "/dev/zero",
                                 "--calib-size", "2", "--calib-seq-len", "32", "--export", (dir_ / "z").string(),
                                 "--no-progress"},
                                dir_ / "z.log", 120);
  EXPECT_FALSE(z.timed_out);
  EXPECT_EQ(z.signal, 0) << z.output;
  EXPECT_TRUE(z.exit_code == 0 || z.exit_code == 1) << z.output;
  // A FIFO fed forever by a writer.
  const fs::path fifo = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const pid_t writer = ::fork();
  if (writer == 0) {
    ::signal(SIGPIPE, SIG_DFL);
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    const std::string text = ReadFileToString(kText);
    while (true) {
      if (::write(fd, text.data(), text.size()) < 0) ::_exit(0);
    }
  }
  const CliResult f = RunQforge({"quantize", "--model", m.string(), "--qformat", "fp8", "--calib", fifo.string(),
                                 "--calib-size", "2", "--calib-seq-len", "32", "--export", (dir_ / "f").string(),
                                 "--no-progress"},
                                dir_ / "f.log", 120);
  ::kill(writer, SIGKILL);
  ::waitpid(writer, nullptr, 0);
  EXPECT_FALSE(f.timed_out);
  EXPECT_EQ(f.exit_code, 0) << f.output;
}

TEST_F(Malformed, CheckSurvivesMistypedConfigs) {
  const fs::path m = CopyModel(kStories, "m");
  json c = ReadJson(kStories / "config.json");
  c["tie_word_embeddings"] = "yes";
  c["quantization_config"] = {{"quant_method", 7}, {"quant_algo", {1, 2}}, {"exclude_modules", "lm_head"}};
  WriteJson(m / "config.json", c);
  WriteFileAtomic(m / "hf_quant_config.json", R"({"producer": 3, "quantization": []})");
  ExpectError({"check", m.string()}, {"FAIL"});
  WriteFileAtomic(m / "hf_quant_config.json", "[[[[");
  ExpectError({"check", m.string()}, {"FAIL"});
}

TEST_F(Malformed, BrokenTokenizerIsAnErrorNamingTheFile) {
  const fs::path m = CopyModel(kStories, "m");
  WriteFileAtomic(m / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": "b"}, "merges": 5}})");
  ExpectError(QuantizeArgs(m, dir_ / "out"), {"tokenizer.json"});
}

// ---- Never a silent wrong result -------------------------------------------------------------------------------

TEST_F(Malformed, NonFiniteValuesInCopiedTensorsAreErrors) {
  const fs::path m = CopyModel(kStories, "m");
  EditTensor(m / "model.safetensors", "model.norm.weight",
             [](Tensor& t) { t.mutable_span<float>()[3] = std::numeric_limits<float>::quiet_NaN(); });
  ExpectError(QuantizeArgs(m, dir_ / "out"), {"model.norm.weight"});
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(Malformed, ModelIdentityMismatchIsAnError) {
  const fs::path m = CopyModel(kStories, "m");
  json c = ReadJson(kStories / "config.json");
  c["model_type"] = "qwen2";
  WriteJson(m / "config.json", c);
  ExpectError({"inspect", "--model", m.string()}, {"model_type"});
  c = ReadJson(kStories / "config.json");
  c["torch_dtype"] = "float33";
  WriteJson(m / "config.json", c);
  ExpectError({"inspect", "--model", m.string()}, {"float33"});
}

TEST_F(Malformed, UnexportableSpecIsRefusedAtPlanTime) {
  // E2M1 with E8M0 scales at block 16: no export format (MX needs 32).
  WriteFileAtomic(dir_ / "r.yaml", R"(# modelopt-schema: modelopt.recipe.config.ModelOptPTQRecipe
metadata:
  recipe_type: ptq
  description: mxfp4 at block 16
quantize:
  algorithm: max
  quant_cfg:
    - quantizer_name: '*'
      enable: false
    - quantizer_name: '*weight_quantizer'
      cfg:
        num_bits: e2m1
        block_sizes: {-1: 16, type: dynamic, scale_bits: e8m0}
)");
  ExpectError({"plan", "--model", kStories.string(), "--recipe", (dir_ / "r.yaml").string()}, {"weight_quantizer"});
}

TEST_F(Malformed, RecipeThatQuantizesNothingIsAnError) {
  WriteFileAtomic(dir_ / "r.yaml", R"(# modelopt-schema: modelopt.recipe.config.ModelOptPTQRecipe
metadata:
  recipe_type: ptq
  description: nothing
quantize:
  algorithm: max
  quant_cfg:
    - quantizer_name: '*'
      enable: false
)");
  std::vector<std::string> a = {"quantize", "--model", kStories.string(), "--recipe", (dir_ / "r.yaml").string(),
                                "--calib", kText.string(), "--export", (dir_ / "out").string(), "--no-progress"};
  ExpectError(a, {"no quantizer"});
}

TEST_F(Malformed, BadFlagsAreRefused) {
  auto base = QuantizeArgs(kStories, dir_ / "out");
  std::vector<std::string> q = {"quantize", "--model", kStories.string(), "--qformat", "", "--calib", kText.string(),
                                "--export", (dir_ / "out").string()};
  ExpectError(q, {"--qformat"});
  ExpectError(With(base, {"--batch-size", "0"}), {"--batch-size"});
  ExpectError(With(base, {"--max-shard-size", "0"}), {"--max-shard-size"});
  ExpectError(With(base, {"--max-shard-size", "1e9"}), {"--max-shard-size"});
  ExpectError({"eval", "--model", kStories.string(), "--text", kText.string(), "--batch-size", "0"}, {"--batch-size"});
}

TEST_F(Malformed, NonQuantizationRecipesAreRefusedByType) {
  WriteFileAtomic(dir_ / "spec.yaml", R"(# modelopt-schema: modelopt.recipe.config.ModelOptPTQRecipe
metadata:
  recipe_type: speculative_eagle
  description: not quantization
)");
  ExpectError({"plan", "--model", kStories.string(), "--recipe", (dir_ / "spec.yaml").string()}, {"speculative_eagle"});
}

}  // namespace
}  // namespace qforge
