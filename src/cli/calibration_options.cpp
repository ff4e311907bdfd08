#include "cli/calibration_options.h"

#include <algorithm>

#include "core/error.h"
#include "quantize/calibration.h"

namespace edgedistill::cli {

namespace fs = std::filesystem;

void add_calibration_options(CLI::App* command, CalibrationOptions& options,
                             const std::string& tokens_help) {
  command->add_option("--calib", options.calib,
                      "prepared data to calibrate on (default: the data the model was trained on)");
  command->add_option("--calib-split", options.calib_split, "split of --calib to draw windows from")
      ->check(CLI::IsMember({"train", "valid", "test"}))
      ->capture_default_str();
  command->add_option("--calib-tokens", options.calib_tokens, tokens_help)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--calib-ctx", options.calib_context, "tokens per calibration window")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--seed", options.seed, "seed of the calibration window draw")
      ->capture_default_str();
}

void add_evaluation_options(CLI::App* command, CalibrationOptions& options,
                            const std::string& split_help, const std::string& no_eval_help) {
  command->add_option("--eval-split", options.eval_split, split_help)
      ->check(CLI::IsMember({"train", "valid", "test"}))
      ->capture_default_str();
  command
      ->add_option("--eval-tokens", options.eval_tokens,
                   "score at most this many tokens; 0: the whole split")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--eval-ctx", options.eval_context, "tokens per scored window")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_flag("--no-eval", options.no_eval, no_eval_help);
}

void add_scored_split_options(CLI::App* command, std::string& split, int64_t& context,
                              int64_t& max_tokens) {
  command->add_option("--split", split, "which split to score")
      ->check(CLI::IsMember({"train", "valid", "test"}))
      ->capture_default_str();
  command->add_option("-c,--ctx", context, "tokens per scored window")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--max-tokens", max_tokens, "score at most this many tokens; 0: the whole split")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

data::PreparedData open_calibration_data(const CalibrationOptions& options,
                                         const model::CheckpointMeta& meta,
                                         const fs::path& model_dir) {
  const fs::path data_dir = options.calib.empty() ? meta.data_dir : fs::path(options.calib);
  if (data_dir.empty()) {
    throw InputError(str(model_dir.string(), " records no data directory; pass --calib DIR"));
  }
  data::PreparedData data(data_dir);
  if (!meta.tokenizer_hash.empty() && data.tokenizer().hash() != meta.tokenizer_hash) {
    throw InputError(str("the data at ", data_dir.string(), " uses another tokenizer than ",
                         model_dir.string(), "; calibrate on data with its tokenizer"));
  }
  return data;
}

CalibrationWindows draw_calibration_windows(const data::PreparedData& data,
                                            const CalibrationOptions& options,
                                            int64_t max_seq_len) {
  const int64_t context = std::min<int64_t>(options.calib_context, max_seq_len);
  CalibrationWindows out;
  out.windows = quant::calibration_windows(
      data.shard(options.calib_split), options.calib_tokens, context, options.seed,
      str("the ", options.calib_split, " split of ", data.dir().string()));
  out.record = {{"data", data.dir().string()},
                {"split", options.calib_split},
                {"tokens", out.windows.numel()},
                {"windows", out.windows.size(0)},
                {"context", context},
                {"seed", options.seed}};
  return out;
}

}  // namespace edgedistill::cli
