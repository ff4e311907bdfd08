// edgedistill teacher-cache: run a teacher once over a token shard and store its top-k next-token
// log-probabilities (distill/teacher_cache.h), so distillation runs read them instead of running
// the teacher at every step.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "cli/command.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/prepare.h"
#include "distill/distill_config.h"
#include "distill/teacher_cache.h"
#include "train/setup.h"
#include "train/train_config.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

// Without a recipe, windows are this long (the recipes' default train.seq_len).
constexpr int64_t kDefaultSeqLen = 128;

struct TeacherCacheOptions {
  std::string teacher;
  std::string data_dir;
  ConfigOptions config;
  int64_t top_k = 0;
  std::string out;
  int64_t seq_len = 0;  // set only when --seq-len is given
  CLI::Option* seq_len_option = nullptr;
  int64_t batch_size = 16;
  int threads = -1;
  std::string device;
  std::string data_cache;
  std::string split = "train";
};

int run_teacher_cache(const TeacherCacheOptions& options) {
  if (options.data_dir.empty() == options.config.file.empty()) {
    throw InputError(
        "teacher-cache needs exactly one of --data DIR (prepared data) or --config RECIPE (whose "
        "data is prepared or found in the data cache)");
  }
  if (options.config.file.empty() && !options.config.overrides.empty()) {
    throw InputError("--set overrides a recipe key and needs --config RECIPE");
  }

  // Where the data is, and the defaults a recipe supplies.
  fs::path data_dir = options.data_dir;
  int64_t seq_len = kDefaultSeqLen;
  int threads = options.threads >= 0 ? options.threads : 0;
  std::string device_name = options.device.empty() ? "cpu" : options.device;
  std::optional<train::TrainRecipe> recipe;
  if (!options.config.file.empty()) {
    // A distillation recipe is a training recipe for the student plus distillation keys.
    const auto json = core::read_config_json(options.config.file);
    recipe =
        json.is_object() && json.contains("distill")
            ? core::load_config<distill::DistillRecipe>(options.config.file,
                                                        options.config.overrides)
                  .base
            : core::load_config<train::TrainRecipe>(options.config.file, options.config.overrides);
    if (recipe->data.kind != "text") {
      throw InputError(str("recipe '", options.config.file, "' has ", recipe->data.kind,
                           " data; a teacher cache needs a text dataset and a language model"));
    }
    seq_len = recipe->train.seq_len;
    if (options.threads < 0) threads = recipe->threads;
    if (options.device.empty()) device_name = recipe->device;
  }
  if (options.seq_len_option->count() > 0) seq_len = options.seq_len;
  threads = train::configure_threads(threads, false);
  const auto device = train::resolve_device(device_name);
  if (recipe) {
    const fs::path cache_root =
        options.data_cache.empty() ? data::default_cache_root() : fs::path(options.data_cache);
    data_dir = data::ensure_prepared(recipe->data, cache_root);
  }

  const data::PreparedData data(data_dir);
  const auto shard = data.shard(options.split);
  const fs::path shard_path = fs::absolute(data.shard_path(options.split));
  const auto teacher = distill::load_teacher(options.teacher, device);
  core::info("teacher cache: top-", options.top_k, " of teacher ", teacher.dir.string(), " over ",
             shard_path.string(), " (", core::format_count(shard.size()), " tokens, seq_len ",
             seq_len, ") on ", device.str(), ", ", threads, threads == 1 ? " thread" : " threads");

  const auto start = std::chrono::steady_clock::now();
  const auto info =
      distill::write_teacher_cache(teacher, shard, shard_path.string(), seq_len, options.top_k,
                                   options.batch_size, device, options.out);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\nteacher cache: %s\n", info.dir.string().c_str());
  std::printf("  positions: %s (%s windows of %lld tokens from %s)\n",
              core::format_count(info.positions).c_str(), core::format_count(info.windows).c_str(),
              static_cast<long long>(info.seq_len), shard_path.string().c_str());
  std::printf("  top-%lld of %s: %s %s, %.2f bytes/token (%s ids, %s log-probs, %s tail)\n",
              static_cast<long long>(info.k), core::format_count(info.vocab_size).c_str(),
              distill::kTeacherCacheBinName, core::format_bytes(info.file_bytes).c_str(),
              info.bytes_per_token, info.id_dtype.c_str(), info.logprob_dtype.c_str(),
              info.tail_dtype.c_str());
  std::printf(
      "  time: %s (%s tokens/s on %s, %d %s)\n", core::format_duration(seconds).c_str(),
      core::format_count(static_cast<int64_t>(seconds > 0 ? info.positions / seconds : 0)).c_str(),
      device.str().c_str(), threads, threads == 1 ? "thread" : "threads");
  return 0;
}

}  // namespace

void add_teacher_cache_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TeacherCacheOptions>();
  auto* command = app.add_subcommand(
      "teacher-cache",
      "Store a teacher's top-k next-token log-probabilities over a token shard, for distillation");
  command
      ->add_option(
          "-t,--teacher", options->teacher,
          "teacher checkpoint directory, finished run directory (its final/), Hugging Face "
          "folder or GGUF file")
      ->required();
  command->add_option("--data", options->data_dir,
                      "prepared data directory (from `edgedistill data`); or use --config");
  add_config_options(command, options->config,
                     "recipe whose data (prepared into the data cache if needed) and "
                     "train.seq_len are used; or use --data",
                     "train.seq_len=256", false);
  // k, seq_len and the batch size are range-checked by write_teacher_cache, which names the range.
  command
      ->add_option("-k,--top-k", options->top_k,
                   "log-probabilities kept per position (32: 132 bytes per token)")
      ->required();
  command->add_option("-o,--out", options->out, "cache directory: topk.bin and topk.json")
      ->required();
  options->seq_len_option = command->add_option(
      "--seq-len", options->seq_len,
      "tokens per window; the distillation run must use the same (default: the recipe's "
      "train.seq_len, or 128 with --data)");
  command->add_option("--batch-size", options->batch_size, "windows per teacher forward pass")
      ->capture_default_str();
  command
      ->add_option("--threads", options->threads,
                   "CPU threads (default: the recipe's with --config; 0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--device", options->device,
                   "cpu, or cuda where LibTorch was built with CUDA (default: the recipe's with "
                   "--config, else cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--data-cache", options->data_cache,
                      "where prepared data is cached (default: $EDGEDISTILL_CACHE_DIR or "
                      "~/.cache/edgedistill)");
  command->add_option("--split", options->split, "which token shard to cover")
      ->check(CLI::IsMember({"train", "valid", "test"}))
      ->capture_default_str();
  command->footer(
      "Covers the shard's windows at offset 0 (window w = positions [w*seq_len, (w+1)*seq_len)); "
      "a run reading the cache must use the same teacher, tokenizer, data and seq_len.\n"
      "Example:\n"
      "  edgedistill teacher-cache --teacher runs/teacher --config "
      "configs/recipes/teacher-kjv.json --top-k 32 --out runs/teacher/topk-32");
  command->callback([options, &exit_code] { exit_code = run_teacher_cache(*options); });
}

}  // namespace edgedistill::cli
