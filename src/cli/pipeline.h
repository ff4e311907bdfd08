// `edgedistill recipe`: a pipeline recipe (cli/pipeline_config.h) run as stages, data -> teacher
// -> distill -> prune -> heal -> quantize -> verify, each stage a call into the command it names
// (cli/commands.h). A stage whose config and input files are unchanged since its last successful
// run, and whose outputs are still the files it wrote, is skipped: RUN_DIR/stages/STAGE.json keeps
// the config, the sha256 of every input and output file, metrics and wall time. At the end
// RUN_DIR/artifacts/manifest.json records the whole run (docs/ci.md).
#pragma once

#include <string>
#include <vector>

namespace edgedistill::cli {

struct PipelineOptions {
  std::string recipe;  // the pipeline recipe file
  std::vector<std::string> overrides;
  std::string run_dir;  // default: runs/<name>
  std::string data_cache;
  std::string from;  // rerun this stage and the ones after it
  bool force = false;
  bool dry_run = false;
};

// The stages in order: data, teacher, distill, prune, heal, quantize, verify.
const std::vector<std::string>& pipeline_stage_names();

// Runs (or with dry_run, plans) the pipeline. Returns 0 when every gate passed; throws
// GateFailure (exit 1) after writing the manifest when one failed, InputError for bad input.
int run_pipeline(const PipelineOptions& options);

}  // namespace edgedistill::cli
