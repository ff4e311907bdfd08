// edgedistill quantize: a trained llama checkpoint -> an int4/int8 GGUF file by round-to-nearest,
// GPTQ, AWQ or AWQ then GPTQ (quantize/), with calibration on the model's training data, a
// mixed-precision plan, a per-layer error report against round-to-nearest, and the whole model
// scored against the float model in the runtime (perplexity, KL, top-1), as verify does.
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/calibration_options.h"
#include "cli/command.h"
#include "cli/commands.h"
#include "cli/reference_eval.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timing.h"
#include "data/prepared_data.h"
#include "distill/teacher.h"
#include "quantize/gguf_export.h"
#include "quantize/imatrix.h"
#include "quantize/quant_plan.h"
#include "quantize/quantize_model.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

// FILE.gguf -> FILE.quant.json beside it.
fs::path default_report_path(const fs::path& out) {
  fs::path report = out;
  return report.replace_extension(".quant.json");
}

nlohmann::ordered_json error_json(const quant::RoundingError& error) {
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"weight", number(error.weight)}, {"output", number(error.output)}};
}

nlohmann::ordered_json comparison_json(const runtime::LogitComparison& c, uint64_t bytes) {
  return {{"perplexity", c.perplexity()},
          {"reference_perplexity", c.reference_perplexity()},
          {"ppl_increase_pct", 100.0 * (c.perplexity() / c.reference_perplexity() - 1.0)},
          {"mean_kl", c.mean_kl()},
          {"top1_agreement", c.top1_agreement()},
          {"positions", c.positions()},
          {"file_bytes", bytes}};
}

void print_summary(const nlohmann::ordered_json& report) {
  const std::string method = report["method"];
  std::printf("quantize %s -> %s (%s, %s, plan %s)\n", report["model"].get<std::string>().c_str(),
              report["out"].get<std::string>().c_str(), method.c_str(),
              report["type"].get<std::string>().c_str(),
              report["plan"]["source"].get<std::string>().c_str());
  if (report["calibration"]["tokens"].get<int64_t>() > 0) {
    std::printf("  calibration: %s tokens (%lld windows of %lld) from the %s split of %s\n",
                core::format_count(report["calibration"]["tokens"].get<int64_t>()).c_str(),
                static_cast<long long>(report["calibration"]["windows"].get<int64_t>()),
                static_cast<long long>(report["calibration"]["context"].get<int64_t>()),
                report["calibration"]["split"].get<std::string>().c_str(),
                report["calibration"]["data"].get<std::string>().c_str());
  }
  std::printf("\n  %-26s %-5s %-11s %-5s %21s %21s\n", "layer", "type", "shape", "round",
              "weight err: this/rtn", "output err: this/rtn");
  auto cell = [](const nlohmann::json& v) { return v.is_null() ? NAN : v.get<double>(); };
  double sum_ratio = 0.0;
  int ratios = 0;
  // "0.0123/0.0456", or "-" where there is no value (the embedding has no output error).
  auto pair = [](double a, double b) {
    if (!std::isfinite(a) || !std::isfinite(b)) return std::string("-");
    char text[48];
    std::snprintf(text, sizeof text, "%.4f/%.4f", a, b);
    return std::string(text);
  };
  for (const auto& layer : report["layers"]) {
    const double out_this = cell(layer["error"]["output"]),
                 out_rtn = cell(layer["rtn_error"]["output"]);
    std::printf("  %-26s %-5s %5lldx%-5lld %-5s %21s %21s\n",
                layer["name"].get<std::string>().c_str(), layer["type"].get<std::string>().c_str(),
                static_cast<long long>(layer["rows"].get<int64_t>()),
                static_cast<long long>(layer["cols"].get<int64_t>()),
                layer["rounding"].get<std::string>().c_str(),
                pair(cell(layer["error"]["weight"]), cell(layer["rtn_error"]["weight"])).c_str(),
                pair(out_this, out_rtn).c_str());
    if (std::isfinite(out_this) && std::isfinite(out_rtn) && out_rtn > 0) {
      sum_ratio += out_this / out_rtn;
      ++ratios;
    }
  }
  if (ratios > 0) {
    std::printf("  mean output error relative to round-to-nearest: %.3f over %d layers\n",
                sum_ratio / ratios, ratios);
  }
  if (report.contains("evaluation")) {
    const auto& eval = report["evaluation"];
    std::printf("\n  %s split, %s tokens (windows of %lld), against the float model:\n",
                eval["split"].get<std::string>().c_str(),
                core::format_count(eval["tokens"].get<int64_t>()).c_str(),
                static_cast<long long>(eval["context"].get<int64_t>()));
    std::printf("  %-16s %10s %11s %11s %10s %9s\n", "model", "size", "perplexity", "vs float",
                "mean KL", "top-1");
    std::printf("  %-16s %10s %11.3f\n", "float32",
                core::format_bytes(report["float_bytes"].get<uint64_t>()).c_str(),
                eval["models"].front()["reference_perplexity"].get<double>());
    for (const auto& [label, m] : eval["models"].items()) {
      std::printf("  %-16s %10s %11.3f %+10.3f%% %10.5f %8.2f%%\n", label.c_str(),
                  core::format_bytes(m["file_bytes"].get<uint64_t>()).c_str(),
                  m["perplexity"].get<double>(), m["ppl_increase_pct"].get<double>(),
                  m["mean_kl"].get<double>(), 100 * m["top1_agreement"].get<double>());
    }
  }
  std::printf("\n  time: quantize %.1f s, export %.1f s",
              report["seconds"]["quantize"].get<double>(),
              report["seconds"]["export"].get<double>());
  if (report["seconds"].contains("evaluate")) {
    std::printf(", evaluate %.1f s", report["seconds"]["evaluate"].get<double>());
  }
  std::printf("\n  wrote %s (%s) and %s\n", report["out"].get<std::string>().c_str(),
              core::format_bytes(report["file_bytes"].get<uint64_t>()).c_str(),
              report["report"].get<std::string>().c_str());
}

