// edgedistill prune: a trained llama checkpoint -> a pruned checkpoint that the rest of the
// pipeline (distill --student, quantize, export, verify) takes like any other (prune/).
// Unstructured and N:M pruning (magnitude, Wanda) keeps the shape and writes mask.safetensors
// beside the weights so a healing run keeps the zeros; structured pruning removes GQA groups, FFN
// channels and blocks, and writes a smaller model.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>

#include "cli/calibration_options.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timing.h"
#include "data/prepared_data.h"
#include "distill/teacher.h"
#include "model/checkpoint.h"
#include "prune/structured.h"
#include "prune/unstructured.h"
#include "train/language_model_task.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kReportFileName = "prune.json";

int64_t nonzero(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += (p != 0).sum().item<int64_t>();
  return n;
}

// Checks that the options fit the method before any work is done.
void check_options(const PruneCliOptions& o, std::optional<prune::NmPattern>& pattern) {
  const bool structured = o.method == "structured";
  const bool unstructured_targets = o.sparsity > 0 || !o.pattern.empty();
  const bool structured_targets = o.heads > 0 || o.ffn > 0 || o.layers > 0 || o.params > 0;
  if (!o.pattern.empty()) {
    pattern = prune::parse_nm_pattern(o.pattern);
    if (!pattern) {
      throw InputError(
          str("--pattern '", o.pattern, "': give N:M with 0 < N < M, e.g. 2:4 or 4:8"));
    }
  }
  if (structured) {
    if (unstructured_targets) {
      throw InputError(
          "--sparsity and --pattern are for --method magnitude or wanda; structured pruning "
          "takes --heads, --ffn, --layers or --params");
    }
    if (!structured_targets) {
      throw InputError("--method structured needs a target: --heads, --ffn, --layers or --params");
    }
    return;
  }
  if (structured_targets) {
    throw InputError(
        str("--heads, --ffn, --layers and --params are for --method structured; --method ",
            o.method, " takes --sparsity or --pattern"));
  }
  if (!unstructured_targets) {
    throw InputError(str("--method ", o.method, " needs --sparsity S (e.g. 0.5) or --pattern N:M"));
  }
  if (o.sparsity > 0 && pattern) {
    throw InputError("give --sparsity or --pattern, not both (2:4 is 50 % by itself)");
  }
  if (o.sparsity >= 1) throw InputError(str("--sparsity ", o.sparsity, " must be below 1"));
  if (pattern && o.scope == "global") {
    throw InputError("--scope global does not apply to an N:M pattern (it is per group of inputs)");
  }
}

