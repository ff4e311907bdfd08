// edgedistill tokenize: the token ids of a text under any tokenizer (or the text of ids), exactly
// as data preparation, distillation and the runtime see them.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "core/files.h"
#include "data/tokenizer.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  bool bos = false;
  bool decode = false;
  bool special = false;
  bool no_special = false;
  bool pieces = false;
};

std::vector<int32_t> parse_ids(const std::string& input, const data::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  std::istringstream in(input);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || value < 0 || value >= tokenizer.vocab_size()) {
      throw InputError(str("--decode: '", word, "' is not a token id of this vocabulary (0..",
                           tokenizer.vocab_size() - 1, "); give ids separated by spaces"));
    }
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

int run_tokenize(const TokenizeOptions& options) {
  const auto tokenizer = data::open_tokenizer(options.model);
  const std::string input =
      options.file.empty() ? options.text : core::read_file(options.file, "text file");
  const tok::Vocab* vocab = tokenizer->vocab();
  if (options.decode) {
    const std::vector<int32_t> ids = parse_ids(input, *tokenizer);
    // The text exactly, with no newline added, so it compares byte for byte with the source.
    const std::string text =
        vocab != nullptr && options.no_special ? vocab->decode(ids, true) : tokenizer->decode(ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::vector<int32_t> ids;
  if (options.bos) {
    if (tokenizer->bos_id() < 0) {
      throw InputError(str(options.model, ": this tokenizer has no BOS token; leave out --bos"));
    }
    ids.push_back(tokenizer->bos_id());
  }
  std::vector<int32_t> text_ids;
  if (vocab != nullptr && (options.special || options.no_special)) {
    text_ids = vocab->encode(input, options.special);
  } else {
    if (options.special) {
      throw InputError("--special: the byte tokenizer has no special tokens to read in text");
    }
    text_ids = tokenizer->encode(input);
  }
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  if (options.pieces) {
    for (const int32_t id : ids) std::printf("%d\t%s\n", id, tokenizer->piece(id).c_str());
    return 0;
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TokenizeOptions>();
  auto* command = app.add_subcommand(
      "tokenize",
      "Print the token ids of a text (or with --decode the text of ids) under a tokenizer");
  command
      ->add_option("-m,--model", options->model,
                   "the tokenizer: prepared data, a tokenizer directory, a checkpoint or run, a "
                   "Hugging Face model folder, a tokenizer.json, a tokenizer.model or a GGUF "
                   "file")
      ->required();
  auto* text = command->add_option("--text", options->text, "the text");
  auto* file = command->add_option("--file", options->file,
                                   "a file whose whole content is the text (or the ids)");
  text->excludes(file);
  command->add_flag("--bos", options->bos, "start with the BOS token (not added otherwise)");
  command->add_flag("--decode", options->decode,
                    "read token ids separated by spaces and print their text exactly (no newline "
                    "added)");
  auto* special = command->add_flag(
      "--special", options->special,
      "read special tokens spelled in the text (<|endoftext|>, <s>) as those tokens (default: as "
      "the tokenizer's reference does: yes for tokenizer.json, no for SentencePiece and GGUF)");
  auto* no_special = command->add_flag(
      "--no-special", options->no_special,
      "read special tokens spelled in the text as plain text; with --decode, leave special tokens "
      "out of the text");
  special->excludes(no_special);
  command->add_flag("--pieces", options->pieces, "print one id and its token per line instead");
  command->footer(
      "Examples:\n"
      "  edgedistill tokenize --model models/SmolLM2-135M --text 'Hello world'\n"
      "  edgedistill tokenize --model model.gguf --file prompt.txt --bos\n"
      "  edgedistill tokenize --model tokenizer.json --decode --text '9906 1917'");
  command->callback([options, command, &exit_code] {
    if (command->count("--text") == 0 && command->count("--file") == 0) {
      throw InputError("tokenize: give the text with --text TEXT or --file FILE");
    }
    exit_code = run_tokenize(*options);
  });
}

}  // namespace edgedistill::cli
