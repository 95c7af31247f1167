// Random-weight Llama checkpoint writer.
#include "qforge/calib/synthetic_model.h"

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/config/json_util.h"
#include "qforge/io/safetensors.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

int64_t WriteSyntheticLlama(const std::filesystem::path& out_dir, const SyntheticLlamaSpec& s, ReplaceMode replace) {
  QF_CHECK(s.hidden % s.heads == 0 && s.heads % s.kv_heads == 0, "synthetic llama: hidden {} / heads {} / kv {}",
           s.hidden, s.heads, s.kv_heads);
  QF_CHECK(s.dtype == DType::kF32 || s.dtype == DType::kBF16, "synthetic llama: dtype must be F32 or BF16");
  AtomicDirectory out(out_dir, replace);  // built beside out_dir, renamed into place complete
  const std::filesystem::path& dir = out.path();
  const int64_t hd = s.hidden / s.heads;
  config::Json c = config::Json::object();
  c["architectures"] = {"LlamaForCausalLM"};
  c["model_type"] = "llama";
  c["attention_bias"] = false;
  c["mlp_bias"] = false;
  c["head_dim"] = hd;
  c["hidden_act"] = "silu";
  c["hidden_size"] = s.hidden;
  c["intermediate_size"] = s.intermediate;
  c["max_position_embeddings"] = 4096;
  c["num_attention_heads"] = s.heads;
  c["num_hidden_layers"] = s.layers;
  c["num_key_value_heads"] = s.kv_heads;
  c["rms_norm_eps"] = 1e-5;
  c["rope_theta"] = 10000.0;
  c["tie_word_embeddings"] = false;
  c["torch_dtype"] = s.dtype == DType::kBF16 ? "bfloat16" : "float32";
  c["vocab_size"] = s.vocab;
  c["bos_token_id"] = 0;
  c["eos_token_id"] = 0;
  WriteFileAtomic(dir / "config.json", c.dump(2) + "\n");

  std::mt19937_64 rng(s.seed);
  int64_t params = 0;
  auto make = [&](Shape shape, float bound) {
    std::uniform_real_distribution<float> u(-bound, bound);
    Tensor t = Tensor::Zeros(DType::kF32, shape);
    for (float& v : t.mutable_span<float>()) v = bound == 0 ? 1.0f : u(rng);
    params += t.numel();
    return s.dtype == DType::kF32 ? t : t.FromF32To(s.dtype);
  };
  auto lin = [&](int64_t out, int64_t in) { return make({out, in}, 1.0f / std::sqrt(static_cast<float>(in))); };

  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t shard_bytes = 0;
  config::Json weight_map = config::Json::object();
  std::vector<std::string> files;
  auto flush = [&](bool final_shard) {
    (void)final_shard;
    if (shards.back().empty()) return;
    const std::string name = fmt::format("model-{:05d}.safetensors", files.size() + 1);
    for (const auto& [n, t] : shards.back()) weight_map[n] = name;
    WriteSafetensors(dir / name, shards.back(), {{"format", "pt"}});
    files.push_back(name);
    shards.back().clear();
    shard_bytes = 0;
  };
  auto add = [&](std::string name, Tensor t) {
    shard_bytes += t.nbytes();
    shards.back().emplace_back(std::move(name), std::move(t));
    if (s.max_shard_bytes > 0 && shard_bytes >= static_cast<uint64_t>(s.max_shard_bytes)) flush(false);
  };
  add("model.embed_tokens.weight", make({s.vocab, s.hidden}, 1.0f));
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", make({s.hidden}, 0));
    add(p + "post_attention_layernorm.weight", make({s.hidden}, 0));
    add(p + "self_attn.q_proj.weight", lin(s.heads * hd, s.hidden));
    add(p + "self_attn.k_proj.weight", lin(s.kv_heads * hd, s.hidden));
    add(p + "self_attn.v_proj.weight", lin(s.kv_heads * hd, s.hidden));
    add(p + "self_attn.o_proj.weight", lin(s.hidden, s.heads * hd));
    add(p + "mlp.gate_proj.weight", lin(s.intermediate, s.hidden));
    add(p + "mlp.up_proj.weight", lin(s.intermediate, s.hidden));
    add(p + "mlp.down_proj.weight", lin(s.hidden, s.intermediate));
  }
  add("model.norm.weight", make({s.hidden}, 0));
  add("lm_head.weight", lin(s.vocab, s.hidden));
  if (s.max_shard_bytes <= 0) {
    WriteSafetensors(dir / "model.safetensors", shards.back(), {{"format", "pt"}});
  } else {
    flush(true);
    config::Json index = {{"metadata", {{"total_parameters", params}}}, {"weight_map", weight_map}};
    WriteFileAtomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  out.Commit();
  return params;
}

}  // namespace qforge
