// HuggingFace `tokenizer.json` BPE tokenizer: byte-level (GPT-2 / Qwen / Llama-3) and SentencePiece-style
// (Metaspace / "▁", byte fallback: Llama-2 / Mistral), producing the same ids as HF tokenizers.
//
// Pipeline, as HF tokenizers runs it: added tokens are split out of the raw text (non-normalized ones),
// each remaining piece is normalized, normalized added tokens are split out, the pre-tokenizer cuts the
// pieces into words, and the BPE model turns each word into ids. The post-processor's template is not
// applied: the caller decides about BOS (`Encode(text, add_bos)`).
//
// Supported components (anything else is a qforge::Error naming the file and the JSON path):
//   model:          BPE (vocab, merges as "a b" or ["a", "b"], byte_fallback, unk_token, fuse_unk,
//                   continuing_subword_prefix, end_of_word_suffix, ignore_merges; dropout must be null/0)
//   normalizer:     null, Sequence, Prepend, Replace (String or Regex), Strip, NFC (only text whose code
//                   points are all below U+0300, where NFC is the identity; other text is an error)
//   pre_tokenizer:  null, Sequence, ByteLevel (add_prefix_space, use_regex), Split (String or Regex,
//                   all behaviors, invert), Metaspace (replacement, prepend_scheme, split), Digits,
//                   Whitespace, WhitespaceSplit, Punctuation
//   post_processor: null, TemplateProcessing (its leading special token is the BOS), ByteLevel, Sequence
//   decoder:        null, Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip; an unsupported
//                   decoder only makes Decode() throw.
// Regexes run on PCRE2 with UTF + UCP so \p{L}, \p{N}, \s are Unicode classes as in HF's Oniguruma; \w and
// \W are rewritten to Oniguruma's Unicode classes. Word-boundary escapes (\b) keep PCRE2's meaning.
//
// Unicode tables are PCRE2's (Unicode 14 for PCRE2 10.42); HF's crates use other versions, so characters
// assigned or re-categorised since (e.g. U+2E5B, U+0897) can split differently in Punctuation/Whitespace.
//
// Input must be valid UTF-8 (HF tokenizers takes Python str): anything else is an error naming the byte
// offset rather than a silent replacement.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

// Largest tokenizer.json / tokenizer_config.json read (bytes; real ones are up to ~30 MB) and the largest token
// id accepted (16.7 M; the largest released vocabularies have ~1 M).
inline constexpr uint64_t kMaxTokenizerJsonBytes = uint64_t{1} << 30;
inline constexpr int64_t kMaxTokenizerVocab = int64_t{1} << 24;

// Immutable after loading; copies share the loaded tables. Encode / Decode are safe to call from many
// threads at once.
class Tokenizer {
 public:
  // Loads `path`: a model directory holding tokenizer.json (and optionally tokenizer_config.json, which
  // names bos_token / eos_token), or the tokenizer.json file itself. Throws qforge::Error naming the file
  // (missing, not JSON) or the file and JSON path of a malformed or unsupported component.
  static Tokenizer FromFile(const std::filesystem::path& path);
  // Same, from the JSON text of a tokenizer.json; `name` is used in error messages; `config_json`
  // is the text of tokenizer_config.json or empty.
  static Tokenizer FromJson(std::string_view json, std::string_view name, std::string_view config_json = {});

  // Token ids of `text` (UTF-8; invalid UTF-8 throws qforge::Error naming the byte offset). With
  // `add_bos`, bos_id() is prepended (qforge::Error if the tokenizer has none). Thread-safe.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos = false) const;

  // Text of `ids` through the tokenizer's decoder, as HF `decode(ids, skip_special_tokens)`: added tokens
  // go through the decoder like the others (skipped when special and `skip_special_tokens`). Ids out of
  // range are an error. Throws if the tokenizer.json decoder is unsupported. Thread-safe.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // BOS id: tokenizer_config.json's bos_token, else the TemplateProcessing's leading special token; -1 if
  // none. EOS id: tokenizer_config.json's eos_token; -1 if none.
  int32_t bos_id() const;
  int32_t eos_id() const;
  // Largest id in the vocabulary or added tokens, plus one.
  size_t vocab_size() const;
  // The token string of `id` (vocab or added token; a normalized added token in its normalized form, as
  // HF reports it); throws if out of range or unassigned.
  const std::string& IdToToken(int32_t id) const;
  // The id of token string `token`, or -1.
  int32_t TokenToId(std::string_view token) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable after load; shared by copies
};

}  // namespace qforge
