// edgedistill imatrix: runs a float llama checkpoint over calibration windows (the same options and
// defaults as quantize) and writes every matrix's input importances, E[x_j^2], as llama.cpp's
// importance matrix (GGUF, or the legacy .dat), which `quantize --imatrix` and llama-quantize
// both read (quantize/imatrix.h).
#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/calibration_options.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timing.h"
#include "distill/teacher.h"
#include "model/checkpoint.h"
#include "quantize/imatrix.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

struct ImatrixCliOptions {
  std::string model;
  CalibrationOptions calibration;
  std::string format = "auto";
  int threads = 0;
  std::string out;
};

quant::ImatrixFormat output_format(const ImatrixCliOptions& options) {
  if (options.format == "gguf") return quant::ImatrixFormat::gguf;
  if (options.format == "dat") return quant::ImatrixFormat::dat;
  return fs::path(options.out).extension() == ".dat" ? quant::ImatrixFormat::dat
                                                     : quant::ImatrixFormat::gguf;
}

int run_imatrix(const ImatrixCliOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const quant::ImatrixFormat format = output_format(options);
  const int threads = train::configure_threads(options.threads, false);
  const fs::path model_dir = distill::resolve_checkpoint_dir(options.model, "--model");
  auto loaded = model::load_model(model_dir);
  if (loaded.meta.config.arch != "llama") {
    throw InputError(str(model_dir.string(), " holds a '", loaded.meta.config.arch,
                         "' model; importance matrices are for llama models"));
  }
  if (options.calibration.calib_tokens <= 0) {
    throw InputError("--calib-tokens must be > 0: the importances are measured on them");
  }
  auto& model = dynamic_cast<model::LlamaModelImpl&>(*loaded.module);
  model.eval();
  const auto data = open_calibration_data(options.calibration, loaded.meta, model_dir);
  const auto drawn =
      draw_calibration_windows(data, options.calibration, model.config().max_seq_len);
  core::info("imatrix: ", model_dir.string(), " on ",
             core::format_count(drawn.record["tokens"].get<int64_t>()), " tokens of the ",
             options.calibration.calib_split, " split of ", data.dir().string(), " (", threads,
             " threads)");
  const std::string dataset = str(data.dir().string(), " (", options.calibration.calib_split, ")");
  const quant::Imatrix imatrix = quant::collect_imatrix(model, drawn.windows, 16, {dataset});
  quant::write_imatrix(imatrix, options.out, format);

  // The spread of importance inside each matrix is what an importance-weighted rounding uses.
  std::printf("imatrix %s -> %s (%s, %zu matrices, %s tokens in %u windows of %u)\n",
              model_dir.string().c_str(), options.out.c_str(),
              format == quant::ImatrixFormat::gguf ? "GGUF" : "legacy .dat", imatrix.entries.size(),
              core::format_count(drawn.record["tokens"].get<int64_t>()).c_str(),
              imatrix.chunk_count, imatrix.chunk_size);
  std::printf("  %-26s %6s %12s %12s %9s\n", "matrix", "cols", "mean E[x^2]", "max E[x^2]",
              "max/mean");
  for (const auto& [name, entry] : imatrix.entries) {
    const std::vector<float> importance = imatrix.importance(name);
    double sum = 0.0;
    float max = 0.0f;
    for (float v : importance) {
      sum += v;
      max = std::max(max, v);
    }
    const double mean = sum / static_cast<double>(importance.size());
    std::printf("  %-26s %6zu %12.4g %12.4g %9.1f\n", name.c_str(), importance.size(), mean, max,
                mean > 0 ? max / mean : 0.0);
  }
  std::printf(
      "  %.1f s; use it with: edgedistill quantize --model %s --method rtn --type q4_k_m "
      "--imatrix %s --out FILE.gguf\n",
      core::seconds_since(start), options.model.c_str(), options.out.c_str());
  return 0;
}

}  // namespace

void add_imatrix_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ImatrixCliOptions>();
  auto* command = app.add_subcommand(
      "imatrix",
      "Measure a llama checkpoint's importance matrix (each matrix input's mean square over "
      "calibration tokens) and write it in llama.cpp's format, for quantize --imatrix and "
      "llama-quantize --imatrix");
  command
      ->add_option("--model", options->model,
                   "checkpoint directory, run directory (final/), Hugging Face folder or GGUF file")
      ->required();
  add_calibration_options(command, options->calibration, "calibration tokens");
  command
      ->add_option("--output-format", options->format,
                   "gguf (llama-imatrix's current format) or dat (its legacy one); auto: dat for "
                   "a .dat OUT, else gguf")
      ->check(CLI::IsMember({"auto", "gguf", "dat"}))
      ->capture_default_str();
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("-o,--out", options->out, "the importance matrix file to write")->required();
  command->callback([options, &exit_code] { exit_code = run_imatrix(*options); });
}

}  // namespace edgedistill::cli
