// Perplexity by non-overlapping windows: window k feeds tokens [k·L, k·L + L) and predicts tokens
// [k·L + 1, k·L + L] (positions restart at 0 in every window); the result is the mean NLL over every
// predicted token. This is the method of ../shared/data/models/*/reference.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "qforge/forward/forward_model.h"

namespace qforge {

struct PerplexityOptions {
  int64_t seq_len = 512;   // L: inputs per window
  int64_t max_tokens = 0;  // predicted tokens to evaluate (0 = all: ids.size() - 1); the last window may
                           // be shorter than L
  int64_t batch_size = 1;  // full windows run this many at a time
  bool progress = true;    // report progress (base/progress.h) while running
};

struct PerplexityResult {
  double mean_nll = 0;  // nats per predicted token
  double ppl = 0;       // exp(mean_nll)
  int64_t tokens = 0;   // predicted tokens
  int64_t windows = 0;
};

// Evaluates `model` on `ids` (at least 2). Throws qforge::Error for bad options or ids outside the vocab.
PerplexityResult EvaluatePerplexity(ForwardModel& model, std::span<const int32_t> ids, const PerplexityOptions& options,
                                    ForwardHooks* hooks = nullptr);

// Reads token ids separated by whitespace and/or commas. Throws naming the file and the offending token.
std::vector<int32_t> ReadIdsFile(const std::filesystem::path& path);

}  // namespace qforge