std::vector<std::string> quantize_types() {
  std::vector<std::string> names = {"q4_0", "q4_1", "q8_0", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"};
  for (const auto& mix : quant::known_mixes()) names.push_back(mix.name);
  return names;
}

}  // namespace

int run_quantize(const QuantizeCliOptions& options) {
  const auto method = quant::parse_quant_method(options.method);
  const auto mix = quant::find_mix(options.type);
  const auto type =
      mix ? std::optional<io::GgmlType>(mix->base) : io::parse_ggml_type(options.type);
  ED_CHECK(method && type, "checked by CLI11");
  if (options.block_size % 32 != 0) {
    throw InputError(str("--block-size ", options.block_size, " is not a multiple of 32"));
  }
  if (!options.imatrix.empty() && *method != quant::QuantMethod::rtn) {
    throw InputError(
        str("--imatrix weights round-to-nearest's K-quant scale search; GPTQ and AWQ "
            "weigh errors by their own calibration Hessians: use --method rtn"));
  }
  // The plan file and the importance matrix first: a typo there should not cost a calibration
  // pass.
  std::optional<quant::QuantPlan> plan_file;
  if (!options.plan.empty()) plan_file = quant::read_plan(options.plan);
  std::optional<quant::Imatrix> imatrix;
  if (!options.imatrix.empty()) imatrix = quant::read_imatrix(options.imatrix);
  const int threads = train::configure_threads(options.threads, false);
  if (options.out.size() < 6 || options.out.substr(options.out.size() - 5) != ".gguf") {
    throw InputError(str("--out ", options.out, ": name the output FILE.gguf"));
  }
  const fs::path model_dir = distill::resolve_checkpoint_dir(options.model, "--model");
  auto loaded = model::load_model(model_dir);
  if (loaded.meta.config.arch != "llama") {
    throw InputError(str(model_dir.string(), " holds a '", loaded.meta.config.arch,
                         "' model; only llama models quantize to GGUF"));
  }
  auto& model = dynamic_cast<model::LlamaModelImpl&>(*loaded.module);
  model.eval();
  const model::LlamaConfig& config = model.config();
  const quant::QuantPlan plan = plan_file ? *plan_file
                                : mix     ? quant::mix_plan(*mix, config)
                                          : quant::default_plan(*type);

  quant::QuantizeOptions qopts;
  qopts.method = *method;
  qopts.tensor_types = quant::resolve_plan(plan, *type, config);
  qopts.gptq.act_order = options.act_order;
  qopts.gptq.block_size = options.block_size;
  qopts.gptq.damp = options.damp;
  quant::GgufExportOptions export_options;
  export_options.type = *type;
  export_options.tensor_types = qopts.tensor_types;
  if (mix && !plan_file) {
    export_options.file_type = mix->file_type;
    export_options.file_type_name = mix->name;
  }
  // K-quant rows that are not whole super-blocks are rounded to their fallback type, the one the
  // file will hold.
  for (const auto& matrix : quant::export_matrix_types(config, export_options)) {
    const auto it = qopts.tensor_types.find(matrix.name);
    if (it != qopts.tensor_types.end()) it->second = matrix.type;
  }
  export_options.tensor_types = qopts.tensor_types;
  export_options.tokenizer_dir = options.tokenizer;
  export_options.name = options.name;
  quant::check_export_widths(config, export_options);
  nlohmann::ordered_json imatrix_record;
  if (imatrix) {
    quant::check_imatrix_fits(*imatrix, model, options.imatrix);
    int64_t weighted = 0;
    for (const auto& [name, tensor_type] : qopts.tensor_types) {
      std::vector<float> importance = imatrix->importance(name);
      if (importance.empty()) continue;
      if (io::ggml_type_traits(tensor_type).block_elems == io::kSuperBlock) ++weighted;
      qopts.importance[name] = std::move(importance);
    }
    if (weighted == 0) {
      core::warn("quantize: --imatrix ", options.imatrix,
                 ": no matrix with an entry is a K-quant, so the importances go unused (the "
                 "other types round without them)");
    }
    imatrix_record = {{"file", options.imatrix},
                      {"format", imatrix->legacy ? "dat" : "gguf"},
                      {"entries", imatrix->entries.size()},
                      {"weighted_matrices", weighted},
                      {"chunks", imatrix->chunk_count},
                      {"datasets", imatrix->datasets}};
    export_options.metadata["edgedistill.quantization.imatrix"] =
        fs::path(options.imatrix).filename().string();
  }

  // Calibration windows from the training data (never the split the model is scored on).
  torch::Tensor windows;
  nlohmann::ordered_json calibration = {{"tokens", 0}};
  if (*method != quant::QuantMethod::rtn || options.calibration.calib_tokens > 0) {
    if (options.calibration.calib_tokens <= 0) {
      throw InputError(str("--method ", options.method, " needs calibration: --calib-tokens > 0"));
    }
    const auto data = open_calibration_data(options.calibration, loaded.meta, model_dir);
    auto drawn = draw_calibration_windows(data, options.calibration, config.max_seq_len);
    windows = drawn.windows;
    calibration = drawn.record;
  }

  core::info("quantize: ", model_dir.string(), " -> ", options.out, " (", options.method, ", ",
             options.type, ", ", threads, " threads)");
  const quant::QuantizeResult result = quant::quantize_llama(model, windows, qopts);

  // Export: the pass's codes for block-typed matrices, the (AWQ-scaled) float model elsewhere.
  const auto export_start = std::chrono::steady_clock::now();
  std::map<std::string, torch::Tensor> parameters;
  for (const auto& item : model.named_parameters()) parameters[item.key()] = item.value();
  export_options.metadata["edgedistill.quantization.method"] = options.method;
  export_options.metadata["edgedistill.quantization.plan"] = plan.source;
  export_options.metadata["edgedistill.quantization.calibration_tokens"] =
      std::to_string(calibration["tokens"].get<int64_t>());
  const auto summary = quant::export_llama_gguf(
      model_dir, export_options, options.out,
      [&](const std::string& name, io::GgmlType, const float*, int64_t, int64_t) {
        const auto it = result.bytes.find(name);
        ED_CHECK(it != result.bytes.end(), "the quantization pass did not round ", name);
        return it->second;
      },
      [&](const std::string& name) {
        const auto tensor = parameters.at(name).detach().to(torch::kFloat32).contiguous();
        return std::vector<float>(tensor.data_ptr<float>(),
                                  tensor.data_ptr<float>() + tensor.numel());
      });
  const double export_seconds = core::seconds_since(export_start);

  nlohmann::ordered_json report;
  report["model"] = model_dir.string();
  report["out"] = options.out;
  const fs::path report_path =
      options.report.empty() ? default_report_path(options.out) : fs::path(options.report);
  report["report"] = report_path.string();
  report["method"] = options.method;
  report["type"] = options.type;
  nlohmann::ordered_json rules = nlohmann::ordered_json::array();
  for (const auto& rule : plan.rules) {
    rules.push_back({{"pattern", rule.pattern}, {"type", io::ggml_type_traits(rule.type).name}});
  }
  report["plan"] = {{"source", plan.source}, {"rules", rules}};
  report["gptq"] = {
      {"act_order", options.act_order}, {"block_size", options.block_size}, {"damp", options.damp}};
  report["calibration"] = calibration;
  if (imatrix) report["imatrix"] = imatrix_record;
  report["threads"] = threads;
  report["parameters"] = summary.parameters;
  report["file_bytes"] = summary.file_bytes;
  report["float_bytes"] = static_cast<uint64_t>(summary.parameters) * 4;
  report["bits_per_parameter"] = 8.0 * static_cast<double>(summary.file_bytes) / summary.parameters;
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const auto& layer : result.layers) {
    nlohmann::ordered_json row = {{"name", layer.name},
                                  {"type", io::ggml_type_traits(layer.type).name},
                                  {"rows", layer.rows},
                                  {"cols", layer.cols},
                                  {"rounding", layer.rounding},
                                  {"error", error_json(layer.method)},
                                  {"rtn_error", error_json(layer.rtn)},
                                  {"dead_inputs", layer.dead_inputs},
                                  {"seconds", layer.seconds}};
    if (layer.awq_alpha >= 0) {
      row["awq_alpha"] = layer.awq_alpha;
      row["awq_clip"] = layer.awq_clip;
    }
    layers.push_back(row);
  }
  report["layers"] = layers;
  report["seconds"] = {{"quantize", result.seconds}, {"export", export_seconds}};

  if (!options.calibration.no_eval) {
    const auto eval_start = std::chrono::steady_clock::now();
    const distill::Teacher reference = distill::load_teacher(model_dir, torch::Device(torch::kCPU));
    const runtime::LlamaModel quantized(options.out);
    check_export_of(quantized, options.out, reference);
    std::vector<const runtime::LlamaModel*> models;
    std::vector<std::string> labels;
    // The baseline: round-to-nearest with the same plan, written beside the output for the run.
    std::unique_ptr<runtime::LlamaModel> baseline;
    const fs::path baseline_path = fs::path(options.out).replace_extension(".rtn-baseline.gguf");
    if (options.baseline && *method != quant::QuantMethod::rtn) {
      auto rtn_options = export_options;
      rtn_options.metadata["edgedistill.quantization.method"] = "rtn";
      quant::export_llama_gguf(model_dir, rtn_options, baseline_path);
      baseline = std::make_unique<runtime::LlamaModel>(baseline_path);
      models.push_back(baseline.get());
      labels.push_back(str("rtn ", options.type));
    }
    models.push_back(&quantized);
    labels.push_back(str(options.method, " ", options.type));
    runtime::ThreadPool pool(threads);
    ReferenceEvalOptions eval_options;
    eval_options.split = options.calibration.eval_split;
    eval_options.context = options.calibration.eval_context;
    eval_options.max_tokens = options.calibration.eval_tokens;
    const ReferenceEval eval = evaluate_against_reference(models, pool, reference, eval_options);
    nlohmann::ordered_json evaluated;
    for (size_t m = 0; m < models.size(); ++m) {
      evaluated[labels[m]] = comparison_json(eval.comparisons[m], models[m]->file().file_bytes());
    }
    report["evaluation"] = {{"data", eval.data_dir.string()},
                            {"split", options.calibration.eval_split},
                            {"context", eval.context},
                            {"tokens", eval.comparisons.front().positions()},
                            {"models", evaluated}};
    if (baseline) {
      baseline.reset();
      fs::remove(baseline_path);
    }
    report["seconds"]["evaluate"] = core::seconds_since(eval_start);
  }
  core::write_json_atomic(report_path, report);
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    print_summary(report);
  }
  return 0;
}

