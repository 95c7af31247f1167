// `qforge eval`: perplexity of a model on a text file (tokenized with the model's tokenizer) or an ids file,
// by non-overlapping windows (forward/perplexity.h). Ends with `ppl=<value> nll=<value> tokens=<n>`.
#include <cstdio>
#include <optional>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/cli/command.h"
#include "qforge/cli/device.h"
#include "qforge/export/quantized_reader.h"
#include "qforge/forward/fake_quant_hooks.h"
#include "qforge/forward/perplexity.h"
#include "qforge/model/model.h"
#include "qforge/model/tokenizer.h"

namespace qforge::cli {
namespace {

struct EvalArgs {
  std::string model;
  std::string text;
  std::string ids;
  int64_t seq_len = 512;
  int64_t max_tokens = 0;
  int64_t batch_size = 1;
  bool bos = false;
  DeviceArgs device;
};

CommandRegistrar reg(
    "eval", "perplexity by non-overlapping windows on a text or token-id file", [](CLI::App& sub) -> RunFn {
      auto a = std::make_shared<EvalArgs>();
      sub.add_option("--model", a->model, "model directory (config.json, safetensors, tokenizer.json)")->required();
      auto* text = sub.add_option("--text", a->text, "UTF-8 text file, tokenized with the model's tokenizer");
      auto* ids = sub.add_option("--ids", a->ids, "token ids separated by whitespace or commas, used as they are");
      text->excludes(ids);
      sub.add_option("--seq-len", a->seq_len, "inputs per window (positions restart at 0 in each)")
          ->capture_default_str();
      sub.add_option("--max-tokens", a->max_tokens,
                     "predicted tokens to evaluate; 0 (the default) means no limit: every token of the file");
      sub.add_option("--batch-size", a->batch_size, "windows per forward")->capture_default_str();
      sub.add_flag("--bos", a->bos, "prepend the tokenizer's BOS token to --text");
      a->device.Add(sub);
      return [a] {
        QF_CHECK(!a->text.empty() || !a->ids.empty(), "eval needs --text FILE or --ids FILE");
        QF_CHECK(!(a->bos && !a->ids.empty()), "--bos applies to --text only (--ids are used as they are)");
        QF_CHECK(a->seq_len >= 1, "--seq-len must be >= 1, got {}", a->seq_len);
        QF_CHECK(a->batch_size >= 1, "--batch-size must be >= 1, got {}", a->batch_size);
        QF_CHECK(a->max_tokens >= 0, "--max-tokens must be >= 0 (0: no limit), got {}", a->max_tokens);
        std::unique_ptr<Backend> backend = a->device.Create();
        std::vector<int32_t> tokens;
        std::optional<Tokenizer> tok;
        if (!a->ids.empty()) {
          tokens = ReadIdsFile(a->ids);
        } else {
          tok.emplace(Tokenizer::FromFile(a->model));
          tokens = tok->Encode(ReadFileToString(a->text), a->bos);
        }
        LogInfo("{} token ids; loading {}", tokens.size(), a->model);
        // Exported quantized checkpoints run with dequantized weights and runtime-style activation quantization.
        QuantizedModel qm = LoadQuantizedModel(a->model);
        if (qm.config) LogInfo("quantized checkpoint: {}", qm.description);
        if (tok) CheckTokenizerFitsModel(*tok, a->model, *qm.model);
        const int64_t max_pos = qm.model->config().max_position_embeddings;
        if (a->seq_len > max_pos) {
          LogWarning("--seq-len {} is above the model's max_position_embeddings {} (config.json): positions past it "
                     "were never trained, so the perplexity says little about the model", a->seq_len, max_pos);
        }
        PerplexityOptions opts;
        opts.seq_len = a->seq_len;
        opts.max_tokens = a->max_tokens;
        opts.batch_size = a->batch_size;
        ForwardModel fm(*qm.model, *backend);
        std::optional<FakeQuantHooks> hooks;
        if (qm.activations) hooks.emplace(std::move(*qm.activations));
        const PerplexityResult r = EvaluatePerplexity(fm, tokens, opts, hooks ? &*hooks : nullptr);
        std::printf("ppl=%.4f nll=%.6f tokens=%lld\n", r.ppl, r.mean_nll, static_cast<long long>(r.tokens));
        return 0;
      };
    });

}  // namespace
}  // namespace qforge::cli
