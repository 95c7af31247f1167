// `qforge synth-model`: writes a random-weight Llama checkpoint at chosen shapes (benchmarks, tests).
// Wiring only: calib/synthetic_model does the work.
#include <cstdio>
#include <filesystem>
#include <string>

#include "qforge/base/file.h"
#include "qforge/calib/synthetic_model.h"
#include "qforge/cli/command.h"

namespace qforge::cli {
namespace {

CommandRegistrar reg("synth-model", "write a random-weight Llama checkpoint (benchmarks, tests)",
                     [](CLI::App& sub) -> RunFn {
                       auto out = std::make_shared<std::string>();
                       auto s = std::make_shared<SyntheticLlamaSpec>();
                       auto f32 = std::make_shared<bool>(false);
                       auto shard_mb = std::make_shared<int64_t>(0);
                       auto overwrite = std::make_shared<bool>(false);
                       sub.add_option("--out", *out, "output directory")->required();
                       sub.add_option("--hidden", s->hidden, "hidden size")->capture_default_str();
                       sub.add_option("--layers", s->layers, "decoder layers")->capture_default_str();
                       sub.add_option("--intermediate", s->intermediate, "MLP size")->capture_default_str();
                       sub.add_option("--heads", s->heads, "attention heads")->capture_default_str();
                       sub.add_option("--kv-heads", s->kv_heads, "key/value heads")->capture_default_str();
                       sub.add_option("--vocab", s->vocab, "vocabulary size")->capture_default_str();
                       sub.add_option("--seed", s->seed, "random seed")->capture_default_str();
                       sub.add_option("--shard-mb", *shard_mb, "shard size in MiB (0: one file)")->capture_default_str();
                       sub.add_flag("--f32", *f32, "store f32 weights (default bf16)");
                       sub.add_flag("--overwrite", *overwrite, "replace an existing model directory at --out");
                       return [out, s, f32, shard_mb, overwrite] {
                         const ReplaceMode replace = CheckOutputDirectory(*out, "--out", *overwrite, {});
                         SyntheticLlamaSpec spec = *s;
                         spec.dtype = *f32 ? DType::kF32 : DType::kBF16;
                         spec.max_shard_bytes = *shard_mb << 20;
                         const int64_t n = WriteSyntheticLlama(*out, spec, replace);
                         std::printf("wrote %s: %lld parameters\n", out->c_str(), static_cast<long long>(n));
                         return 0;
                       };
                     });

}  // namespace
}  // namespace qforge::cli
