// HuggingFace tokenizer.json BPE tokenizer: loading, the encode pipeline and the decoders.
//
// Each component mirrors the HF tokenizers (Rust) semantics that decide ids: added-token splitting
// (leftmost-longest, lstrip/rstrip/single_word), split behaviors, Metaspace prepend schemes, BPE merge
// order (lowest rank, then left-most) with byte fallback and unk fusing, and empty pieces dropped.
#include "qforge/model/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <unordered_map>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/read_limited.h"
#include "qforge/io/json_limits.h"
#include "qforge/base/strings.h"
#include "qforge/model/tokenizer_text.h"

namespace qforge {
namespace {

using json = nlohmann::json;
using tok::Regex;

// The GPT-2 pre-tokenization regex (ByteLevel with use_regex).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// The Unicode White_Space property (char::is_whitespace), as the inside of a character class.
constexpr std::string_view kWhitespaceClass =
    R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation, join controls.
constexpr std::string_view kRustWordClass = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D})";

// A location inside tokenizer.json for error messages: "<file> at /pre_tokenizer/pretokenizers/1".
struct Where {
  std::string file;
  std::string path;
  Where operator/(std::string_view key) const { return {file, path + "/" + std::string(key)}; }
  Where operator/(size_t index) const { return {file, path + "/" + std::to_string(index)}; }
  std::string str() const { return fmt::format("{} at {}", file, path.empty() ? "/" : path); }
};

const json& Need(const json& obj, const char* key, const Where& w) {
  QF_CHECK(obj.is_object(), "{}: expected a JSON object, got {}", w.str(), obj.type_name());
  auto it = obj.find(key);
  QF_CHECK(it != obj.end(), "{}: missing key \"{}\"", w.str(), key);
  return *it;
}

std::string NeedString(const json& obj, const char* key, const Where& w) {
  const json& v = Need(obj, key, w);
  QF_CHECK(v.is_string(), "{}: \"{}\" must be a string, got {}", (w / key).str(), key, v.type_name());
  return v.get<std::string>();
}

bool OptBool(const json& obj, const char* key, bool def, const Where& w) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  QF_CHECK(it->is_boolean(), "{}: \"{}\" must be true or false, got {}", (w / key).str(), key, it->dump());
  return it->get<bool>();
}

std::string OptString(const json& obj, const char* key, const Where& w) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  QF_CHECK(it->is_string(), "{}: \"{}\" must be a string, got {}", (w / key).str(), key, it->dump());
  return it->get<std::string>();
}

int64_t OptInt(const json& obj, const char* key, int64_t def, const Where& w) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  QF_CHECK(it->is_number_integer(), "{}: \"{}\" must be an integer, got {}", (w / key).str(), key, it->dump());
  return it->get<int64_t>();
}

// A {"String": s} or {"Regex": r} pattern, compiled (String as a literal).
std::shared_ptr<const Regex> ParsePattern(const json& obj, const Where& w) {
  const json& p = Need(obj, "pattern", w);
  const Where pw = w / "pattern";
  QF_CHECK(p.is_object() && p.size() == 1, "{}: pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}, got {}",
           pw.str(), p.dump());
  if (p.contains("String")) {
    QF_CHECK(p["String"].is_string(), "{}: String pattern must be a string", pw.str());
    return Regex::Compile(p["String"].get<std::string>(), /*literal=*/true, pw.str());
  }
  if (p.contains("Regex")) {
    QF_CHECK(p["Regex"].is_string(), "{}: Regex pattern must be a string", pw.str());
    return Regex::Compile(p["Regex"].get<std::string>(), /*literal=*/false, pw.str());
  }
  QF_FAIL("{}: pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", pw.str(), p.dump());
}

