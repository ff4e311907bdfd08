// edgedistill bench --train-config: training throughput and model FLOPs utilisation (MFU) against
// a float32 GEMM timed in the same run.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cli/command.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/fused_kernels.h"
#include "model/fused_ops.h"
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
  std::string device;
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

// Times one float32 n x n x n product through LibTorch; returns FLOP/s.
class GemmProbe {
 public:
  explicit GemmProbe(int64_t n) : n_(n), a_(torch::randn({n, n})), b_(torch::randn({n, n})) {}
  double sample() {
    torch::NoGradGuard no_grad;
    const auto start = std::chrono::steady_clock::now();
    const auto c = torch::mm(a_, b_);
    return 2.0 * static_cast<double>(n_ * n_ * n_) / seconds_since(start);
  }

 private:
  int64_t n_;
  torch::Tensor a_, b_;
};

int run_bench(const BenchOptions& options) {
  auto overrides = options.config.overrides;
  if (options.threads >= 0) overrides.push_back(str("threads=", options.threads));
  if (!options.device.empty()) overrides.push_back(str("device=", options.device));
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
      "bench train: %s, %s parameters (%s non-embedding), batch %lld x %lld tokens, "
      "%d threads, fused kernels %s\n",
      recipe.name.c_str(), core::format_count(counts.total).c_str(),
      core::format_count(counts.non_embedding).c_str(), static_cast<long long>(batch),
      static_cast<long long>(length), threads, model::fused_kernels().isa);
  std::fflush(stdout);

  // The trainer's step (forward, cross entropy, backward, clip, AdamW) on random tokens, so no
  // data needs preparing.
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

  // This machine's throughput drifts (measured: 90 to 170 GFLOP/s for the same product within a
  // minute), so a GEMM is timed right after every measured step and each step is compared with
  // its own GEMM: the paired ratio cancels the drift.
  GemmProbe probe(options.gemm_size);
  for (int i = 0; i < 2; ++i) probe.sample();
  std::vector<double> step_seconds, gemm_flops;
  core::Progress progress("bench", options.warmup + options.steps, "steps", 1e9);
  for (int64_t step = 0; step < options.warmup + options.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    const auto logits = net->forward(inputs).logits;
    const auto loss =
        model::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
    loss.backward();
    optimizer.clip_gradients();
    optimizer.step(recipe.train.optimizer.lr);
    (void)loss.item<double>();  // waits for the step to finish on any device
    if (step >= options.warmup) {
      step_seconds.push_back(seconds_since(start));
      gemm_flops.push_back(probe.sample());
    }
    progress.update(step + 1);
  }
  progress.finish(options.warmup + options.steps);

  const double step_time = median(step_seconds);
  const double tokens_per_s = static_cast<double>(batch * length) / step_time;
  const double best_gemm = *std::max_element(gemm_flops.begin(), gemm_flops.end());
  // MFU as in PaLM (Chowdhery et al. 2022, appendix B) without the attention term: 6 FLOPs per
  // parameter per token (2 forward, 4 backward) over the non-embedding parameters, divided by the
  // GEMM rate; the median of the per-step ratios.
  auto paired_mfu = [&](int64_t parameters) {
    std::vector<double> ratios;
    for (size_t i = 0; i < step_seconds.size(); ++i) {
      const double model_flops =
          6.0 * static_cast<double>(parameters * batch * length) / step_seconds[i];
      ratios.push_back(model_flops / gemm_flops[i]);
    }
    return median(ratios);
  };
  const double mfu = paired_mfu(counts.non_embedding);
  const double mfu_with_head = paired_mfu(counts.non_embedding + counts.head);
  const double mfu_best_gemm =
      6.0 * static_cast<double>(counts.non_embedding) * tokens_per_s / best_gemm;
  std::printf(
      "GEMM (LibTorch float32 %lld^3 matmul, timed after each step): best %.1f, median "
      "%.1f GFLOP/s\n",
      static_cast<long long>(options.gemm_size), best_gemm / 1e9, median(gemm_flops) / 1e9);
  std::printf("train step: %.1f ms (median of %lld), %.0f tokens/s\n", step_time * 1e3,
              static_cast<long long>(options.steps), tokens_per_s);
  std::printf(
      "MFU: %.1f %% (6 x non-embedding parameters x tokens/s over the GEMM rate; median of "
      "per-step ratios)\n",
      100 * mfu);
  std::printf(
      "MFU against the run's best GEMM: %.1f %%; counting the output head's matmul: "
      "%.1f %%\n",
      100 * mfu_best_gemm, 100 * mfu_with_head);

  if (!options.json_out.empty()) {
    nlohmann::ordered_json out;
    out["name"] = recipe.name;
    out["threads"] = threads;
    out["fused_kernels"] = model::fused_kernels().isa;
    out["batch_size"] = batch;
    out["seq_len"] = length;
    out["parameters"] = counts.total;
    out["non_embedding_parameters"] = counts.non_embedding;
    out["gemm_best_flops"] = best_gemm;
    out["gemm_median_flops"] = median(gemm_flops);
    out["step_seconds_median"] = step_time;
    out["tokens_per_s"] = tokens_per_s;
    out["mfu"] = mfu;
    out["mfu_best_gemm"] = mfu_best_gemm;
    out["mfu_with_head"] = mfu_with_head;
    core::write_json_atomic(options.json_out, out);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<BenchOptions>();
  auto* command = app.add_subcommand(
      "bench", "Benchmark training throughput and MFU against a GEMM timed in the same run");
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
  command->add_option("--device", options->device, "cpu, or cuda where LibTorch has CUDA")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--gemm-size", options->gemm_size, "n of the n^3 reference matmul")
      ->check(CLI::PositiveNumber);
  command->add_option("--json", options->json_out, "also write the results to this JSON file");
  command->callback([options, &exit_code] { exit_code = run_bench(*options); });
}

}  // namespace edgedistill::cli
