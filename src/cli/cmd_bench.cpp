// edgedistill bench --train-config: training throughput and model FLOPs utilisation (MFU) against
// the GEMM peak measured in the same run.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cli/command.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/llama.h"
#include "train/optimizer.h"
#include "train/setup.h"
#include "train/train_config.h"

namespace edgedistill::cli {
namespace {

struct BenchOptions {
  ConfigOptions config;
  int64_t steps = 10;
  int64_t warmup = 3;
  int batch_size = 0;
  int seq_len = 0;
  int threads = -1;
  int64_t gemm_size = 2048;
  std::string json_out;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// Float32 GEMM throughput of an n x n x n product through LibTorch: best of five after a warm-up.
double gemm_peak_flops(int64_t n) {
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto c = torch::mm(a, b);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    c = torch::mm(a, b);
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / seconds_since(start));
  }
  return best;
}

int run_bench(const BenchOptions& options) {
  auto overrides = options.config.overrides;
  if (options.threads >= 0) overrides.push_back(str("threads=", options.threads));
  if (options.batch_size > 0) overrides.push_back(str("train.batch_size=", options.batch_size));
  if (options.seq_len > 0) overrides.push_back(str("train.seq_len=", options.seq_len));
  auto recipe = core::load_config<train::TrainRecipe>(options.config.file, overrides);
  if (recipe.model.arch != "llama") {
    throw InputError("bench --train-config measures language-model recipes (model.arch = llama)");
  }
  train::resolve_vocab_size(recipe);
  const int threads = train::configure_threads(recipe.threads, false);
  const auto device = train::resolve_device(recipe.device);
  const auto& llama = recipe.model.llama;
  const int64_t batch = recipe.train.batch_size, length = recipe.train.seq_len;
  const auto counts = model::count_parameters(llama);

  std::printf(
      "bench train: %s, %s parameters (%s non-embedding), batch %lld x %lld tokens, %d threads\n",
      recipe.name.c_str(), core::format_count(counts.total).c_str(),
      core::format_count(counts.non_embedding).c_str(), static_cast<long long>(batch),
      static_cast<long long>(length), threads);
  const double peak = gemm_peak_flops(options.gemm_size);
  std::printf("GEMM peak (LibTorch float32 %lld^3 matmul, best of 5): %.1f GFLOP/s\n",
              static_cast<long long>(options.gemm_size), peak / 1e9);

  // The training step of the trainer (forward, cross entropy, backward, clip, AdamW) on random
  // tokens, so no data needs preparing.
  torch::manual_seed(static_cast<uint64_t>(recipe.seed));
  model::LlamaModel net(llama);
  net->to(device);
  net->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : net->named_parameters()) named.emplace_back(item.key(), item.value());
  train::AdamW optimizer(named, recipe.train.optimizer);
  const auto tokens =
      torch::randint(llama.vocab_size, {batch, length + 1}, torch::kInt64).to(device);
  const auto inputs = tokens.narrow(1, 0, length), targets = tokens.narrow(1, 1, length);
  std::vector<double> step_seconds;
  core::Progress progress("bench", options.warmup + options.steps, "steps", 1e9);
  for (int64_t step = 0; step < options.warmup + options.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    const auto logits = net->forward(inputs).logits;
    const auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                           targets.reshape({-1}));
    loss.backward();
    optimizer.clip_gradients();
    optimizer.step(recipe.train.optimizer.lr);
    (void)loss.item<double>();  // waits for the step to finish on any device
    if (step >= options.warmup) step_seconds.push_back(seconds_since(start));
    progress.update(step + 1);
  }
  progress.finish(options.warmup + options.steps);
  const double step_time = median(step_seconds);
  const double tokens_per_s = static_cast<double>(batch * length) / step_time;
  // MFU as in PaLM (Chowdhery et al. 2022, appendix B) without the attention term: 6 FLOPs per
  // parameter per token (2 forward, 4 backward) over the non-embedding parameters.
  const double mfu = 6.0 * static_cast<double>(counts.non_embedding) * tokens_per_s / peak;
  const double mfu_with_head =
      6.0 * static_cast<double>(counts.non_embedding + counts.head) * tokens_per_s / peak;
  std::printf("train step: %.1f ms (median of %lld), %.0f tokens/s\n", step_time * 1e3,
              static_cast<long long>(options.steps), tokens_per_s);
  std::printf("MFU: %.1f %% (6 x non-embedding parameters x tokens/s / GEMM peak)\n", 100 * mfu);
  std::printf("MFU counting the output head's matmul too: %.1f %%\n", 100 * mfu_with_head);

  if (!options.json_out.empty()) {
    nlohmann::ordered_json out;
    out["name"] = recipe.name;
    out["threads"] = threads;
    out["batch_size"] = batch;
    out["seq_len"] = length;
    out["parameters"] = counts.total;
    out["non_embedding_parameters"] = counts.non_embedding;
    out["gemm_peak_flops"] = peak;
    out["step_seconds_median"] = step_time;
    out["tokens_per_s"] = tokens_per_s;
    out["mfu"] = mfu;
    out["mfu_with_head"] = mfu_with_head;
    core::write_json_atomic(options.json_out, out);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<BenchOptions>();
  auto* command = app.add_subcommand(
      "bench", "Benchmark training throughput and MFU against this machine's GEMM peak");
  command
      ->add_option("--train-config", options->config.file,
                   "training recipe whose model and batch shape to measure")
      ->required();
  command->add_option("-s,--set", options->config.overrides,
                      "override a recipe key: --set model.n_layers=4 (repeatable)");
  command->add_option("--steps", options->steps, "measured steps (after the warm-up)")
      ->check(CLI::PositiveNumber);
  command->add_option("--warmup", options->warmup, "unmeasured warm-up steps")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--batch-size", options->batch_size,
                      "sequences per step (default: the recipe's)");
  command->add_option("--seq-len", options->seq_len, "tokens per sequence (default: the recipe's)");
  command->add_option("--threads", options->threads, "CPU threads (default: all cores)");
  command->add_option("--gemm-size", options->gemm_size, "n of the n^3 matmul measuring the peak")
      ->check(CLI::PositiveNumber);
  command->add_option("--json", options->json_out, "also write the results to this JSON file");
  command->callback([options, &exit_code] { exit_code = run_bench(*options); });
}

}  // namespace edgedistill::cli
