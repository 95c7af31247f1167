// `qforge tokenize`: prints the token ids (or their count) of a text with a model's tokenizer.json.
#include <cstdio>
#include <string>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/progress.h"
#include "qforge/cli/command.h"
#include "qforge/model/tokenizer.h"

namespace qforge::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text_file;
  std::string text;
  bool bos = false;
  bool count = false;
  bool decode = false;
};

CommandRegistrar reg("tokenize", "print the token ids of a text with a model's tokenizer", [](CLI::App& sub) -> RunFn {
  auto args = std::make_shared<TokenizeArgs>();
  sub.add_option("--model", args->model, "model directory (or tokenizer.json file)")->required();
  auto* text_opt = sub.add_option("--text", args->text_file, "UTF-8 text file to tokenize");
  auto* string_opt = sub.add_option("--string", args->text, "text to tokenize, given on the command line");
  text_opt->excludes(string_opt);
  sub.add_flag("--bos", args->bos, "prepend the tokenizer's BOS token");
  sub.add_flag("--count", args->count, "print only the number of tokens (and the time taken, on stderr)");
  sub.add_flag("--decode", args->decode, "print the decoded text after the ids (round-trip check)");
  return [args, text_opt, string_opt] {
    QF_CHECK(text_opt->count() + string_opt->count() == 1, "tokenize: give exactly one of --text FILE or --string S");
    const Tokenizer tokenizer = Tokenizer::FromFile(args->model);
    const std::string text = text_opt->count() ? ReadFileToString(args->text_file) : args->text;
    Timer timer;
    const std::vector<int32_t> ids = tokenizer.Encode(text, args->bos);
    const double seconds = timer.Seconds();
    if (args->count) {
      std::printf("%zu\n", ids.size());
      std::fprintf(stderr, "tokenized %zu bytes into %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
      return 0;
    }
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) line += ' ';
      line += std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
    if (args->decode) std::printf("%s\n", tokenizer.Decode(ids).c_str());
    return 0;
  };
});

}  // namespace
}  // namespace qforge::cli
