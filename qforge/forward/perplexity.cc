// Windowed perplexity and the ids-file reader.
#include "qforge/forward/perplexity.h"

#include <cmath>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/progress.h"
#include "qforge/base/strings.h"

namespace qforge {

PerplexityResult EvaluatePerplexity(ForwardModel& model, std::span<const int32_t> ids, const PerplexityOptions& options,
                                    ForwardHooks* hooks) {
  const int64_t L = options.seq_len;
  QF_CHECK(L >= 1, "seq_len must be >= 1, got {}", L);
  QF_CHECK(options.batch_size >= 1, "batch_size must be >= 1, got {}", options.batch_size);
  QF_CHECK(options.max_tokens >= 0, "max_tokens must be >= 0, got {}", options.max_tokens);
  QF_CHECK(ids.size() >= 2, "perplexity needs at least 2 token ids, got {}", ids.size());
  int64_t n = static_cast<int64_t>(ids.size()) - 1;
  if (options.max_tokens > 0) {
    QF_CHECK(options.max_tokens <= n, "max_tokens {} exceeds the {} tokens that can be predicted from {} ids",
             options.max_tokens, n, ids.size());
    n = options.max_tokens;
  }
  const int64_t full = n / L;
  const int64_t tail = n % L;
  PerplexityResult r;
  r.windows = full + (tail > 0 ? 1 : 0);
  double sum = 0;
  Progress progress("perplexity", n, "tokens");
  auto run = [&](int64_t first_window, int64_t batch, int64_t len) {
    std::vector<int32_t> in(batch * len), tgt(batch * len);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t start = (first_window + b) * L;
      for (int64_t i = 0; i < len; ++i) {
        in[b * len + i] = ids[start + i];
        tgt[b * len + i] = ids[start + i + 1];
      }
    }
    HiddenStates h = model.Embed(in, batch, len);
    for (int l = 0; l < model.num_layers(); ++l) model.RunLayer(l, h, hooks);
    std::vector<double> nll(batch * len);
    model.TokenNll(h, tgt, nll, hooks);
    for (double v : nll) sum += v;
    if (options.progress) progress.Add(batch * len);
  };
  for (int64_t w = 0; w < full; w += options.batch_size) run(w, std::min(options.batch_size, full - w), L);
  if (tail > 0) run(full, 1, tail);
  if (options.progress) progress.Finish();
  r.tokens = n;
  r.mean_nll = sum / static_cast<double>(n);
  r.ppl = std::exp(r.mean_nll);
  return r;
}

std::vector<int32_t> ReadIdsFile(const std::filesystem::path& path) {
  const std::string text = ReadFileToString(path);
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && text[j] != ',' && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    const std::string_view tok(text.data() + i, j - i);
    const auto v = ParseInt(tok);
    QF_CHECK(v && *v >= 0 && *v <= INT32_MAX, "'{}': \"{}\" (byte {}) is not a token id (a non-negative integer)",
             path.string(), tok, i);
    ids.push_back(static_cast<int32_t>(*v));
    i = j;
  }
  return ids;
}

}  // namespace qforge
