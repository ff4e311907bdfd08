// edgedistill bench: one of
// - --model FILE.gguf: the runtime's prefill and decode speed (runtime/model_bench.h);
// - --kernels: the runtime's matrix-vector kernels against memory bandwidth
//   (runtime/kernel_bench.h);
// - --train-config RECIPE: training throughput and model FLOPs utilisation (MFU) against a float32
//   GEMM timed in the same run;
// - --tokenizer PATH --text-file FILE: encoding speed on one thread (scripts/bench_tokenizers.sh
//   measures the peers, Python's sentencepiece and tokenizers.js, on the same text in the same
//   run).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "cli/runtime_model.h"
#include "cli/training_run.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/threads.h"
#include "core/timing.h"
#include "data/tokenizer.h"
#include "model/fused_kernels.h"
#include "model/fused_ops.h"
#include "model/llama.h"
#include "runtime/kernel_bench.h"
#include "runtime/model_bench.h"
#include "train/optimizer.h"
#include "train/setup.h"
#include "train/train_config.h"

namespace edgedistill::cli {
namespace {

using core::median;
using core::seconds_since;

struct BenchOptions {
  std::string model;
  bool kernels = false;
  bool allreduce = false;
  runtime::KernelBenchOptions kernel_bench;
  runtime::ModelBenchOptions model_bench;
  bool json = false;
  ConfigOptions config;
  int64_t steps = 10;
  int64_t warmup = 3;
  int batch_size = 0;
  int seq_len = 0;
  int threads = -1;
  std::string device;
  int64_t gemm_size = 2048;
  std::string report;
  std::string tokenizer;
  std::string text_file;
  std::string ids_out;
};

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

int run_model_bench(const BenchOptions& options) {
  const runtime::LlamaModel model(runtime_model_path(options.model, "--model"));
  runtime::ThreadPool pool(core::resolve_thread_count(std::max(0, options.threads)));
  const auto& h = model.hparams();
  if (!options.json) {
    std::printf("bench %s: %s, %lld layers, dim %lld, vocab %lld; %d threads, kernels %s\n",
                options.model.c_str(), model.dominant_type().c_str(),
                static_cast<long long>(h.n_layers), static_cast<long long>(h.dim),
                static_cast<long long>(h.vocab_size), pool.size(), runtime::runtime_kernels().isa);
    std::fflush(stdout);
  }
  const auto r = runtime::bench_model(model, pool, options.model_bench);
  nlohmann::ordered_json out;
  out["model"] = options.model;
  out["type"] = model.dominant_type();
  out["threads"] = r.threads;
  out["isa"] = r.isa;
  out["prefill_tokens"] = options.model_bench.prefill_tokens;
  out["decode_tokens"] = options.model_bench.decode_tokens;
  out["repeats"] = options.model_bench.repeats;
  out["prefill_tokens_per_s"] = r.prefill_tokens_per_s;
  out["prefill_tokens_per_s_min"] = r.prefill_tokens_per_s_min;
  out["prefill_tokens_per_s_max"] = r.prefill_tokens_per_s_max;
  out["decode_tokens_per_s"] = r.decode_tokens_per_s;
  out["decode_ms_per_token"] = r.decode_ms_per_token;
  out["decode_ms_per_token_min"] = r.decode_ms_per_token_min;
  out["decode_ms_per_token_max"] = r.decode_ms_per_token_max;
  out["file_bytes"] = r.file_bytes;
  out["session_bytes"] = r.session_bytes;
  out["peak_rss_bytes"] = r.peak_rss_bytes;
  if (!options.report.empty()) core::write_json_atomic(options.report, out);
  if (options.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf(
      "  %-10s %10.1f tokens/s  (%lld tokens in one batch; median of %d, range %.1f-%.1f)\n",
      "prefill", r.prefill_tokens_per_s, static_cast<long long>(options.model_bench.prefill_tokens),
      options.model_bench.repeats, r.prefill_tokens_per_s_min, r.prefill_tokens_per_s_max);
  std::printf(
      "  %-10s %10.2f ms/token = %.1f tokens/s  (%lld tokens; median of %d, range "
      "%.2f-%.2f ms)\n",
      "decode", r.decode_ms_per_token, r.decode_tokens_per_s,
      static_cast<long long>(options.model_bench.decode_tokens), options.model_bench.repeats,
      r.decode_ms_per_token_min, r.decode_ms_per_token_max);
  std::printf("  %-10s %10s  (KV cache and buffers %s; peak RSS %s)\n", "file",
              core::format_bytes(r.file_bytes).c_str(), core::format_bytes(r.session_bytes).c_str(),
              core::format_bytes(r.peak_rss_bytes).c_str());
  return 0;
}

int run_train_bench(const BenchOptions& options) {
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

  if (!options.report.empty()) {
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
    core::write_json_atomic(options.report, out);
  }
  return 0;
}

int run_kernel_bench(BenchOptions options) {
  if (options.kernel_bench.cols % io::kQuantBlock != 0) {
    throw InputError(str("--cols ", options.kernel_bench.cols, " is not a multiple of ",
                         io::kQuantBlock, " (the quantized block size)"));
  }
  options.kernel_bench.threads = std::max(0, options.threads);
  const auto report = runtime::run_kernel_bench(options.kernel_bench);
  if (!options.report.empty()) core::write_json_atomic(options.report, report);
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    runtime::print_kernel_bench_table(report, std::cout);
  }
  return 0;
}

// Encodes every line of the text file (one text per line, as a corpus of documents is encoded)
// `repeats` times on this thread; reports the median round.
int run_tokenizer_bench(const BenchOptions& options) {
  if (options.text_file.empty()) {
    throw InputError("bench --tokenizer needs --text-file FILE, the text to encode");
  }
  const auto tokenizer = data::open_tokenizer(options.tokenizer);
  const std::string text = core::read_file(options.text_file, "text file");
  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    lines.push_back(std::string_view(text).substr(begin, end - begin));
    begin = end + 1;
  }
  const int repeats = std::max(1, options.model_bench.repeats);
  std::vector<double> seconds;
  int64_t tokens = 0;
  std::vector<std::vector<int32_t>> ids(lines.size());
  for (int round = 0; round < repeats; ++round) {
    const auto start = std::chrono::steady_clock::now();
    int64_t count = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      ids[i] = tokenizer->encode(lines[i]);
      count += static_cast<int64_t>(ids[i].size());
    }
    seconds.push_back(seconds_since(start));
    tokens = count;
  }
  const double median_s = median(seconds);
  const double mb_per_s = static_cast<double>(text.size()) / 1e6 / median_s;
  nlohmann::ordered_json out = {
      {"tokenizer", options.tokenizer},
      {"description", tokenizer->description()},
      {"vocab_size", tokenizer->vocab_size()},
      {"text_file", options.text_file},
      {"bytes", text.size()},
      {"lines", lines.size()},
      {"tokens", tokens},
      {"bytes_per_token", tokens > 0 ? static_cast<double>(text.size()) / tokens : 0.0},
      {"repeats", repeats},
      {"seconds", seconds},
      {"median_seconds", median_s},
      {"mb_per_s", mb_per_s},
      {"tokens_per_s", static_cast<double>(tokens) / median_s},
      {"threads", 1},
  };
  if (!options.ids_out.empty()) {
    std::string listing;
    for (const auto& line : ids) {
      for (size_t k = 0; k < line.size(); ++k) listing += (k ? " " : "") + std::to_string(line[k]);
      listing += "\n";
    }
    core::write_file_atomic(options.ids_out, listing);
  }
  if (!options.report.empty()) core::write_json_atomic(options.report, out);
  if (options.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf(
        "bench tokenizer %s: %s\n  %s bytes, %s lines -> %s tokens (%.2f bytes/token)\n"
        "  encode, one thread, median of %d: %.3f s = %.2f MB/s, %s tokens/s\n",
        options.tokenizer.c_str(), tokenizer->description().c_str(),
        core::format_count(static_cast<int64_t>(text.size())).c_str(),
        core::format_count(static_cast<int64_t>(lines.size())).c_str(),
        core::format_count(tokens).c_str(), out["bytes_per_token"].get<double>(), repeats, median_s,
        mb_per_s,
        core::format_count(static_cast<int64_t>(out["tokens_per_s"].get<double>())).c_str());
  }
  return 0;
}

