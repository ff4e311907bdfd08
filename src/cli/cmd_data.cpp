// edgedistill data: prepare a corpus, its tokenizer and token shards (or check an image dataset).
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "core/progress.h"
#include "data/data_config.h"
#include "data/prepare.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

struct DataCommandOptions {
  ConfigOptions config;
  std::string out;
  std::string tokenizer;
};

int run_data(const DataCommandOptions& options) {
  auto overrides = options.config.overrides;
  if (!options.tokenizer.empty()) {
    overrides.push_back(str("tokenizer.from=", fs::absolute(options.tokenizer).string()));
  }
  const auto config = core::load_config<data::DataConfig>(options.config.file, overrides);
  const fs::path out = fs::absolute(options.out);
  data::prepare_data(config, out);
  const auto summary = data::describe_path(out);
  std::printf("%s\n", summary.dump(2).c_str());
  std::printf("prepared data: %s\n", out.string().c_str());
  return 0;
}

}  // namespace

void add_data_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<DataCommandOptions>();
  auto* command = app.add_subcommand(
      "data",
      "Prepare a corpus: extract documents, split train/valid/test, train the tokenizer (or use "
      "--tokenizer), write token shards");
  add_config_options(command, options->config, "data config (e.g. configs/data/kjv.json)",
                     "tokenizer.vocab_size=8192", true);
  command->add_option("-o,--out", options->out, "output directory")->required();
  command->add_option("--tokenizer", options->tokenizer,
                      "encode with this tokenizer instead of training one (= --set "
                      "tokenizer.from=PATH): a tokenizer.json, tokenizer.model, GGUF file, model "
                      "folder, checkpoint or prepared data");
  command->callback([options, &exit_code] { exit_code = run_data(*options); });
}

}  // namespace edgedistill::cli