void print_summary(const nlohmann::ordered_json& report) {
  std::printf("prune %s -> %s (%s)\n", report["model"].get<std::string>().c_str(),
              report["out"].get<std::string>().c_str(),
              report["target"].get<std::string>().c_str());
  if (report["calibration"]["tokens"].get<int64_t>() > 0) {
    std::printf("  calibration: %s tokens from the %s split of %s\n",
                core::format_count(report["calibration"]["tokens"].get<int64_t>()).c_str(),
                report["calibration"]["split"].get<std::string>().c_str(),
                report["calibration"]["data"].get<std::string>().c_str());
  }
  const auto& p = report["parameters"];
  std::printf("  parameters: %s -> %s (%s non-zero, %.1f %% of the original)\n",
              core::format_count(p["before"].get<int64_t>()).c_str(),
              core::format_count(p["after"].get<int64_t>()).c_str(),
              core::format_count(p["nonzero_after"].get<int64_t>()).c_str(),
              100.0 * p["nonzero_after"].get<double>() / p["nonzero_before"].get<double>());
  std::printf("  %s: %s -> %s\n", model::kWeightsFileName,
              core::format_bytes(report["weights_bytes"]["before"].get<uint64_t>()).c_str(),
              core::format_bytes(report["weights_bytes"]["after"].get<uint64_t>()).c_str());
  if (report.contains("layers")) {
    std::printf("\n  %-24s %10s %10s %9s\n", "matrix", "weights", "zeros", "sparsity");
    for (const auto& layer : report["layers"]) {
      std::printf("  %-24s %10lld %10lld %8.2f%%\n", layer["name"].get<std::string>().c_str(),
                  static_cast<long long>(layer["weights"].get<int64_t>()),
                  static_cast<long long>(layer["zeros"].get<int64_t>()),
                  100.0 * layer["sparsity"].get<double>());
    }
  }
  if (report.contains("blocks")) {
    const auto& config = report["config"];
    std::printf(
        "\n  shape: %d -> %d blocks, %d -> %d heads (%d -> %d kv groups, width %d), FFN %d "
        "-> %d\n",
        report["config_before"]["n_layers"].get<int>(), config["n_layers"].get<int>(),
        report["config_before"]["n_heads"].get<int>(), config["n_heads"].get<int>(),
        report["config_before"]["n_kv_heads"].get<int>(), config["n_kv_heads"].get<int>(),
        report["head_dim"].get<int>(), report["config_before"]["ffn_dim"].get<int>(),
        config["ffn_dim"].get<int>());
    std::printf("  %-6s %-9s %10s  %-20s %s\n", "block", "kept", "influence", "kv groups kept",
                "group importance");
    for (const auto& block : report["blocks"]) {
      std::string groups, importance;
      for (const auto& g : block["kept_groups"]) groups += str(g.get<int>(), " ");
      for (const auto& v : block["group_importance"]) {
        char text[32];
        std::snprintf(text, sizeof text, "%.1f ", v.get<double>());
        importance += text;
      }
      std::printf("  %-6d %-9s %10.4f  %-20s %s\n", block["index"].get<int>(),
                  block["removed"].get<bool>() ? "removed" : "yes",
                  block["influence"].get<double>(), groups.c_str(), importance.c_str());
    }
  }
  if (report.contains("evaluation")) {
    const auto& e = report["evaluation"];
    const double before = e["perplexity_before"], after = e["perplexity_after"];
    std::printf("\n  %s perplexity (%s tokens, windows of %lld): %.3f -> %.3f (%+.1f %%)\n",
                e["split"].get<std::string>().c_str(),
                core::format_count(e["tokens"].get<int64_t>()).c_str(),
                static_cast<long long>(e["context"].get<int64_t>()), before, after,
                100.0 * (after / before - 1.0));
  }
  std::printf(
      "  time: %.1f s\n  wrote %s (model.json, %s%s, %s)\n", report["seconds"].get<double>(),
      report["out"].get<std::string>().c_str(), model::kWeightsFileName,
      report.contains("layers") ? str(", ", model::kMaskFileName).c_str() : "", kReportFileName);
}

}  // namespace

void check_prune_options(const PruneCliOptions& options) {
  std::optional<prune::NmPattern> pattern;
  check_options(options, pattern);
}

// Scored on the valid split (pruning is a development step; test is kept for the end). Wanda
// calibrates on 128 x 2048 tokens in its paper; 32,768 is what this corpus size warrants.
CalibrationOptions prune_calibration_defaults() {
  CalibrationOptions options;
  options.calib_tokens = 32768;
  options.eval_split = "valid";
  return options;
}

