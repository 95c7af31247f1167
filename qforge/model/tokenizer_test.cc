// Tests for the tokenizer.json BPE tokenizer: exact ids against the shared references (stories260K .ids
// files, reference.json persuasion_first32_ids) and against HF tokenizers goldens (tests/golden/tokenizer,
// written by tools/make_tokenizer_goldens.py), decoding, and errors on bad files and input.
#include "qforge/model/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/base/file.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path SharedDir() {
  const char* env = std::getenv("QF_SHARED_DIR");
  return fs::path(env != nullptr && *env != '\0' ? env : QF_SHARED_DIR);
}
fs::path Models() { return SharedDir() / "data" / "models"; }
fs::path Texts() { return SharedDir() / "data" / "text"; }
fs::path GoldenDir() { return fs::path(QF_SOURCE_DIR) / "tests" / "golden" / "tokenizer"; }

std::vector<int32_t> ReadIds(const fs::path& path) {
  std::istringstream in(ReadFileToString(path));
  std::vector<int32_t> ids;
  int32_t v;
  while (in >> v) ids.push_back(v);
  return ids;
}

std::vector<int32_t> Prefix(const std::vector<int32_t>& ids, size_t n) {
  return std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(std::min(n, ids.size())));
}

std::string LfToCrlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

std::string JoinIds(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::string Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

// A temporary directory removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / fmt::format("qf_tok_test_{}_{}", ::getpid(), counter()++);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  fs::path Write(const std::string& name, std::string_view content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ---------------------------------------------------------------------------------------------------------
// Ground truth shipped with the shared models.

TEST(TokenizerReference, Stories260KPridePrejudiceFirst2049) {
  const Tokenizer t = Tokenizer::FromFile(Models() / "stories260K" / "hf");
  const std::vector<int32_t> ref = ReadIds(Models() / "stories260K" / "reference" / "prideprejudice_first2049.ids");
  ASSERT_EQ(ref.size(), 2049u);
  ASSERT_EQ(ref[0], 1);  // the reference starts with BOS
  const std::vector<int32_t> ids = t.Encode(ReadFileToString(Texts() / "janeausten" / "prideprejudice.txt"), true);
  EXPECT_EQ(Prefix(ids, ref.size()), ref);
}

// The wikitext2 reference was tokenized from the CRLF form of wiki.test.txt (its ids hold <0x0D> before
// each newline); the shared file has LF line endings, so the test converts it.
TEST(TokenizerReference, Stories260KWikitext2TestFirst2049FromCrlfText) {
  const Tokenizer t = Tokenizer::FromFile(Models() / "stories260K" / "hf");
  const std::vector<int32_t> ref = ReadIds(Models() / "stories260K" / "reference" / "wikitext2test_first2049.ids");
  ASSERT_EQ(ref.size(), 2049u);
  const std::string text = ReadFileToString(Texts() / "wikitext2" / "wiki.test.txt");
  EXPECT_EQ(Prefix(t.Encode(LfToCrlf(text), true), ref.size()), ref);
  EXPECT_NE(Prefix(t.Encode(text, true), ref.size()), ref);  // the LF text differs at the first newline
}

TEST(TokenizerReference, TrainedModelsPersuasionFirst32) {
  const std::string text = ReadFileToString(Texts() / "janeausten" / "persuasion.txt");
  for (const char* model : {"llama-dense-26M", "qwen2moe-25M"}) {
    SCOPED_TRACE(model);
    const json ref = json::parse(ReadFileToString(Models() / model / "reference.json"));
    const auto expected = ref.at("persuasion_first32_ids").get<std::vector<int32_t>>();
    ASSERT_EQ(expected.size(), 32u);
    const Tokenizer t = Tokenizer::FromFile(Models() / model);
    EXPECT_EQ(Prefix(t.Encode(text), 32), expected);
  }
}

TEST(TokenizerReference, SpecialIdsAndVocab) {
  const Tokenizer sp = Tokenizer::FromFile(Models() / "stories260K" / "hf" / "tokenizer.json");
  EXPECT_EQ(sp.bos_id(), 1);
  EXPECT_EQ(sp.eos_id(), 2);
  EXPECT_EQ(sp.vocab_size(), 512u);
  EXPECT_EQ(sp.IdToToken(16), "<0x0D>");
  EXPECT_EQ(sp.TokenToId("<s>"), 1);
  EXPECT_EQ(sp.TokenToId("no such token"), -1);
  const Tokenizer bl = Tokenizer::FromFile(Models() / "llama-dense-26M");
  EXPECT_EQ(bl.bos_id(), 0);  // tokenizer_config.json: bos = eos = <|endoftext|>
  EXPECT_EQ(bl.eos_id(), 0);
  EXPECT_EQ(bl.vocab_size(), 8192u);
  EXPECT_EQ(bl.Encode("Hi", true).front(), 0);
  EXPECT_EQ(bl.Encode("", true), std::vector<int32_t>{0});
  EXPECT_TRUE(bl.Encode("").empty());
}

TEST(TokenizerReference, WholeFileRoundTrip) {
  const std::string persuasion = ReadFileToString(Texts() / "janeausten" / "persuasion.txt");
  const Tokenizer bl = Tokenizer::FromFile(Models() / "llama-dense-26M");
  EXPECT_EQ(bl.Decode(bl.Encode(persuasion)), persuasion);
  const Tokenizer sp = Tokenizer::FromFile(Models() / "stories260K" / "hf");
  const std::string head = persuasion.substr(0, 50000);
  EXPECT_EQ(sp.Decode(sp.Encode(head, true), /*skip_special_tokens=*/true), head);
}

// Runs far longer than the goldens' (PCRE2's JIT stack, `\s+(?!\S)` backtracking, one huge BPE word).
TEST(TokenizerReference, HugeRunsRoundTrip) {
  const Tokenizer bl = Tokenizer::FromFile(Models() / "llama-dense-26M");
  const Tokenizer sp = Tokenizer::FromFile(Models() / "stories260K" / "hf");
  for (const std::string& s : {std::string(300000, ' ') + "x", std::string(200000, '\n'),
                               "a" + std::string(100000, '\t') + " b", std::string(100000, '=') + "x"}) {
    EXPECT_EQ(bl.Decode(bl.Encode(s)), s);
    EXPECT_EQ(sp.Decode(sp.Encode(s)), s);
  }
}

TEST(TokenizerReference, ConcurrentEncodeIsDeterministic) {
  const Tokenizer t = Tokenizer::FromFile(Models() / "llama-dense-26M");
  const std::string text = ReadFileToString(Texts() / "janeausten" / "persuasion.txt").substr(0, 100000);
  const std::vector<int32_t> expected = t.Encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) threads.emplace_back([&, i] { got[i] = t.Encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

// ---------------------------------------------------------------------------------------------------------
// HF tokenizers goldens: a base tokenizer.json with component overrides, tricky strings and whole files.

json ApplyOverrides(json base, const json& overrides) {
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    const std::string& key = it.key();
    if (key == "added_tokens+") {
      for (const json& t : *it) base["added_tokens"].push_back(t);
    } else if (key.rfind("model.", 0) == 0) {
      base["model"][key.substr(6)] = *it;
    } else {
      base[key] = *it;
    }
  }
  return base;
}

class TokenizerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGolden, MatchesHfTokenizers) {
  const fs::path golden_path = GoldenDir() / (GetParam() + ".json");
  const json golden = json::parse(ReadFileToString(golden_path));
  const std::string base_dir = golden.at("base").get<std::string>();
  const json base = json::parse(ReadFileToString(SharedDir() / base_dir / "tokenizer.json"));
  const Tokenizer t = Tokenizer::FromJson(ApplyOverrides(base, golden.at("overrides")).dump(),
                                          (SharedDir() / base_dir / "tokenizer.json").string());
  const json& cases = golden.at("cases");
  ASSERT_GT(cases.size(), 10u);
  for (const json& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    SCOPED_TRACE(::testing::Message() << golden_path.filename() << " text=" << json(text).dump());
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    const auto with_template = c.at("ids_with_template").get<std::vector<int32_t>>();
    EXPECT_EQ(t.Encode(text), ids);
    if (t.bos_id() >= 0) {
      EXPECT_EQ(t.Encode(text, true), with_template);
    } else {
      EXPECT_EQ(with_template, ids);  // no template: nothing to add
    }
    EXPECT_EQ(t.Decode(ids), c.at("decoded").get<std::string>());
    EXPECT_EQ(t.Decode(ids, /*skip_special_tokens=*/true), c.at("decoded_skip_special").get<std::string>());
  }
  for (const json& p : golden.at("prefix_decodes")) {
    const auto ids = p.at("ids").get<std::vector<int32_t>>();
    const auto want = p.at("decoded").get<std::vector<std::string>>();
    ASSERT_EQ(want.size(), ids.size() + 1);
    for (size_t k = 0; k <= ids.size(); ++k) {
      EXPECT_EQ(t.Decode(std::span<const int32_t>(ids.data(), k)), want[k])
          << golden_path.filename() << " prefix of " << k << " ids of " << json(want.back()).dump();
    }
  }
  for (const json& f : golden.at("files")) {
    const std::string path = f.at("path").get<std::string>();
    SCOPED_TRACE(path);
    std::string text = ReadFileToString(SharedDir() / path);
    if (f.at("transform") == "crlf") text = LfToCrlf(text);
    const std::vector<int32_t> ids = t.Encode(text);
    ASSERT_EQ(ids.size(), f.at("count").get<size_t>());
    EXPECT_EQ(Prefix(ids, 64), f.at("first_ids").get<std::vector<int32_t>>());
    EXPECT_EQ(std::vector<int32_t>(ids.end() - 64, ids.end()), f.at("last_ids").get<std::vector<int32_t>>());
    EXPECT_EQ(Fnv1a64(JoinIds(ids)), f.at("fnv1a64").get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerGolden,
                         ::testing::Values("llama_dense_bytelevel", "stories260k_sentencepiece",
                                           "qwen2_split_bytelevel", "llama3_split_ignore_merges",
                                           "bytelevel_digits_punct_prefix", "bytelevel_split_behaviors",
                                           "metaspace_first_mistral", "metaspace_always_split",
                                           "sentencepiece_whitespace_strip_regex", "sentencepiece_whitespace_pretok",
                                           "sentencepiece_added_token_flags", "bytelevel_onig_word_classes"));

// ---------------------------------------------------------------------------------------------------------
// Small hand-made tokenizers: merge order and byte fallback, independent of any model.

std::string TinyBpe(const std::string& extra_model_fields, const std::string& merges) {
  return R"({"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,
    "decoder":null,"model":{"type":"BPE","unk_token":"<unk>",)" +
         extra_model_fields + R"("vocab":{"<unk>":0,"a":1,"b":2,"c":3,"ab":4,"bc":5,"abc":6,"<0x78>":7},
    "merges":)" +
         merges + "}}";
}

TEST(TokenizerBpe, LowestRankFirstThenLeftmost) {
  // "bc" outranks "ab": "abc" -> a + bc; then no merge (a, bc) exists.
  const Tokenizer t1 = Tokenizer::FromJson(TinyBpe("", R"(["b c","a b","ab c"])"), "tiny");
  EXPECT_EQ(t1.Encode("abc"), (std::vector<int32_t>{1, 5}));
  // "ab" first, then "ab c" -> abc.
  const Tokenizer t2 = Tokenizer::FromJson(TinyBpe("", R"([["a","b"],["b","c"],["ab","c"]])"), "tiny");
  EXPECT_EQ(t2.Encode("abc"), (std::vector<int32_t>{6}));
  // Ties at the same rank: the left-most pair merges first ("ab" then "ab" in "abab").
  EXPECT_EQ(t2.Encode("abab"), (std::vector<int32_t>{4, 4}));
}

TEST(TokenizerBpe, UnknownCharactersAndByteFallback) {
  const Tokenizer plain = Tokenizer::FromJson(TinyBpe(R"("fuse_unk":false,)", "[]"), "tiny");
  EXPECT_EQ(plain.Encode("azzb"), (std::vector<int32_t>{1, 0, 0, 2}));
  const Tokenizer fused = Tokenizer::FromJson(TinyBpe(R"("fuse_unk":true,)", "[]"), "tiny");
  EXPECT_EQ(fused.Encode("azzb"), (std::vector<int32_t>{1, 0, 2}));
  // byte fallback: "x" has <0x78>; "z" has no byte token, so it falls to <unk>.
  const Tokenizer bf = Tokenizer::FromJson(TinyBpe(R"("fuse_unk":true,"byte_fallback":true,)", "[]"), "tiny");
  EXPECT_EQ(bf.Encode("axzb"), (std::vector<int32_t>{1, 7, 0, 2}));
}

// ---------------------------------------------------------------------------------------------------------
// Errors.

TEST(TokenizerErrors, InvalidUtf8NamesTheByteOffset) {
  const Tokenizer t = Tokenizer::FromFile(Models() / "llama-dense-26M");
  EXPECT_NE(ErrorOf([&] {
              t.Encode(
                  "ab\xff"
                  "cd");
            }).find("byte offset 2"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { t.Encode("abc\xE2\x82"); }).find("byte offset 3"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { t.Encode("\xED\xA0\x80"); }).find("byte offset 0"), std::string::npos);  // surrogate
  EXPECT_NE(ErrorOf([&] { t.Encode("\xC0\xAF"); }).find("byte offset 0"), std::string::npos);      // overlong
}

TEST(TokenizerErrors, MissingAndCorruptFiles) {
  TempDir dir;
  EXPECT_NE(ErrorOf([&] { Tokenizer::FromFile(dir.path); }).find("tokenizer.json"), std::string::npos);
  const fs::path bad = dir.Write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  const std::string err = ErrorOf([&] { Tokenizer::FromFile(dir.path); });
  EXPECT_NE(err.find(bad.string()), std::string::npos) << err;
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;
  dir.Write("tokenizer.json", "[1, 2]");
  EXPECT_NE(ErrorOf([&] { Tokenizer::FromFile(dir.path); }).find("JSON object"), std::string::npos);
}

TEST(TokenizerErrors, UnsupportedComponentsNameTheJsonPath) {
  json base = json::parse(ReadFileToString(Models() / "stories260K" / "hf" / "tokenizer.json"));
  auto err_with = [&](const std::string& key, const json& value) {
    json j = base;
    if (key.rfind("model.", 0) == 0) {
      j["model"][key.substr(6)] = value;
    } else {
      j[key] = value;
    }
    return ErrorOf([&] { Tokenizer::FromJson(j.dump(), "my/tokenizer.json"); });
  };
  std::string e = err_with("normalizer", json::parse(R"({"type":"Sequence","normalizers":[{"type":"NFKD"}]})"));
  EXPECT_NE(e.find("my/tokenizer.json at /normalizer/normalizers/0"), std::string::npos) << e;
  EXPECT_NE(e.find("NFKD"), std::string::npos) << e;
  e = err_with("pre_tokenizer", json::parse(R"({"type":"Sequence","pretokenizers":[{"type":"BertPreTokenizer"}]})"));
  EXPECT_NE(e.find("at /pre_tokenizer/pretokenizers/0"), std::string::npos) << e;
  e = err_with("model.type", "Unigram");
  EXPECT_NE(e.find("at /model"), std::string::npos) << e;
  EXPECT_NE(e.find("Unigram"), std::string::npos) << e;
  e = err_with("model.merges", json::parse(R"(["▁ t", "q zz"])"));
  EXPECT_NE(e.find("at /model/merges/1"), std::string::npos) << e;
  e = err_with("model.dropout", 0.1);
  EXPECT_NE(e.find("/model/dropout"), std::string::npos) << e;
  e = err_with("pre_tokenizer",
               json::parse(R"({"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated"})"));
  EXPECT_NE(e.find("at /pre_tokenizer/pattern"), std::string::npos) << e;
  e = err_with("post_processor", json::parse(R"({"type":"RobertaProcessing"})"));
  EXPECT_NE(e.find("at /post_processor"), std::string::npos) << e;
  json no_model = base;
  no_model.erase("model");
  e = ErrorOf([&] { Tokenizer::FromJson(no_model.dump(), "x.json"); });
  EXPECT_NE(e.find("missing key \"model\""), std::string::npos) << e;

  // An unsupported decoder does not block encoding; Decode reports it.
  json odd_decoder = base;
  odd_decoder["decoder"] = json::parse(R"({"type":"WordPiece","prefix":"##"})");
  const Tokenizer t = Tokenizer::FromJson(odd_decoder.dump(), "x.json");
  const std::vector<int32_t> ids = t.Encode("hello");
  EXPECT_FALSE(ids.empty());
  EXPECT_NE(ErrorOf([&] { t.Decode(ids); }).find("at /decoder"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { t.IdToToken(100000); }).find("100000"), std::string::npos);
}

TEST(TokenizerErrors, NfcBeyondLatinIsAnError) {
  json j = json::parse(ReadFileToString(Models() / "llama-dense-26M" / "tokenizer.json"));
  j["normalizer"] = json::parse(R"({"type":"NFC"})");
  const Tokenizer t = Tokenizer::FromJson(j.dump(), "x.json");
  EXPECT_FALSE(t.Encode("caf\xC3\xA9").empty());                     // é (U+00E9) is below U+0300
  const std::string e = ErrorOf([&] { t.Encode("cafe\xCC\x81"); });  // e + U+0301
  EXPECT_NE(e.find("U+0301"), std::string::npos) << e;
}

TEST(TokenizerErrors, BosRequestedWithoutBos) {
  json j = json::parse(ReadFileToString(Models() / "llama-dense-26M" / "tokenizer.json"));
  const Tokenizer t = Tokenizer::FromJson(j.dump(), "x.json");  // no tokenizer_config.json, ByteLevel post-processor
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_NE(ErrorOf([&] { t.Encode("x", true); }).find("no BOS"), std::string::npos);
}

TEST(TokenizerErrors, SizesFromTheFileAreBoundedBeforeAllocation) {
  const json base = json::parse(ReadFileToString(Models() / "stories260K" / "hf" / "tokenizer.json"));
  // One vocab id of 2^31 - 1 would size the id table at 16 GiB: refused, naming the id and the token count.
  json j = base;
  j["model"]["vocab"]["<unk>"] = 2147483647;
  std::string e = ErrorOf([&] { Tokenizer::FromJson(j.dump(), "big_id/tokenizer.json"); });
  EXPECT_NE(e.find("big_id/tokenizer.json"), std::string::npos) << e;
  EXPECT_NE(e.find("2147483647"), std::string::npos) << e;
  EXPECT_NE(e.find("too large"), std::string::npos) << e;
  j = base;
  j["added_tokens"].push_back({{"id", 1 << 30}, {"content", "<big>"}, {"special", true}});
  e = ErrorOf([&] { Tokenizer::FromJson(j.dump(), "big_added/tokenizer.json"); });
  EXPECT_NE(e.find("too large"), std::string::npos) << e;
  // Ids with a few holes are still fine.
  j = base;
  j["added_tokens"].push_back({{"id", 600}, {"content", "<pad>"}, {"special", true}});
  EXPECT_NO_THROW(Tokenizer::FromJson(j.dump(), "holes/tokenizer.json"));
  // Deep nesting is refused by the bounded parser (later recursive walkers never see it).
  e = ErrorOf([&] {
    Tokenizer::FromJson(R"({"normalizer": )" + std::string(5000, '[') + std::string(5000, ']') + "}", "deep.json");
  });
  EXPECT_NE(e.find("nest deeper"), std::string::npos) << e;
}

}  // namespace
}  // namespace qforge
