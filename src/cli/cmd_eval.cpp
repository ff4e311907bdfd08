// edgedistill eval: the float (LibTorch) perplexity of a language model on a split of prepared
// data, in the batched windows training evaluates with. Unlike verify it needs no GGUF export and
// no runtime, so it scores a model on text it was not trained on (prepared with the model's own
// tokenizer: `edgedistill data --tokenizer MODEL`) at training speed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/calibration_options.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/prepared_data.h"
#include "distill/teacher.h"
#include "train/language_model_task.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

struct EvalOptions {
  std::string model;
  std::string data;
  std::string split = "test";
  int64_t context = 128;
  int64_t max_tokens = 0;
  int64_t batch_size = 16;
  int threads = 0;
  std::string device = "cpu";
  std::string report;
  bool json = false;
};

int run_eval(const EvalOptions& options) {
  const int threads = train::configure_threads(options.threads, false);
  const auto device = train::resolve_device(options.device);
  const auto model = distill::load_teacher(options.model, device);
  if (!model.is_llama()) {
    throw InputError(str("'", options.model,
                         "' is an image classifier; eval scores language models (a classifier's "
                         "test errors are in its run's result.json)"));
  }
  const fs::path data_dir = options.data.empty() ? model.meta.data_dir : fs::path(options.data);
  if (data_dir.empty()) {
    throw InputError(
        str(model.dir.string(), " records no data directory; pass --data DIR (prepared data)"));
  }
  const data::PreparedData data(data_dir);
  if (!model.meta.tokenizer_hash.empty() && data.tokenizer().hash() != model.meta.tokenizer_hash) {
    throw InputError(str("the data at ", data_dir.string(), " uses another tokenizer than ",
                         model.dir.string(), "; prepare the text with the model's tokenizer: ",
                         "edgedistill data --config DATA.json --tokenizer ", options.model,
                         " --out DIR"));
  }
  const auto shard = data.shard(options.split);
  const int64_t context = std::min<int64_t>(options.context, model.llama().config().max_seq_len);
  if (shard.size() < context + 1) {
    throw InputError(str("the ", options.split, " split of ", data_dir.string(), " has ",
                         shard.size(), " tokens, fewer than one window of ", context + 1,
                         "; lower --ctx"));
  }
  const auto start = std::chrono::steady_clock::now();
  const auto [loss, tokens] = train::language_model_loss(
      model.llama(), shard, context, options.batch_size, options.max_tokens, device);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::ordered_json report;
  report["model"] = model.dir.string();
  report["data"] = fs::absolute(data_dir).string();
  report["split"] = options.split;
  report["context"] = context;
  report["tokens"] = tokens;
  report["mean_loss"] = loss;
  report["perplexity"] = std::exp(loss);
  report["seconds"] = seconds;
  report["threads"] = threads;
  if (!options.report.empty()) core::write_json_atomic(options.report, report);
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    std::printf(
        "%s on the %s split of %s: perplexity %.3f (mean loss %.4f nats/token over %s "
        "tokens, windows of %lld) in %s\n",
        model.dir.string().c_str(), options.split.c_str(), data_dir.string().c_str(),
        std::exp(loss), loss, core::format_count(tokens).c_str(), static_cast<long long>(context),
        core::format_duration(seconds).c_str());
  }
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<EvalOptions>();
  auto* command = app.add_subcommand(
      "eval", "Perplexity of a language model (float, LibTorch) on a split of prepared data");
  command
      ->add_option("-m,--model", options->model,
                   "checkpoint, run directory, Hugging Face folder or GGUF file")
      ->required();
  command->add_option("--data", options->data,
                      "prepared data (default: the data the model was trained on); text the "
                      "model never saw must be prepared with its tokenizer (edgedistill data "
                      "--tokenizer MODEL)");
  add_scored_split_options(command, options->split, options->context, options->max_tokens);
  command->add_option("--batch-size", options->batch_size, "windows per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("-t,--threads", options->threads, "CPU threads; 0: all cores")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--device", options->device, "cpu, or cuda where LibTorch was built with CUDA")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  command->add_option("--report", options->report, "write the JSON report to this file");
  command->add_flag("--json", options->json, "print the JSON report instead of the line");
  command->footer(
      "Example: perplexity of a KJV model on WordNet glosses (out of its domain):\n"
      "  edgedistill data --config configs/data/wordnet.json --tokenizer runs/teacher --out "
      "runs/wordnet-kjv\n"
      "  edgedistill eval --model runs/teacher --data runs/wordnet-kjv --split test");
  command->callback([options, &exit_code] { exit_code = run_eval(*options); });
}

}  // namespace edgedistill::cli