int run_prune(const PruneCliOptions& options) {
  std::optional<prune::NmPattern> pattern;
  check_options(options, pattern);
  const auto start = std::chrono::steady_clock::now();
  const int threads = train::configure_threads(options.threads, false);
  const fs::path model_dir = distill::resolve_checkpoint_dir(options.model, "--model");
  const fs::path out = fs::absolute(options.out);
  if (fs::exists(out) && !fs::exists(out / model::kModelFileName)) {
    throw InputError(
        str("--out ", out.string(), " exists and is not a checkpoint; name a new directory"));
  }
  auto loaded = model::load_model(model_dir);
  if (loaded.meta.config.arch != "llama") {
    throw InputError(str(model_dir.string(), " holds a '", loaded.meta.config.arch,
                         "' model; only llama models are pruned"));
  }
  auto& model = dynamic_cast<model::LlamaModelImpl&>(*loaded.module);
  model.eval();
  const bool structured = options.method == "structured";
  if (structured && !loaded.masks.empty()) {
    throw InputError(str(model_dir.string(),
                         " is already pruned unstructured (mask.safetensors); prune the dense "
                         "model structurally, then unstructured"));
  }

  // Data: calibration windows from the training split, evaluation on the valid split.
  const auto& co = options.calibration;
  std::optional<data::PreparedData> data;
  if (options.method != "magnitude" || !co.no_eval) {
    data.emplace(open_calibration_data(co, loaded.meta, model_dir));
  }
  const auto perplexity = [&](model::LlamaModelImpl& m) {
    const int64_t context = std::min<int64_t>(co.eval_context, m.config().max_seq_len);
    const auto [loss, tokens] = train::language_model_loss(
        m, data->shard(co.eval_split), context, 16, co.eval_tokens, torch::Device(torch::kCPU));
    return std::make_pair(std::exp(loss), tokens);
  };

  nlohmann::ordered_json report;
  report["model"] = model_dir.string();
  report["out"] = out.string();
  report["method"] = options.method;
  const int64_t params_before = model::parameter_count(model), nonzero_before = nonzero(model);
  std::pair<double, int64_t> before{NAN, 0};
  if (!co.no_eval) {
    core::info("prune: scoring ", model_dir.string(), " on the ", co.eval_split, " split");
    before = perplexity(model);
  }

  torch::Tensor windows;
  nlohmann::ordered_json calibration = {{"tokens", 0}};
  if (options.method != "magnitude") {
    if (co.calib_tokens <= 0) {
      throw InputError(str("--method ", options.method, " needs calibration: --calib-tokens > 0"));
    }
    auto drawn = draw_calibration_windows(*data, co, model.config().max_seq_len);
    windows = drawn.windows;
    calibration = drawn.record;
  }
  report["calibration"] = calibration;
  core::info("prune: ", model_dir.string(), " -> ", out.string(), " (", options.method, ", ",
             threads, threads == 1 ? " thread)" : " threads)");

  model::LlamaModel pruned{nullptr};
  model::WeightMasks masks;
  if (structured) {
    prune::StructuredOptions so;
    so.heads = options.heads;
    so.ffn = options.ffn;
    so.layers = options.layers;
    so.params = options.params;
    const auto plan =
        prune::plan_structured(model.config(), prune::calibrate_blocks(model, windows, 16), so);
    pruned = prune::shrink_model(model, plan);
    const auto& c = model.config();
    report["target"] =
        str("heads ", options.heads, ", ffn ", options.ffn, ", layers ", options.layers,
            options.params > 0 ? str(", params ", options.params) : "");
    report["config_before"] = {{"n_layers", c.n_layers},
                               {"n_heads", c.n_heads},
                               {"n_kv_heads", c.n_kv_heads},
                               {"ffn_dim", c.ffn_dim}};
    report["config"] = {{"n_layers", plan.config.n_layers},
                        {"n_heads", plan.config.n_heads},
                        {"n_kv_heads", plan.config.n_kv_heads},
                        {"ffn_dim", plan.config.ffn_dim}};
    report["head_dim"] = c.head_dim();
    report["heads_removed_share"] = 1.0 - static_cast<double>(plan.config.n_heads) / c.n_heads;
    report["ffn_removed_share"] = 1.0 - static_cast<double>(plan.config.ffn_dim) / c.ffn_dim;
    nlohmann::ordered_json blocks = nlohmann::ordered_json::array();
    for (int b = 0; b < c.n_layers; ++b) {
      const bool removed =
          std::binary_search(plan.removed_layers.begin(), plan.removed_layers.end(), b);
      blocks.push_back({{"index", b},
                        {"removed", removed},
                        {"influence", plan.influence[b]},
                        {"kept_groups", plan.kept_groups[b]},
                        {"group_importance", plan.group_importance[b]}});
    }
    report["blocks"] = blocks;
    if (options.heads > 0 &&
        std::abs(report["heads_removed_share"].get<double>() - options.heads) > 1e-9) {
      core::warn("--heads ", options.heads, ": removed ", c.n_kv_heads - plan.config.n_kv_heads,
                 " of ", c.n_kv_heads, " GQA groups per block, ",
                 100.0 * report["heads_removed_share"].get<double>(),
                 " % of the heads (groups are removed whole)");
    }
  } else {
    prune::UnstructuredOptions uo;
    uo.method = options.method;
    uo.sparsity = options.sparsity;
    if (pattern) uo.pattern = *pattern;
    uo.global = options.scope == "global";
    auto result = prune::prune_unstructured(model, windows, uo);
    for (auto& [name, mask] : result.masks) {
      const auto it = loaded.masks.find(name);
      masks[name] = it == loaded.masks.end() ? mask : mask * it->second;
    }
    for (const auto& [name, mask] : loaded.masks) masks.emplace(name, mask);
    pruned = model::LlamaModel(std::dynamic_pointer_cast<model::LlamaModelImpl>(loaded.module));
    report["target"] =
        pattern ? str(options.method, " ", options.pattern)
                : str(options.method, " ", options.sparsity * 100, " % per ",
                      uo.global ? "model" : (options.method == "wanda" ? "row" : "matrix"));
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& layer : result.layers) {
      const int64_t zeros = (masks.at(layer.name) == 0).sum().item<int64_t>();
      layers.push_back({{"name", layer.name},
                        {"weights", layer.weights},
                        {"zeros", zeros},
                        {"sparsity", static_cast<double>(zeros) / layer.weights}});
    }
    report["layers"] = layers;
  }
  pruned->eval();
  report["parameters"] = {{"before", params_before},
                          {"after", model::parameter_count(*pruned)},
                          {"nonzero_before", nonzero_before},
                          {"nonzero_after", nonzero(*pruned)}};

  if (!co.no_eval) {
    const auto after = perplexity(*pruned);
    report["evaluation"] = {
        {"data", data->dir().string()},
        {"split", co.eval_split},
        {"context", std::min<int64_t>(co.eval_context, pruned->config().max_seq_len)},
        {"tokens", after.second},
        {"perplexity_before", before.first},
        {"perplexity_after", after.first}};
  }

  // Write beside the target, then swap it in: an interrupted run leaves the old output whole.
  const fs::path staging = out.string() + ".partial";
  fs::remove_all(staging);
  auto meta = loaded.meta;
  meta.config.llama = pruned->config();
  model::save_model(staging, *pruned, meta, masks);
  report["weights_bytes"] = {{"before", fs::file_size(model_dir / model::kWeightsFileName)},
                             {"after", fs::file_size(staging / model::kWeightsFileName)}};
  report["threads"] = threads;
  report["seconds"] = core::seconds_since(start);
  core::write_json_atomic(staging / kReportFileName, report);
  fs::remove_all(out);
  fs::rename(staging, out);
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    print_summary(report);
  }
  return 0;
}

