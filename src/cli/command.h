// The subcommands of the `edgedistill` executable, one file each. Each add_* function registers
// its options on `app` and a callback that sets `exit_code`. Commands throw the typed exceptions
// of core/error.h; main() turns them into one line and an exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace edgedistill::cli {

// --config FILE and repeatable --set key.path=value, shared by the commands that take a config.
struct ConfigOptions {
  std::string file;
  std::vector<std::string> overrides;
};
// `example` is a typical override for this command, shown in --help ("train.lr=1e-3").
void add_config_options(CLI::App* command, ConfigOptions& options, const std::string& what,
                        const std::string& example, bool required);

void add_data_command(CLI::App& app, int& exit_code);
void add_train_command(CLI::App& app, int& exit_code);
void add_distill_command(CLI::App& app, int& exit_code);
void add_eval_command(CLI::App& app, int& exit_code);
void add_config_command(CLI::App& app, int& exit_code);
void add_inspect_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_teacher_cache_command(CLI::App& app, int& exit_code);
void add_export_command(CLI::App& app, int& exit_code);
void add_run_command(CLI::App& app, int& exit_code);
void add_verify_command(CLI::App& app, int& exit_code);
void add_quantize_command(CLI::App& app, int& exit_code);
void add_imatrix_command(CLI::App& app, int& exit_code);
void add_prune_command(CLI::App& app, int& exit_code);
void add_recipe_command(CLI::App& app, int& exit_code);
void add_tokenize_command(CLI::App& app, int& exit_code);
void add_import_command(CLI::App& app, int& exit_code);
void add_launch_command(CLI::App& app, int& exit_code);

}  // namespace edgedistill::cli