// All-reduce time and bandwidth between the ranks of a process group (run under launch or
// torchrun), for buffers of 4 KB to 64 MB: the median of the repeats after a warm-up, the
// algorithm bandwidth bytes / t and the bus bandwidth 2 (n - 1) / n x bytes / t, the rate each
// link carries in a ring all-reduce (comparable across world sizes). Rank 0 reports.
int run_allreduce_bench(const BenchOptions& options) {
  const auto group = join_process_group();
  if (!group) {
    throw InputError(
        "bench --allreduce measures the ranks of a process group: run it as 'edgedistill launch "
        "--nproc 2 -- bench --allreduce' (or under torchrun)");
  }
  const auto& env = group->env();
  train::configure_threads(options.threads < 0 ? 0 : options.threads, false, env.local_world_size);
  const int repeats = options.model_bench.repeats;
  const double ranks = static_cast<double>(env.world_size);
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int64_t bytes = 4096; bytes <= (int64_t{64} << 20); bytes *= 4) {
    const auto buffer = torch::ones({bytes / 4}, torch::kFloat32);
    std::vector<double> seconds;
    for (int i = 0; i < repeats + 2; ++i) {
      buffer.fill_(1.0);
      group->barrier("the all-reduce bench");
      const auto start = std::chrono::steady_clock::now();
      group->sum_in_place(buffer, "the all-reduce bench");
      if (i >= 2) seconds.push_back(seconds_since(start));
      const float first = buffer[0].item<float>(), last = buffer[-1].item<float>();
      ED_CHECK(first == ranks && last == ranks, "the all-reduce of ones over ", ranks,
               " ranks gave ", first, " and ", last);
    }
    // The ranks' medians, averaged (they start together after the barrier).
    const double mean_seconds = group->sum({median(seconds)}, "the all-reduce bench")[0] / ranks;
    const double algorithm_gbs = static_cast<double>(bytes) / mean_seconds / 1e9;
    rows.push_back({{"bytes", bytes},
                    {"seconds", mean_seconds},
                    {"algbw_gb_s", algorithm_gbs},
                    {"busbw_gb_s", algorithm_gbs * 2.0 * (ranks - 1.0) / ranks}});
  }
  if (!group->is_main()) return 0;
  nlohmann::ordered_json out;
  out["world_size"] = env.world_size;
  out["backend"] = "gloo";
  out["repeats"] = repeats;
  out["sizes"] = rows;
  if (options.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::printf("all-reduce over %d ranks (gloo, median of %d):\n%12s %12s %12s %12s\n",
                env.world_size, repeats, "bytes", "time", "algbw GB/s", "busbw GB/s");
    for (const auto& row : rows) {
      std::printf("%12lld %10.1f us %12.3f %12.3f\n",
                  static_cast<long long>(row["bytes"].get<int64_t>()),
                  row["seconds"].get<double>() * 1e6, row["algbw_gb_s"].get<double>(),
                  row["busbw_gb_s"].get<double>());
    }
  }
  if (!options.report.empty()) core::write_json_atomic(options.report, out);
  return 0;
}