void add_prune_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PruneCliOptions>();
  auto* command = app.add_subcommand(
      "prune",
      "Prune a trained llama checkpoint: unstructured or N:M sparsity by magnitude or Wanda "
      "(masks kept with the checkpoint), or structured removal of GQA groups, FFN channels and "
      "blocks that makes the model really smaller; heal it with 'distill --student'");
  command
      ->add_option("--model", options->model,
                   "checkpoint directory, run directory (final/), Hugging Face folder or GGUF file")
      ->required();
  command
      ->add_option("--method", options->method,
                   "magnitude (|W|), wanda (|W| x input norm, per output row) or structured")
      ->check(CLI::IsMember({"magnitude", "wanda", "structured"}))
      ->required();
  command
      ->add_option("--sparsity", options->sparsity,
                   "magnitude/wanda: share of each block matrix's weights to zero, e.g. 0.5")
      ->check(CLI::Range(0.0, 1.0));
  command->add_option("--pattern", options->pattern,
                      "magnitude/wanda: N:M sparsity instead, e.g. 2:4 or 4:8 (N kept of every M "
                      "consecutive inputs)");
  command
      ->add_option("--scope", options->scope,
                   "magnitude/wanda: layer (the same share in every matrix) or global (one "
                   "threshold over all block matrices)")
      ->check(CLI::IsMember({"layer", "global"}))
      ->capture_default_str();
  command
      ->add_option("--heads", options->heads,
                   "structured: share of attention heads to remove, in whole GQA groups")
      ->check(CLI::Range(0.0, 1.0));
  command
      ->add_option("--ffn", options->ffn,
                   "structured: share of FFN channels to remove (kept width a multiple of 32)")
      ->check(CLI::Range(0.0, 1.0));
  command->add_option("--layers", options->layers, "structured: number of blocks to remove")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--params", options->params,
                   "structured: share of all parameters to remove; solves for the FFN width")
      ->check(CLI::Range(0.0, 1.0));
  add_calibration_options(command, options->calibration, "calibration tokens (Wanda, structured)");
  add_evaluation_options(command, options->calibration, "split scored before and after",
                         "skip the perplexity before and after");
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("-o,--out", options->out, "the pruned checkpoint directory to write")
      ->required();
  command->add_flag("--json", options->json, "print the JSON report instead of the summary");
  command->callback([options, &exit_code] { exit_code = run_prune(*options); });
}

}  // namespace edgedistill::cli