std::string ReplaceAll(std::string_view s, const Regex& re, std::string_view content) {
  std::string out;
  size_t prev = 0;
  re.ForEachMatch(s, [&](size_t b, size_t e) {
    out.append(s.substr(prev, b - prev));
    out.append(content);
    prev = e;
  });
  out.append(s.substr(prev));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Normalizers

struct Normalizer {
  enum class Kind { kSequence, kPrepend, kReplace, kStrip, kNfc };
  Kind kind = Kind::kSequence;
  std::vector<Normalizer> children;              // kSequence
  std::string text;                              // kPrepend: prefix; kReplace: content
  std::shared_ptr<const Regex> pattern;          // kReplace
  bool strip_left = false, strip_right = false;  // kStrip
};

Normalizer ParseNormalizer(const json& j, const Where& w) {
  const std::string type = NeedString(j, "type", w);
  Normalizer n;
  if (type == "Sequence") {
    n.kind = Normalizer::Kind::kSequence;
    const json& list = Need(j, "normalizers", w);
    QF_CHECK(list.is_array(), "{}: \"normalizers\" must be an array", (w / "normalizers").str());
    for (size_t i = 0; i < list.size(); ++i) n.children.push_back(ParseNormalizer(list[i], w / "normalizers" / i));
  } else if (type == "Prepend") {
    n.kind = Normalizer::Kind::kPrepend;
    n.text = NeedString(j, "prepend", w);
  } else if (type == "Replace") {
    n.kind = Normalizer::Kind::kReplace;
    n.pattern = ParsePattern(j, w);
    n.text = NeedString(j, "content", w);
  } else if (type == "Strip") {
    n.kind = Normalizer::Kind::kStrip;
    n.strip_left = OptBool(j, "strip_left", false, w);
    n.strip_right = OptBool(j, "strip_right", false, w);
  } else if (type == "NFC") {
    n.kind = Normalizer::Kind::kNfc;
  } else {
    QF_FAIL("{}: unsupported normalizer type \"{}\" (qforge supports Sequence, Prepend, Replace, Strip, NFC)", w.str(),
            type);
  }
  return n;
}

void Normalize(const Normalizer& n, std::string& s) {
  switch (n.kind) {
    case Normalizer::Kind::kSequence:
      for (const Normalizer& c : n.children) Normalize(c, s);
      return;
    case Normalizer::Kind::kPrepend:
      if (!s.empty()) s.insert(0, n.text);
      return;
    case Normalizer::Kind::kReplace:
      s = ReplaceAll(s, *n.pattern, n.text);
      return;
    case Normalizer::Kind::kStrip: {
      size_t b = 0, e = s.size();
      if (n.strip_left) {
        while (b < e && tok::IsUnicodeWhitespace(tok::DecodeUtf8At(s, b))) {
          b += tok::Utf8SeqLen(static_cast<unsigned char>(s[b]));
        }
      }
      if (n.strip_right) {
        while (e > b) {
          size_t p = e - 1;
          while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
          if (!tok::IsUnicodeWhitespace(tok::DecodeUtf8At(s, p))) break;
          e = p;
        }
      }
      s = s.substr(b, e - b);
      return;
    }
    case Normalizer::Kind::kNfc:
      // Every code point below U+0300 is NFC-stable (canonical combining class 0, NFC_Quick_Check=Yes,
      // and no composition starts there with a following starter), so such text is its own NFC.
      for (size_t i = 0; i < s.size(); i += tok::Utf8SeqLen(static_cast<unsigned char>(s[i]))) {
        const char32_t cp = tok::DecodeUtf8At(s, i);
        QF_CHECK(cp < 0x300,
                 "tokenizer normalizer NFC: qforge implements NFC only for text whose code points are all "
                 "below U+0300; found U+{:04X} at byte {} of a normalized piece",
                 static_cast<uint32_t>(cp), i);
      }
      return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizers

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

SplitBehavior ParseBehavior(const json& j, const char* key, SplitBehavior def, const Where& w) {
  const std::string b = OptString(j, key, w);
  if (b.empty()) return def;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  QF_FAIL("{}: unknown split behavior \"{}\" (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)",
          (w / key).str(), b);
}

// A word of the pre-tokenized text. `at_start` is true when it begins at offset 0 of the original input
// (Metaspace's prepend_scheme "first" depends on it).
struct Piece {
  std::string text;
  bool at_start = false;
};

struct PreTokenizer {
  enum class Kind { kSequence, kByteLevel, kSplit, kMetaspace };
  enum class Prepend { kAlways, kFirst, kNever };
  Kind kind = Kind::kSequence;
  std::vector<PreTokenizer> children;                 // kSequence
  bool add_prefix_space = false;                      // kByteLevel
  std::shared_ptr<const Regex> regex;                 // kByteLevel (GPT-2 regex or null), kSplit
  SplitBehavior behavior = SplitBehavior::kIsolated;  // kSplit
  bool invert = false;                                // kSplit
  std::string replacement;                            // kMetaspace (one character)
  std::shared_ptr<const Regex> replacement_re;        // kMetaspace: each replacement character
  Prepend prepend = Prepend::kAlways;                 // kMetaspace
  bool split = true;                                  // kMetaspace
};

PreTokenizer MakeSplit(std::string_view pattern, SplitBehavior behavior, bool invert, const Where& w) {
  PreTokenizer p;
  p.kind = PreTokenizer::Kind::kSplit;
  p.regex = Regex::Compile(pattern, /*literal=*/false, w.str());
  p.behavior = behavior;
  p.invert = invert;
  return p;
}

PreTokenizer ParsePreTokenizer(const json& j, const Where& w) {
  const std::string type = NeedString(j, "type", w);
  PreTokenizer p;
  if (type == "Sequence") {
    const json& list = Need(j, "pretokenizers", w);
    QF_CHECK(list.is_array(), "{}: \"pretokenizers\" must be an array", (w / "pretokenizers").str());
    for (size_t i = 0; i < list.size(); ++i) {
      p.children.push_back(ParsePreTokenizer(list[i], w / "pretokenizers" / i));
    }
  } else if (type == "ByteLevel") {
    p.kind = PreTokenizer::Kind::kByteLevel;
    p.add_prefix_space = OptBool(j, "add_prefix_space", true, w);
    if (OptBool(j, "use_regex", true, w)) p.regex = Regex::Compile(kGpt2Pattern, false, w.str());
  } else if (type == "Split") {
    p.kind = PreTokenizer::Kind::kSplit;
    p.regex = ParsePattern(j, w);
    Need(j, "behavior", w);
    p.behavior = ParseBehavior(j, "behavior", SplitBehavior::kIsolated, w);
    p.invert = OptBool(j, "invert", false, w);
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::Kind::kMetaspace;
    p.replacement = NeedString(j, "replacement", w);
    QF_CHECK(
        !p.replacement.empty() && tok::Utf8SeqLen(static_cast<unsigned char>(p.replacement[0])) == p.replacement.size(),
        "{}: Metaspace replacement must be one character, got \"{}\"", (w / "replacement").str(), p.replacement);
    p.replacement_re = Regex::Compile(p.replacement, /*literal=*/true, w.str());
    const std::string scheme = OptString(j, "prepend_scheme", w);
    if (scheme.empty()) {  // configs older than prepend_scheme
      p.prepend =
          OptBool(j, "add_prefix_space", true, w) ? PreTokenizer::Prepend::kAlways : PreTokenizer::Prepend::kNever;
    } else if (scheme == "always") {
      p.prepend = PreTokenizer::Prepend::kAlways;
    } else if (scheme == "first") {
      p.prepend = PreTokenizer::Prepend::kFirst;
    } else if (scheme == "never") {
      p.prepend = PreTokenizer::Prepend::kNever;
    } else {
      QF_FAIL("{}: unknown prepend_scheme \"{}\" (always, first, never)", (w / "prepend_scheme").str(), scheme);
    }
    p.split = OptBool(j, "split", true, w);
  } else if (type == "Digits") {
    // char::is_numeric per character; runs of digits stay together unless individual_digits.
    const bool individual = OptBool(j, "individual_digits", false, w);
    p = MakeSplit(R"(\p{N})", individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, w);
  } else if (type == "Whitespace") {
    // Rust regex's Unicode \w and \s (UTS#18), spelled out: PCRE2's \w lacks marks and join controls.
    p = MakeSplit(fmt::format("[{0}]+|[^{0}{1}]+", kRustWordClass, kWhitespaceClass), SplitBehavior::kRemoved,
                  /*invert=*/true, w);
  } else if (type == "WhitespaceSplit") {
    p = MakeSplit(fmt::format("[{}]", kWhitespaceClass), SplitBehavior::kRemoved, false, w);
  } else if (type == "Punctuation") {
    p = MakeSplit(R"([\p{P}!-/:-@\[-`{-~])", ParseBehavior(j, "behavior", SplitBehavior::kIsolated, w), false, w);
  } else {
    QF_FAIL(
        "{}: unsupported pre_tokenizer type \"{}\" (qforge supports Sequence, ByteLevel, Split, Metaspace, "
        "Digits, Whitespace, WhitespaceSplit, Punctuation)",
        w.str(), type);
  }
  return p;
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// HF's Pattern::find_matches: the text cut into alternating non-match / match spans covering all of it.
std::vector<Span> FindSpans(std::string_view text, const Regex& re, bool invert) {
  std::vector<Span> spans;
  if (text.empty()) return {{0, 0, invert}};
  size_t prev = 0;
  re.ForEachMatch(text, [&](size_t b, size_t e) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  });
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
  return spans;
}

// HF's SplitDelimiterBehavior applied to the spans; returns the pieces' [begin, end) ranges.
std::vector<std::pair<size_t, size_t>> ApplyBehavior(const std::vector<Span>& spans, SplitBehavior b) {
  std::vector<std::pair<size_t, size_t>> out;
  switch (b) {
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) out.push_back({s.begin, s.end});
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back({s.begin, s.end});
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !prev_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.push_back({s.begin, s.end});
        }
        prev_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& s = spans[k];
        if (s.is_match && !prev_match && !out.empty()) {
          out.back().first = s.begin;
        } else {
          out.push_back({s.begin, s.end});
        }
        prev_match = s.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const Span& s : spans) {
        if (s.is_match == prev_match && !out.empty()) {
          out.back().second = s.end;
        } else {
          out.push_back({s.begin, s.end});
        }
        prev_match = s.is_match;
      }
      break;
    }
  }
  return out;
}

