#include "cli/command.h"

namespace edgedistill::cli {

void add_config_options(CLI::App* command, ConfigOptions& options, const std::string& what,
                        const std::string& example, bool required) {
  auto* file = command->add_option("-c,--config", options.file, what);
  if (required) file->required();
  command
      ->add_option("-s,--set", options.overrides,
                   "override a config key: --set " + example +
                       " (repeatable; 'edgedistill config --keys' lists the keys)")
      ->allow_extra_args(false);
}

}  // namespace edgedistill::cli
