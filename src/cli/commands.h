// The options and entry points of the commands that `edgedistill recipe` runs as pipeline stages:
// a stage fills the same options a user would give on the command line and calls the same
// function, so a stage does exactly what the single command does.
#pragma once

#include <string>

#include "cli/calibration_options.h"
#include "cli/training_run.h"

namespace edgedistill::cli {

// edgedistill train (cmd_train.cpp).
int run_train(const RunCommandOptions& options);

// edgedistill distill (cmd_distill.cpp).
struct DistillCommandOptions {
  RunCommandOptions run;
  std::string teacher;
  std::string teacher_cache;
  std::string student;
};
int run_distill(const DistillCommandOptions& options);

// edgedistill prune (cmd_prune.cpp). Scored on the valid split (pruning is a development step;
// test is kept for the end), calibrated on 32,768 tokens.
CalibrationOptions prune_calibration_defaults();
struct PruneCliOptions {
  std::string model;
  std::string method;
  CalibrationOptions calibration = prune_calibration_defaults();
  double sparsity = 0;
  std::string pattern;
  std::string scope = "layer";
  double heads = 0;
  double ffn = 0;
  int layers = 0;
  double params = 0;
  int threads = 0;
  std::string out;
  bool json = false;
};
// The checks run_prune makes of the options before any work (targets fit the method, N:M pattern
// well formed): an InputError naming the option.
void check_prune_options(const PruneCliOptions& options);
int run_prune(const PruneCliOptions& options);

// edgedistill quantize (cmd_quantize.cpp).
struct QuantizeCliOptions {
  std::string model;
  std::string method = "gptq";
  std::string type = "q4_0";
  std::string plan;
  std::string imatrix;
  CalibrationOptions calibration;
  bool act_order = false;
  int block_size = 128;
  double damp = 0.01;
  bool baseline = false;
  int threads = 0;
  std::string tokenizer;
  std::string name;
  std::string out;
  std::string report;  // default: OUT with .quant.json
  bool json = false;
};
int run_quantize(const QuantizeCliOptions& options);

// edgedistill export (cmd_export.cpp).
struct ExportOptions {
  std::string model;
  std::string type = "f16";
  std::string embedding_type;
  std::string tokenizer;
  std::string name;
  std::string out;
  std::string format = "gguf";  // or "hf": a Hugging Face folder
  std::string hf_architecture;  // --format hf: "" = the imported one, else by the model's shape
  bool force = false;           // --format hf: replace an existing folder
};
int run_export(const ExportOptions& options);

// edgedistill verify (cmd_verify.cpp). Writes `report` (when set) before it throws GateFailure
// for a failed gate.
struct VerifyOptions {
  std::string model;
  std::string reference;
  std::string data;
  std::string split = "test";
  int64_t context = 128;
  int64_t max_tokens = 0;  // 0: the whole split
  int threads = 0;
  std::string gates;
  std::string report;
  bool json = false;
  bool skip_bench = false;
};
int run_verify(const VerifyOptions& options);

}  // namespace edgedistill::cli
