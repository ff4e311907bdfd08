// edgedistill verify: a GGUF model run by the runtime, checked against the float LibTorch model it
// came from on held-out tokens (perplexity, KL divergence, top-1 agreement), plus its size and
// latency, against gates. Exit 0 when every gate passes, 1 when one fails (GateFailure).
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/calibration_options.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "cli/reference_eval.h"
#include "cli/runtime_model.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "distill/teacher.h"
#include "runtime/gates.h"
#include "runtime/logit_compare.h"
#include "runtime/model_bench.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

void print_table(const nlohmann::ordered_json& report) {
  const auto& m = report["metrics"];
  auto number = [&](const char* key) { return m.contains(key) ? m[key].get<double>() : NAN; };
  std::printf("verify %s against %s\n", report["model"].get<std::string>().c_str(),
              report["reference"].get<std::string>().c_str());
  std::printf("  %-24s %12.3f   (float reference %.3f, %+.3f %%)\n", "perplexity",
              number("perplexity"), number("reference_perplexity"), number("ppl_increase_pct"));
  std::printf("  %-24s %12.5f nats/token\n", "mean KL to reference", number("mean_kl"));
  std::printf("  %-24s %11.2f %%\n", "top-1 agreement", 100 * number("top1_agreement"));
  std::printf("  %-24s %12.0f in %lld windows of %lld tokens from the %s split\n", "tokens scored",
              number("positions"), static_cast<long long>(report["windows"].get<int64_t>()),
              static_cast<long long>(report["context"].get<int64_t>()),
              report["split"].get<std::string>().c_str());
  std::printf("  %-24s %12.2f MB\n", "file size", number("file_mb"));
  if (m.contains("decode_ms_per_token")) {
    std::printf("  %-24s %12.2f ms/token (%.1f tokens/s), prefill %.0f tokens/s\n", "decode",
                number("decode_ms_per_token"), number("decode_tokens_per_s"),
                number("prefill_tokens_per_s"));
  }
  for (const auto& gate : report["gates"]) {
    std::printf("  gate %-19s %s  %s\n", gate["key"].get<std::string>().c_str(),
                gate["passed"].get<bool>() ? "pass" : "FAIL",
                gate["detail"].get<std::string>().c_str());
  }
}

}  // namespace

int run_verify(const VerifyOptions& options) {
  // Read the gates first: a typo there should not cost a whole evaluation.
  const std::vector<runtime::Gate> gates =
      options.gates.empty() ? std::vector<runtime::Gate>{} : runtime::read_gates(options.gates);
  const int threads = train::configure_threads(options.threads, false);
  const runtime::LlamaModel model(runtime_model_path(options.model, "--model"));
  const distill::Teacher reference =
      distill::load_teacher(options.reference, torch::Device(torch::kCPU));
  check_export_of(model, options.model, reference);
  runtime::ThreadPool pool(threads);
  ReferenceEvalOptions eval_options;
  eval_options.data = options.data;
  eval_options.split = options.split;
  eval_options.context = options.context;
  eval_options.max_tokens = options.max_tokens;
  const ReferenceEval eval = evaluate_against_reference({&model}, pool, reference, eval_options);
  const runtime::LogitComparison& comparison = eval.comparisons.front();

  std::map<std::string, double> metrics;
  metrics["perplexity"] = comparison.perplexity();
  metrics["reference_perplexity"] = comparison.reference_perplexity();
  metrics["ppl_increase_pct"] =
      100.0 * (comparison.perplexity() / comparison.reference_perplexity() - 1.0);
  metrics["mean_kl"] = comparison.mean_kl();
  metrics["top1_agreement"] = comparison.top1_agreement();
  metrics["positions"] = static_cast<double>(comparison.positions());
  metrics["file_bytes"] = static_cast<double>(model.file().file_bytes());
  metrics["file_mb"] = static_cast<double>(model.file().file_bytes()) / 1e6;
  if (!options.skip_bench) {
    const auto bench = runtime::bench_model(model, pool, runtime::ModelBenchOptions{});
    metrics["prefill_tokens_per_s"] = bench.prefill_tokens_per_s;
    metrics["decode_tokens_per_s"] = bench.decode_tokens_per_s;
    metrics["decode_ms_per_token"] = bench.decode_ms_per_token;
  }
  metrics["peak_rss_bytes"] = static_cast<double>(runtime::peak_rss_bytes());

  const auto results = runtime::evaluate_gates(gates, metrics);
  nlohmann::ordered_json report;
  report["model"] = options.model;
  report["reference"] = reference.dir.string();
  report["data"] = eval.data_dir.string();
  report["split"] = options.split;
  report["context"] = eval.context;
  report["windows"] = eval.windows;
  report["threads"] = pool.size();
  report["isa"] = runtime::runtime_kernels().isa;
  report["model_type"] = model.dominant_type();
  nlohmann::ordered_json metric_json;
  for (const auto& [key, value] : metrics) metric_json[key] = value;
  report["metrics"] = metric_json;
  nlohmann::ordered_json gate_json = nlohmann::ordered_json::array();
  bool passed = true;
  for (const auto& result : results) {
    gate_json.push_back(
        {{"key", result.key},
         {"metric", result.metric},
         {"limit", result.limit},
         {"value", std::isfinite(result.value) ? nlohmann::json(result.value) : nlohmann::json()},
         {"passed", result.passed},
         {"detail", result.detail}});
    passed = passed && result.passed;
  }
  report["gates"] = gate_json;
  report["passed"] = passed;
  if (!options.report.empty()) core::write_json_atomic(options.report, report);
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    print_table(report);
  }
  if (!passed) {
    std::string failed;
    for (const auto& result : results) {
      if (!result.passed)
        failed += (failed.empty() ? "" : "; ") + result.key + ": " + result.detail;
    }
    throw GateFailure(failed);
  }
  return 0;
}

void add_verify_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<VerifyOptions>();
  auto* command = app.add_subcommand(
      "verify",
      "Check a GGUF model in the runtime against its float reference: perplexity, KL, top-1 "
      "agreement, size and latency, with gates (exit 1 when one fails)");
  command
      ->add_option("-m,--model", options->model,
                   "GGUF file, or a checkpoint, run or Hugging Face folder (exported once to f16 "
                   "in the cache)")
      ->required();
  command
      ->add_option("--reference", options->reference,
                   "the float model it was exported from: checkpoint, run directory, Hugging Face "
                   "folder or GGUF file")
      ->required();
  command->add_option("--data", options->data,
                      "prepared data (default: the data the reference was trained on)");
  add_scored_split_options(command, options->split, options->context, options->max_tokens);
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--gates", options->gates,
                      "JSON file of limits, e.g. {\"max_ppl_increase_pct\": 2, "
                      "\"min_top1_agreement\": 0.95, \"max_decode_ms_per_token\": 20, "
                      "\"max_file_mb\": 10}");
  command->add_option("--report", options->report, "write the JSON report to this file");
  command->add_flag("--json", options->json, "print the JSON report instead of the table");
  command->add_flag("--no-bench", options->skip_bench,
                    "skip the latency measurement (latency gates then fail)");
  command->callback([options, &exit_code] { exit_code = run_verify(*options); });
}

}  // namespace edgedistill::cli
