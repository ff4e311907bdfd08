// The calibration and scoring options that quantize and prune share: where the calibration
// windows come from (by default the train split of the data the model was trained on, never the
// split it is scored on) and which split the result is scored on.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "data/prepared_data.h"
#include "model/model_meta.h"

namespace edgedistill::cli {

struct CalibrationOptions {
  std::string calib;
  std::string calib_split = "train";
  int64_t calib_tokens = 16384;
  int64_t calib_context = 128;
  uint64_t seed = 0;
  std::string eval_split = "test";
  int64_t eval_tokens = 0;
  int64_t eval_context = 128;
  bool no_eval = false;
};

// --calib, --calib-split, --calib-tokens (described by `tokens_help`), --calib-ctx and --seed.
void add_calibration_options(CLI::App* command, CalibrationOptions& options,
                             const std::string& tokens_help);
// --eval-split (described by `split_help`), --eval-tokens, --eval-ctx and --no-eval.
void add_evaluation_options(CLI::App* command, CalibrationOptions& options,
                            const std::string& split_help, const std::string& no_eval_help);

// --split, -c/--ctx and --max-tokens: the split a model is scored on and its windows (verify,
// eval).
void add_scored_split_options(CLI::App* command, std::string& split, int64_t& context,
                              int64_t& max_tokens);

// The prepared data at --calib, or else the data the model at `model_dir` was trained on. An
// InputError when neither is known or the data's tokenizer is not the model's.
data::PreparedData open_calibration_data(const CalibrationOptions& options,
                                         const model::CheckpointMeta& meta,
                                         const std::filesystem::path& model_dir);

struct CalibrationWindows {
  torch::Tensor windows;          // [n, context] int64 tokens
  nlohmann::ordered_json record;  // data, split, tokens, windows, context, seed: for reports
};
// --calib-tokens tokens of --calib-split in windows of --calib-ctx (at most `max_seq_len`).
CalibrationWindows draw_calibration_windows(const data::PreparedData& data,
                                            const CalibrationOptions& options, int64_t max_seq_len);

}  // namespace edgedistill::cli