int run_bench(const BenchOptions& options) {
  const int modes = (options.model.empty() ? 0 : 1) + (options.config.file.empty() ? 0 : 1) +
                    (options.kernels ? 1 : 0) + (options.tokenizer.empty() ? 0 : 1) +
                    (options.allreduce ? 1 : 0);
  if (modes != 1) {
    throw InputError(
        "bench needs exactly one of --model FILE.gguf (runtime speed), --kernels (kernels "
        "against memory bandwidth), --train-config RECIPE (training throughput), --tokenizer "
        "PATH --text-file FILE (encoding speed) or --allreduce (under launch)");
  }
  if (options.allreduce) return run_allreduce_bench(options);
  if (options.kernels) return run_kernel_bench(options);
  if (!options.tokenizer.empty()) return run_tokenizer_bench(options);
  return options.model.empty() ? run_train_bench(options) : run_model_bench(options);
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<BenchOptions>();
  auto* command = app.add_subcommand(
      "bench",
      "Benchmark a GGUF model in the runtime (--model: prefill and decode speed, median of 5 "
      "after a warm-up), the runtime's kernels against memory bandwidth (--kernels), or training "
      "throughput and MFU (--train-config)");
  command->add_option(
      "-m,--model", options->model,
      "GGUF file, or a checkpoint, run or Hugging Face folder (exported once to f16 in the cache)");
  command
      ->add_option("-p,--prefill-tokens", options->model_bench.prefill_tokens,
                   "--model: prompt tokens processed as one batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("-n,--decode-tokens", options->model_bench.decode_tokens,
                   "--model: tokens generated one at a time")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("-r,--repeats", options->model_bench.repeats,
                   "--model, --tokenizer: measured runs (the median is reported)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--kernels", options->kernels,
                    "measure the runtime's matrix-vector kernels (every build this CPU runs) "
                    "against the machine's read bandwidth");
  command->add_flag("--allreduce", options->allreduce,
                    "all-reduce time and bandwidth between data-parallel ranks, 4 KB to 64 MB "
                    "(run under launch: edgedistill launch --nproc 2 -- bench --allreduce)");
  command->add_option("--rows", options->kernel_bench.rows, "--kernels: weight matrix rows")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--cols", options->kernel_bench.cols,
                   "--kernels: weight matrix columns (a multiple of 32)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--kernel-repeats", options->kernel_bench.repeats,
                   "--kernels: timed runs per measurement (the median is reported)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--train-config", options->config.file,
                      "training recipe whose model and batch shape to measure");
  command->add_option("-s,--set", options->config.overrides,
                      "--train-config: override a recipe key: --set model.n_layers=4 (repeatable)");
  command->add_option("--steps", options->steps, "--train-config: measured steps (after warm-up)")
      ->check(CLI::PositiveNumber);
  command->add_option("--warmup", options->warmup, "--train-config: unmeasured warm-up steps")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--batch-size", options->batch_size,
                      "--train-config: sequences per step (default: the recipe's)");
  command->add_option("--seq-len", options->seq_len,
                      "--train-config: tokens per sequence (default: the recipe's)");
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)");
  command
      ->add_option("--device", options->device,
                   "--train-config: cpu, or cuda where LibTorch has CUDA")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command
      ->add_option("--gemm-size", options->gemm_size,
                   "--train-config: n of the n^3 reference matmul")
      ->check(CLI::PositiveNumber);
  command->add_flag("--json", options->json,
                    "--model, --kernels, --allreduce: print one JSON object instead of the table");
  command->add_option("--report", options->report, "also write the results to this JSON file");
  command->add_option("--tokenizer", options->tokenizer,
                      "benchmark this tokenizer's encoding (any tokenizer path, as for tokenize "
                      "--model) on --text-file, one line per text, on one thread (-r rounds)");
  command->add_option("--text-file", options->text_file, "--tokenizer: the text to encode");
  command->add_option("--ids-out", options->ids_out,
                      "--tokenizer: also write the ids, one line of ids per line of text");
  command->callback([options, &exit_code] { exit_code = run_bench(*options); });
}

}  // namespace edgedistill::cli
