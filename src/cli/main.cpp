// edgedistill: the command-line entry point. Exit codes (DESIGN.md): 0 ok, 1 a verification gate
// failed, 2 bad input or usage, 3 internal error. Only this function catches.
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/version.h"

namespace {

constexpr int kExitGateFailed = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitInternal = 3;

void print_error(const std::string& prefix, const std::string& message) {
  edgedistill::core::log_line(prefix + message);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace edgedistill;
  CLI::App app{"edgedistill: distill, prune and quantize small language models for edge devices"};
  app.set_version_flag("--version",
                       std::string("edgedistill ") + kVersion + " (" + kGitRevision + ")");
  app.require_subcommand(1);
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "print only errors and results");
  app.add_flag("-v,--verbose", verbose, "print debugging detail");
  app.parse_complete_callback([&] {
    core::set_log_level(quiet     ? core::LogLevel::quiet
                        : verbose ? core::LogLevel::debug
                                  : core::LogLevel::info);
  });
  app.footer(
      "Run 'edgedistill COMMAND --help' for a command's options. Exit codes: 0 ok, "
      "1 a verification gate failed, 2 bad input, 3 internal error.");

  // Usage errors (unknown option, a value outside an option's choices, a missing required
  // option) print as one line like every other bad input, naming the help to read.
  app.failure_message([](const CLI::App* top, const CLI::Error& e) {
    std::string command = "edgedistill";
    for (const auto* sub : top->get_subcommands()) command += " " + sub->get_name();
    return std::string("edgedistill: error: ") + e.what() + "; see '" + command + " --help'\n";
  });

  int exit_code = 0;
  cli::add_data_command(app, exit_code);
  cli::add_train_command(app, exit_code);
  cli::add_distill_command(app, exit_code);
  cli::add_eval_command(app, exit_code);
  cli::add_config_command(app, exit_code);
  cli::add_inspect_command(app, exit_code);
  cli::add_bench_command(app, exit_code);
  cli::add_teacher_cache_command(app, exit_code);
  cli::add_prune_command(app, exit_code);
  cli::add_quantize_command(app, exit_code);
  cli::add_imatrix_command(app, exit_code);
  cli::add_export_command(app, exit_code);
  cli::add_run_command(app, exit_code);
  cli::add_verify_command(app, exit_code);
  cli::add_recipe_command(app, exit_code);
  cli::add_tokenize_command(app, exit_code);
  cli::add_import_command(app, exit_code);
  cli::add_launch_command(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitBadInput;
  } catch (const GateFailure& e) {
    print_error("edgedistill: gate failed: ", e.what());
    return kExitGateFailed;
  } catch (const InputError& e) {
    print_error("edgedistill: error: ", e.what());
    return kExitBadInput;
  } catch (const c10::Error& e) {
    print_error("edgedistill: internal error (LibTorch): ", first_line(e.what_without_backtrace()));
    return kExitInternal;
  } catch (const std::bad_alloc&) {
    print_error("edgedistill: error: ",
                "out of memory; lower train.batch_size or the model size, or free memory");
    return kExitBadInput;
  } catch (const std::exception& e) {
    print_error("edgedistill: internal error: ", e.what());
    return kExitInternal;
  }
  return exit_code;
}
