// `qforge inspect` text.
#include "qforge/model/inspect.h"

#include <fmt/format.h>

#include <map>

#include "qforge/base/progress.h"

namespace qforge {

std::string DescribeModel(const Model& model) {
  const ModelConfig& c = model.config();
  std::string out;
  auto line = [&](std::string_view key, const std::string& value) { out += fmt::format("{:<22} {}\n", key, value); };
  line("model:", model.dir().string());
  line("architecture:", fmt::format("{} (model_type {})", c.arch->architecture, c.model_type));
  line("parameters:", fmt::format("{} ({})", model.num_parameters(), FormatCount(model.num_parameters())));
  std::string dtypes;
  for (const auto& [dt, n] : model.dtype_histogram()) {
    dtypes += fmt::format("{}{} x{}", dtypes.empty() ? "" : ", ", DTypeName(dt), n);
  }
  line("tensor dtypes:", dtypes + (c.dtype.empty() ? "" : fmt::format(" (config dtype {})", c.dtype)));
  line("layers:", std::to_string(c.num_layers));
  line("hidden size:", std::to_string(c.hidden_size));
  line("attention:", fmt::format("{} heads, {} kv heads, head_dim {}{}{}", c.num_heads, c.num_kv_heads, c.head_dim,
                                 c.qkv_bias ? ", qkv bias" : "", c.arch->qk_norm ? ", q_norm/k_norm" : ""));
  line("vocab size:", std::to_string(c.vocab_size));
  std::string rope = fmt::format("{} (theta {:g}", c.rope.type, c.rope.theta);
  if (c.rope.type != "default") rope += fmt::format(", factor {:g}", c.rope.factor);
  if (c.rope.original_max_position_embeddings > 0) {
    rope += fmt::format(", original_max_position_embeddings {}", c.rope.original_max_position_embeddings);
  }
  line("rope:", rope + ")");
  line("max positions:", std::to_string(c.max_position_embeddings));
  if (c.sliding_window) line("sliding window:", std::to_string(*c.sliding_window));
  line("tied embeddings:", c.tie_word_embeddings ? "yes" : "no");
  if (c.num_experts > 0) {
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) moe_layers += c.IsMoeLayer(l) ? 1 : 0;
    line("experts:",
         fmt::format("{} routed, top-{}, {}, expert intermediate {}{}; {} of {} layers sparse", c.num_experts, c.top_k,
                     c.norm_topk_prob ? "renormalized" : "not renormalized", c.moe_intermediate_size,
                     c.arch->shared_expert
                         ? fmt::format(", shared expert {} + sigmoid gate", c.shared_expert_intermediate_size)
                         : "",
                     moe_layers, c.num_layers));
  } else {
    line("mlp:", fmt::format("gated SiLU, intermediate {}", c.intermediate_size));
  }
  std::map<ModuleKind, int64_t> kinds;
  int64_t quantizers = 0;
  for (const auto& m : model.modules()) {
    ++kinds[m.kind];
    quantizers += static_cast<int64_t>(Traits(m.kind).quantizers.size());
  }
  line("linear modules:", std::to_string(kinds[ModuleKind::kLinear]));
  line("attention modules:", std::to_string(kinds[ModuleKind::kAttention]));
  if (kinds[ModuleKind::kMoeBlock] > 0) line("moe blocks:", std::to_string(kinds[ModuleKind::kMoeBlock]));
  line("embeddings:", std::to_string(kinds[ModuleKind::kEmbedding]));
  line("quantizers:", std::to_string(quantizers));
  return out;
}

}  // namespace qforge