void SplitPieces(std::vector<Piece>& pieces, const Regex& re, SplitBehavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& p : pieces) {
    for (auto [b, e] : ApplyBehavior(FindSpans(p.text, re, invert), behavior)) {
      if (e > b) out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
    }
  }
  pieces.swap(out);
}

void PreTokenize(const PreTokenizer& pt, std::vector<Piece>& pieces) {
  switch (pt.kind) {
    case PreTokenizer::Kind::kSequence:
      for (const PreTokenizer& c : pt.children) PreTokenize(c, pieces);
      return;
    case PreTokenizer::Kind::kByteLevel: {
      if (pt.add_prefix_space) {
        for (Piece& p : pieces) {
          if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
        }
      }
      if (pt.regex) SplitPieces(pieces, *pt.regex, SplitBehavior::kIsolated, false);
      const tok::ByteLevelMap& map = tok::ByteLevelMap::Get();
      for (Piece& p : pieces) {
        std::string mapped;
        mapped.reserve(p.text.size() * 2);
        for (unsigned char c : p.text) mapped += map.byte_to_utf8[c];
        p.text.swap(mapped);
      }
      return;
    }
    case PreTokenizer::Kind::kSplit:
      SplitPieces(pieces, *pt.regex, pt.behavior, pt.invert);
      return;
    case PreTokenizer::Kind::kMetaspace: {
      static const std::shared_ptr<const Regex> kSpace = Regex::Compile(" ", true, "Metaspace");
      for (Piece& p : pieces) {
        p.text = ReplaceAll(p.text, *kSpace, pt.replacement);
        const bool starts = p.text.compare(0, pt.replacement.size(), pt.replacement) == 0;
        if (!starts && (pt.prepend == PreTokenizer::Prepend::kAlways ||
                        (pt.prepend == PreTokenizer::Prepend::kFirst && p.at_start))) {
          p.text.insert(0, pt.replacement);
        }
      }
      if (pt.split) SplitPieces(pieces, *pt.replacement_re, SplitBehavior::kMergedWithNext, false);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// BPE model

struct Merge {
  int32_t rank;
  int32_t new_id;
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct BpeModel {
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, Merge> merges;
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string prefix;     // continuing_subword_prefix
  std::string suffix;     // end_of_word_suffix
  int32_t byte_ids[256];  // vocab id of "<0xXX>", or -1

  int32_t Find(std::string_view s) const {
    auto it = vocab.find(std::string(s));
    return it == vocab.end() ? -1 : it->second;
  }

  // Appends the ids of one pre-tokenized word.
  void Tokenize(std::string_view w, std::vector<int32_t>& out) const;
};

BpeModel ParseBpe(const json& j, const Where& w) {
  auto type_it = j.find("type");
  if (type_it != j.end()) {
    QF_CHECK(type_it->is_string(), "{}: \"type\" must be a string", (w / "type").str());
    QF_CHECK(*type_it == "BPE", "{}: unsupported model type \"{}\" (qforge supports BPE)", w.str(),
             type_it->get<std::string>());
  }
  auto dropout = j.find("dropout");
  QF_CHECK(dropout == j.end() || dropout->is_null() || (dropout->is_number() && dropout->get<double>() == 0.0),
           "{}: BPE dropout {} is random at encode time and is not supported", (w / "dropout").str(),
           dropout == j.end() ? "" : dropout->dump());
  BpeModel m;
  const json& vocab = Need(j, "vocab", w);
  QF_CHECK(vocab.is_object(), "{}: vocab must be an object of token -> id", (w / "vocab").str());
  m.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    QF_CHECK(it->is_number_integer() && it->get<int64_t>() >= 0 && it->get<int64_t>() < (int64_t{1} << 31),
             "{}: id of token \"{}\" must be a non-negative integer, got {}", (w / "vocab").str(), it.key(),
             it->dump());
    m.vocab[it.key()] = it->get<int32_t>();
  }
  m.fuse_unk = OptBool(j, "fuse_unk", false, w);
  m.byte_fallback = OptBool(j, "byte_fallback", false, w);
  m.ignore_merges = OptBool(j, "ignore_merges", false, w);
  m.prefix = OptString(j, "continuing_subword_prefix", w);
  m.suffix = OptString(j, "end_of_word_suffix", w);
  const std::string unk = OptString(j, "unk_token", w);
  if (!unk.empty()) {
    m.unk_id = m.Find(unk);
    QF_CHECK(m.unk_id >= 0, "{}: unk_token \"{}\" is not in the vocab", (w / "unk_token").str(), unk);
  }
  for (int b = 0; b < 256; ++b) m.byte_ids[b] = m.Find(fmt::format("<0x{:02X}>", b));

  const json& merges = Need(j, "merges", w);
  QF_CHECK(merges.is_array(), "{}: merges must be an array", (w / "merges").str());
  m.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& e = merges[r];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      QF_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
               "{}: merge \"{}\" must be two tokens separated by one space", (w / "merges" / r).str(), s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      QF_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
               "{}: merge must be \"a b\" or [\"a\", \"b\"], got {}", (w / "merges" / r).str(), e.dump());
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    const int32_t ia = m.Find(a), ib = m.Find(b);
    QF_CHECK(ia >= 0, "{}: merge token \"{}\" is not in the vocab", (w / "merges" / r).str(), a);
    QF_CHECK(ib >= 0, "{}: merge token \"{}\" is not in the vocab", (w / "merges" / r).str(), b);
    const std::string_view b_tail = (!m.prefix.empty() && b.compare(0, m.prefix.size(), m.prefix) == 0)
                                        ? std::string_view(b).substr(m.prefix.size())
                                        : std::string_view(b);
    const std::string merged = a + std::string(b_tail);
    const int32_t inew = m.Find(merged);
    QF_CHECK(inew >= 0, "{}: merged token \"{}\" is not in the vocab", (w / "merges" / r).str(), merged);
    m.merges[PairKey(ia, ib)] = {static_cast<int32_t>(r), inew};  // a repeated pair keeps its last rank
  }
  return m;
}

void BpeModel::Tokenize(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  if (ignore_merges) {
    const int32_t id = Find(w);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(w.size());
  auto add = [&](int32_t id) {
    const int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, -1, true});
    if (n > 0) sym[n - 1].next = n;
  };
  // Initial symbols: one per character (with subword prefix / suffix), byte fallback, then unk.
  int32_t pending_unk = 0;  // number of unk symbols being fused (0 or 1 when fusing)
  std::string buf;
  for (size_t i = 0; i < w.size();) {
    const size_t len = tok::Utf8SeqLen(static_cast<unsigned char>(w[i]));
    const bool first = i == 0, last = i + len >= w.size();
    std::string_view s = w.substr(i, len);
    if ((!first && !prefix.empty()) || (last && !suffix.empty())) {
      buf.clear();
      if (!first) buf += prefix;
      buf += s;
      if (last) buf += suffix;
      s = buf;
    }
    i += len;
    const int32_t id = Find(s);
    if (id >= 0) {
      if (pending_unk > 0) add(unk_id);
      pending_unk = 0;
      add(id);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids[c] >= 0;
      if (all) {
        for (unsigned char c : s) add(byte_ids[c]);  // HF leaves a pending unk pending here
        continue;
      }
    }
    if (unk_id >= 0) {
      if (pending_unk > 0 && !fuse_unk) add(unk_id);
      pending_unk = 1;
    }
    // Without an unk token, HF drops characters it cannot map.
  }
  if (pending_unk > 0) add(unk_id);

  // Merge: always the pair of lowest rank, the left-most on ties; stale queue entries are skipped.
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push_pair = [&](int32_t pos) {
    const int32_t nxt = sym[pos].next;
    if (nxt < 0) return;
    auto it = merges.find(PairKey(sym[pos].id, sym[nxt].id));
    if (it != merges.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(sym.size()); ++p) push_pair(p);
  while (!queue.empty()) {
    const Cand top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    const int32_t right_pos = left.next;
    auto it = merges.find(PairKey(left.id, sym[right_pos].id));
    if (it == merges.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    sym[right_pos].alive = false;
    left.next = sym[right_pos].next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t p = sym.empty() ? -1 : 0; p >= 0; p = sym[p].next) out.push_back(sym[p].id);
}

// ---------------------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  std::string content;
  // The token's text as IdToToken / Decode see it: HF reports a normalized token in normalized form.
  std::string text;
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
};

// Leftmost-longest matcher over a set of added tokens (HF uses Aho-Corasick with the same semantics).
struct AddedMatcher {
  struct Entry {
    std::string pattern;
    size_t token;  // index into the added-token list
  };
  std::vector<Entry> by_first_byte[256];  // longest first

  void Add(std::string pattern, size_t token) {
    if (pattern.empty()) return;
    auto& list = by_first_byte[static_cast<unsigned char>(pattern[0])];
    list.push_back({std::move(pattern), token});
    std::stable_sort(list.begin(), list.end(),
                     [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
  }
  bool empty() const {
    for (const auto& l : by_first_byte) {
      if (!l.empty()) return false;
    }
    return true;
  }
};

// A segment of the input: text still to tokenize, or an added token's id.
struct Segment {
  std::string text;
  int32_t token_id = -1;
  bool at_start = false;
};

// HF's single_word check uses Rust regex's \w.
bool IsWordChar(char32_t cp) {
  static const std::shared_ptr<const Regex> kWord =
      Regex::Compile(fmt::format("[{}]", kRustWordClass), false, "single_word");
  std::string s;
  tok::AppendUtf8(cp, s);
  return kWord->MatchesAt(s, 0);
}

char32_t LastChar(std::string_view s) {
  size_t p = s.size() - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return tok::DecodeUtf8At(s, p);
}

// HF AddedVocabulary::find_matches on one segment; appends the resulting segments to `out`.
void SplitAdded(const Segment& seg, const AddedMatcher& m, const std::vector<AddedToken>& tokens,
                std::vector<Segment>& out) {
  const std::string_view s = seg.text;
  size_t start_offset = 0;
  auto emit_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back({std::string(s.substr(b, e - b)), -1, seg.at_start && b == 0});
  };
  size_t i = 0;
  while (i < s.size()) {
    const auto& cands = m.by_first_byte[static_cast<unsigned char>(s[i])];
    const AddedMatcher::Entry* hit = nullptr;
    for (const auto& c : cands) {
      if (s.compare(i, c.pattern.size(), c.pattern) == 0) {
        hit = &c;
        break;
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + hit->pattern.size();
    i = stop;
    const AddedToken& t = tokens[hit->token];
    if (start < start_offset) continue;  // overlapped by the previous token's rstrip
    if (t.single_word) {
      const bool start_ok = start == 0 || !IsWordChar(LastChar(s.substr(0, start)));
      const bool stop_ok = stop == s.size() || !IsWordChar(tok::DecodeUtf8At(s, stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t p = ns - 1;
        while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!tok::IsUnicodeWhitespace(tok::DecodeUtf8At(s, p))) break;
        ns = p;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size() && tok::IsUnicodeWhitespace(tok::DecodeUtf8At(s, stop))) {
        stop += tok::Utf8SeqLen(static_cast<unsigned char>(s[stop]));
      }
      i = stop;
    }
    emit_text(start_offset, start);
    out.push_back({std::string(), t.id, false});
    start_offset = stop;
  }
  emit_text(start_offset, s.size());
}

// ---------------------------------------------------------------------------------------------------------
// Decoders

struct Decoder {
  enum class Kind { kSequence, kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip };
  Kind kind = Kind::kSequence;
  std::vector<Decoder> children;         // kSequence
  std::string replacement;               // kMetaspace
  bool metaspace_strip_first = true;     // kMetaspace: prepend_scheme != never
  std::shared_ptr<const Regex> pattern;  // kReplace
  std::string content;                   // kReplace: replacement; kStrip: the character
  size_t strip_start = 0, strip_stop = 0;
};

Decoder ParseDecoder(const json& j, const Where& w) {
  const std::string type = NeedString(j, "type", w);
  Decoder d;
  if (type == "Sequence") {
    const json& list = Need(j, "decoders", w);
    QF_CHECK(list.is_array(), "{}: \"decoders\" must be an array", (w / "decoders").str());
    for (size_t i = 0; i < list.size(); ++i) d.children.push_back(ParseDecoder(list[i], w / "decoders" / i));
  } else if (type == "ByteLevel") {
    d.kind = Decoder::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    d.kind = Decoder::Kind::kMetaspace;
    d.replacement = NeedString(j, "replacement", w);
    const std::string scheme = OptString(j, "prepend_scheme", w);
    d.metaspace_strip_first = scheme.empty() ? OptBool(j, "add_prefix_space", true, w) : scheme != "never";
  } else if (type == "Replace") {
    d.kind = Decoder::Kind::kReplace;
    d.pattern = ParsePattern(j, w);
    d.content = NeedString(j, "content", w);
  } else if (type == "ByteFallback") {
    d.kind = Decoder::Kind::kByteFallback;
  } else if (type == "Fuse") {
    d.kind = Decoder::Kind::kFuse;
  } else if (type == "Strip") {
    d.kind = Decoder::Kind::kStrip;
    d.content = NeedString(j, "content", w);
    QF_CHECK(!d.content.empty() && tok::Utf8SeqLen(static_cast<unsigned char>(d.content[0])) == d.content.size(),
             "{}: Strip content must be one character", (w / "content").str());
    d.strip_start = static_cast<size_t>(OptInt(j, "start", 0, w));
    d.strip_stop = static_cast<size_t>(OptInt(j, "stop", 0, w));
  } else {
    QF_FAIL(
        "{}: unsupported decoder type \"{}\" (qforge supports Sequence, ByteLevel, Metaspace, Replace, "
        "ByteFallback, Fuse, Strip)",
        w.str(), type);
  }
  return d;
}

std::vector<std::string> SplitChars(std::string_view s) {
  std::vector<std::string> chars;
  for (size_t i = 0; i < s.size();) {
    const size_t n = tok::Utf8SeqLen(static_cast<unsigned char>(s[i]));
    chars.emplace_back(s.substr(i, n));
    i += n;
  }
  return chars;
}

// HF Decoder::decode_chain: tokens in, tokens out.
void DecodeChain(const Decoder& d, std::vector<std::string>& tokens) {
  switch (d.kind) {
    case Decoder::Kind::kSequence:
      for (const Decoder& c : d.children) DecodeChain(c, tokens);
      return;
    case Decoder::Kind::kByteLevel: {
      const tok::ByteLevelMap& map = tok::ByteLevelMap::Get();
      std::string bytes;
      for (const std::string& t : tokens) {
        std::string mapped;
        bool ok = true;
        for (size_t i = 0; i < t.size() && ok;) {
          const char32_t cp = tok::DecodeUtf8At(t, i);
          i += tok::Utf8SeqLen(static_cast<unsigned char>(t[i]));
          ok = cp < 0x144 && map.cp_to_byte[cp] >= 0;
          if (ok) mapped.push_back(static_cast<char>(map.cp_to_byte[cp]));
        }
        bytes += ok ? mapped : t;  // a token with an unmapped character passes through as is
      }
      tokens = {tok::Utf8Lossy(bytes)};
      return;
    }
    case Decoder::Kind::kMetaspace: {
      for (size_t i = 0; i < tokens.size(); ++i) {
        std::string out;
        for (const std::string& c : SplitChars(tokens[i])) {
          if (c == d.replacement) {
            if (!(i == 0 && d.metaspace_strip_first)) out += ' ';
          } else {
            out += c;
          }
        }
        tokens[i] = std::move(out);
      }
      return;
    }
    case Decoder::Kind::kReplace:
      for (std::string& t : tokens) t = ReplaceAll(t, *d.pattern, d.content);
      return;
    case Decoder::Kind::kByteFallback: {
      std::vector<std::string> out;
      std::string pending;
      auto flush = [&] {
        if (pending.empty()) return;
        if (tok::FindInvalidUtf8(pending) == std::string_view::npos) {
          out.push_back(pending);
        } else {
          for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
        }
        pending.clear();
      };
      for (std::string& t : tokens) {
        auto hex = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) >= 0 && hex(t[4]) >= 0) {
          pending.push_back(static_cast<char>(hex(t[3]) * 16 + hex(t[4])));
        } else {
          flush();
          out.push_back(std::move(t));
        }
      }
      flush();
      tokens.swap(out);
      return;
    }
    case Decoder::Kind::kFuse: {
      std::string all;
      for (const std::string& t : tokens) all += t;
      tokens = {all};
      return;
    }
    case Decoder::Kind::kStrip:
      for (std::string& t : tokens) {
        const std::vector<std::string> chars = SplitChars(t);
        size_t b = 0, e = chars.size();
        for (size_t k = 0; k < d.strip_start && b < chars.size() && chars[b] == d.content; ++k) ++b;
        for (size_t k = 0; k < d.strip_stop && e > b && chars[e - 1] == d.content; ++k) --e;
        std::string out;
        for (size_t k = b; k < e; ++k) out += chars[k];
        t = std::move(out);
      }
      return;
  }
}

// The ids of the leading special tokens of a TemplateProcessing "single" template (before $A).
std::vector<int32_t> TemplatePrefixIds(const json& j, const Where& w) {
  const std::string type = NeedString(j, "type", w);
  if (type == "Sequence") {
    const json& list = Need(j, "processors", w);
    QF_CHECK(list.is_array(), "{}: \"processors\" must be an array", (w / "processors").str());
    std::vector<int32_t> ids;
    for (size_t i = 0; i < list.size(); ++i) {
      std::vector<int32_t> sub = TemplatePrefixIds(list[i], w / "processors" / i);
      ids.insert(ids.end(), sub.begin(), sub.end());
    }
    return ids;
  }
  if (type == "ByteLevel") return {};
  QF_CHECK(type == "TemplateProcessing",
           "{}: unsupported post_processor type \"{}\" (qforge supports TemplateProcessing, ByteLevel, Sequence)",
           w.str(), type);
  const json& single = Need(j, "single", w);
  const json& specials = Need(j, "special_tokens", w);
  QF_CHECK(single.is_array(), "{}: \"single\" must be an array", (w / "single").str());
  std::vector<int32_t> ids;
  for (size_t i = 0; i < single.size(); ++i) {
    const json& piece = single[i];
    if (!piece.contains("SpecialToken")) break;  // reached $A
    const std::string name = NeedString(piece["SpecialToken"], "id", w / "single" / i / "SpecialToken");
    const Where sw = w / "special_tokens" / name;
    QF_CHECK(specials.contains(name), "{}: template names special token \"{}\" that is not defined", sw.str(), name);
    const json& tid = Need(specials[name], "ids", sw);
    QF_CHECK(tid.is_array(), "{}: \"ids\" must be an array", (sw / "ids").str());
    for (const json& x : tid) {
      QF_CHECK(x.is_number_integer(), "{}: ids must be integers", (sw / "ids").str());
      ids.push_back(x.get<int32_t>());
    }
  }
  return ids;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string name;
  BpeModel model;
  std::optional<Normalizer> normalizer;
  std::optional<PreTokenizer> pre_tokenizer;
  std::optional<Decoder> decoder;
  std::string decoder_error;  // set when the decoder is unsupported: Decode() throws it
  std::vector<AddedToken> added;
  AddedMatcher raw_matcher;         // added tokens with normalized=false, matched on the raw text
  AddedMatcher normalized_matcher;  // normalized=true, matched on normalized text
  std::unordered_map<int32_t, size_t> added_by_id;
  std::vector<const std::string*> id_to_token;  // nullptr for unassigned ids
  int32_t bos = -1, eos = -1;
};

namespace {

int32_t ConfigTokenId(const json& cfg, const char* key, const Tokenizer::Impl& impl, const std::string& cfg_name) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return -1;
  std::string content;
  if (it->is_string()) {
    content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    content = (*it)["content"].get<std::string>();
  } else {
    QF_FAIL("{} at /{}: must be a token string or {{\"content\": ...}}, got {}", cfg_name, key, it->dump());
  }
  for (const AddedToken& t : impl.added) {
    if (t.content == content) return t.id;
  }
  const int32_t id = impl.model.Find(content);
  QF_CHECK(id >= 0, "{} at /{}: token \"{}\" is neither an added token nor in the vocab", cfg_name, key, content);
  return id;
}

}  // namespace

Tokenizer Tokenizer::FromJson(std::string_view text, std::string_view name, std::string_view config_json) {
  auto impl = std::make_shared<Impl>();
  impl->name = std::string(name);
  const Where root{impl->name, ""};
  const json j = ParseJsonBounded<json>(text, impl->name);
  QF_CHECK(j.is_object(), "{}: expected a JSON object at the top level, got {}", impl->name, j.type_name());

  impl->model = ParseBpe(Need(j, "model", root), root / "model");

  if (auto it = j.find("normalizer"); it != j.end() && !it->is_null()) {
    impl->normalizer = ParseNormalizer(*it, root / "normalizer");
  }
  if (auto it = j.find("pre_tokenizer"); it != j.end() && !it->is_null()) {
    impl->pre_tokenizer = ParsePreTokenizer(*it, root / "pre_tokenizer");
  }
  if (auto it = j.find("decoder"); it != j.end() && !it->is_null()) {
    try {
      impl->decoder = ParseDecoder(*it, root / "decoder");
    } catch (const Error& e) {
      impl->decoder_error = e.what();
    }
  }

  if (auto it = j.find("added_tokens"); it != j.end() && !it->is_null()) {
    QF_CHECK(it->is_array(), "{}: \"added_tokens\" must be an array", (root / "added_tokens").str());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const Where w = root / "added_tokens" / i;
      AddedToken a;
      a.content = NeedString(t, "content", w);
      const int64_t id = OptInt(t, "id", -1, w);
      QF_CHECK(id >= 0 && id < (int64_t{1} << 31), "{}: added token \"{}\" needs a non-negative id", w.str(),
               a.content);
      a.id = static_cast<int32_t>(id);
      a.special = OptBool(t, "special", false, w);
      a.lstrip = OptBool(t, "lstrip", false, w);
      a.rstrip = OptBool(t, "rstrip", false, w);
      a.single_word = OptBool(t, "single_word", false, w);
      a.normalized = OptBool(t, "normalized", !a.special, w);
      impl->added.push_back(std::move(a));
    }
  }
  for (size_t i = 0; i < impl->added.size(); ++i) {
    impl->added_by_id[impl->added[i].id] = i;
    AddedToken& a = impl->added[i];
    a.text = a.content;
    if (a.normalized) {
      if (impl->normalizer) Normalize(*impl->normalizer, a.text);
      impl->normalized_matcher.Add(a.text, i);
    } else {
      impl->raw_matcher.Add(a.content, i);
    }
  }

  // id -> token string: added tokens take precedence, as in HF decode. The table is sized by the largest id,
  // so ids must be about as dense as the tokens the file holds (a 100-byte file must not ask for 2^31 slots).
  int32_t max_id = -1;
  for (const auto& [tok, id] : impl->model.vocab) max_id = std::max(max_id, id);
  for (const AddedToken& a : impl->added) max_id = std::max(max_id, a.id);
  const int64_t tokens = static_cast<int64_t>(impl->model.vocab.size() + impl->added.size());
  QF_CHECK(max_id < kMaxTokenizerVocab && max_id < 2 * tokens + 1024,
           "{}: token id {} is too large for a vocabulary of {} tokens (ids must be below {} and at most about "
           "twice the token count)",
           impl->name, max_id, tokens, kMaxTokenizerVocab);
  impl->id_to_token.assign(static_cast<size_t>(max_id + 1), nullptr);
  for (const auto& [tok, id] : impl->model.vocab) impl->id_to_token[id] = &tok;
  for (const AddedToken& a : impl->added) impl->id_to_token[a.id] = &a.text;

  if (auto it = j.find("post_processor"); it != j.end() && !it->is_null()) {
    const std::vector<int32_t> prefix = TemplatePrefixIds(*it, root / "post_processor");
    if (!prefix.empty()) impl->bos = prefix.front();
  }
  if (!config_json.empty()) {
    const std::string cfg_name = (std::filesystem::path(impl->name).parent_path() / "tokenizer_config.json").string();
    const json cfg = ParseJsonBounded<json>(config_json, cfg_name);
    QF_CHECK(cfg.is_object(), "{}: expected a JSON object", cfg_name);
    if (const int32_t b = ConfigTokenId(cfg, "bos_token", *impl, cfg_name); b >= 0) impl->bos = b;
    impl->eos = ConfigTokenId(cfg, "eos_token", *impl, cfg_name);
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::FromFile(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(path)) file = path / "tokenizer.json";
  QF_CHECK(std::filesystem::exists(file), "tokenizer file {} does not exist", file.string());
  const std::string text = ReadFileLimited(file, kMaxTokenizerJsonBytes, "a tokenizer.json");
  const std::filesystem::path cfg = file.parent_path() / "tokenizer_config.json";
  const std::string cfg_text = std::filesystem::exists(cfg)
                                   ? ReadFileLimited(cfg, kMaxTokenizerJsonBytes, "a tokenizer_config.json")
                                   : std::string();
  return FromJson(text, file.string(), cfg_text);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  const Impl& im = *impl_;
  const size_t bad = tok::FindInvalidUtf8(text);
  QF_CHECK(bad == std::string_view::npos,
           "text to tokenize is not valid UTF-8: byte 0x{:02X} at byte offset {} does not start a well-formed "
           "sequence",
           static_cast<unsigned>(static_cast<unsigned char>(text[bad])), bad);
  std::vector<int32_t> ids;
  if (add_bos) {
    QF_CHECK(im.bos >= 0,
             "{}: the tokenizer has no BOS token (no bos_token in tokenizer_config.json and no "
             "leading special token in the post_processor template)",
             im.name);
    ids.push_back(im.bos);
  }
  if (text.empty()) return ids;

  // 1. Added tokens on the raw text, 2. normalize the rest, 3. normalized added tokens.
  std::vector<Segment> segs;
  const Segment whole{std::string(text), -1, true};
  if (im.raw_matcher.empty()) {
    segs.push_back(whole);
  } else {
    SplitAdded(whole, im.raw_matcher, im.added, segs);
  }
  if (im.normalizer) {
    for (Segment& s : segs) {
      if (s.token_id < 0) Normalize(*im.normalizer, s.text);
    }
  }
  if (!im.normalized_matcher.empty()) {
    std::vector<Segment> out;
    for (Segment& s : segs) {
      if (s.token_id >= 0 || s.text.empty()) {
        out.push_back(std::move(s));
      } else {
        SplitAdded(s, im.normalized_matcher, im.added, out);
      }
    }
    segs.swap(out);
  }

  // 4. Pre-tokenize and run BPE on each word (cached per call: words repeat a lot in prose).
  std::unordered_map<std::string, std::pair<size_t, size_t>> cache;  // word -> [begin, end) in `store`
  std::vector<int32_t> store;
  std::vector<Piece> pieces;
  for (const Segment& s : segs) {
    if (s.token_id >= 0) {
      ids.push_back(s.token_id);
      continue;
    }
    if (s.text.empty()) continue;
    pieces.clear();
    pieces.push_back({s.text, s.at_start});
    if (im.pre_tokenizer) PreTokenize(*im.pre_tokenizer, pieces);
    for (const Piece& p : pieces) {
      if (p.text.size() > 256) {
        im.model.Tokenize(p.text, ids);
        continue;
      }
      auto it = cache.find(p.text);
      if (it == cache.end()) {
        const size_t b = store.size();
        im.model.Tokenize(p.text, store);
        it = cache.emplace(p.text, std::make_pair(b, store.size())).first;
      }
      ids.insert(ids.end(), store.begin() + static_cast<ptrdiff_t>(it->second.first),
                 store.begin() + static_cast<ptrdiff_t>(it->second.second));
    }
  }
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  QF_CHECK(im.decoder_error.empty(), "cannot decode: {}", im.decoder_error);
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (skip_special_tokens) {
      auto it = im.added_by_id.find(id);
      if (it != im.added_by_id.end() && im.added[it->second].special) continue;
    }
    tokens.push_back(IdToToken(id));
  }
  if (!im.decoder) return Join(tokens, " ");
  DecodeChain(*im.decoder, tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
size_t Tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

const std::string& Tokenizer::IdToToken(int32_t id) const {
  QF_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->id_to_token.size() && impl_->id_to_token[id] != nullptr,
           "token id {} is not in the vocabulary of {} (size {})", id, impl_->name, impl_->id_to_token.size());
  return *impl_->id_to_token[id];
}

int32_t Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& a : impl_->added) {
    if (a.content == token) return a.id;
  }
  return impl_->model.Find(token);
}

}  // namespace qforge