void add_quantize_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<QuantizeCliOptions>();
  auto* command = app.add_subcommand(
      "quantize",
      "Quantize a trained llama checkpoint to a GGUF file with round-to-nearest, GPTQ or AWQ "
      "(calibrated on its training data), report each layer's error against round-to-nearest, "
      "and score the result against the float model");
  command
      ->add_option("--model", options->model,
                   "checkpoint directory, run directory (final/), Hugging Face folder or GGUF file")
      ->required();
  command
      ->add_option("--method", options->method,
                   "rtn, gptq, awq, or awq+gptq (AWQ scaling, then GPTQ rounding)")
      ->check(CLI::IsMember(quant::quant_method_names()))
      ->capture_default_str();
  command
      ->add_option("--type", options->type,
                   "type of the weight matrices: q4_0, q4_1, q8_0, q5_0, q5_1, the K-quants q4_k, "
                   "q5_k, q6_k, or llama.cpp's mixes q4_k_m, q4_k_s, q5_k_m, q5_k_s (a plan may "
                   "override per tensor)")
      ->check(CLI::IsMember(quantize_types()))
      ->capture_default_str();
  command->add_option("--plan", options->plan,
                      "mixed-precision plan (JSON: tensor name patterns -> types); default: "
                      "token_embd and output at q8_0 for 4-bit types");
  add_calibration_options(
      command, options->calibration,
      "calibration tokens (0 with --method rtn: no calibration, weight errors only)");
  command->add_option("--imatrix", options->imatrix,
                      "importance matrix (GGUF or legacy .dat, from `edgedistill imatrix` or "
                      "llama-imatrix) weighting the K-quant scale search; --method rtn");
  command->add_flag("--act-order", options->act_order,
                    "GPTQ: round columns by decreasing Hessian diagonal (with static groups)");
  command
      ->add_option("--block-size", options->block_size,
                   "GPTQ: columns per lazy batch (a multiple of 32)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--damp", options->damp, "GPTQ: damping, a share of the Hessian's mean diagonal")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_evaluation_options(command, options->calibration, "split the result is scored on",
                         "skip scoring the result against the float model");
  command->add_flag("--baseline", options->baseline,
                    "also score round-to-nearest with the same plan, side by side");
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--tokenizer", options->tokenizer,
                      "tokenizer directory (default: the model's data directory's tokenizer/)");
  command->add_option("--name", options->name,
                      "general.name (default: the run's or the directory's name)");
  command->add_option("-o,--out", options->out, "the GGUF file to write")->required();
  command->add_option("--report", options->report,
                      "the JSON report (default: OUT with .quant.json)");
  command->add_flag("--json", options->json, "print the JSON report instead of the summary");
  command->callback([options, &exit_code] { exit_code = run_quantize(*options); });
}

}  // namespace edgedistill::cli
