// edgedistill-data: data preparation in a program without LibTorch.
//
// libsentencepiece cannot be loaded into a process that has LibTorch (see
// src/data/sentencepiece_backend.h), so `edgedistill data` and `edgedistill train` run this program
// to train SentencePiece tokenizers and encode corpora. It can also be used directly:
//   edgedistill-data prepare --config configs/data/kjv.json --out DIR [--set key=value ...]
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/config.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/version.h"
#include "data/prepare.h"
#include "data/sentencepiece_backend.h"

int main(int argc, char** argv) {
  using namespace edgedistill;
  CLI::App app{
      "edgedistill-data: prepare corpora, SentencePiece tokenizers and token shards "
      "(the part of edgedistill that runs without LibTorch)"};
  app.set_version_flag("--version", std::string("edgedistill-data ") + kVersion);
  app.require_subcommand(1);
  std::string config_file, out_dir, error_file;
  std::vector<std::string> overrides;
  bool quiet = false;
  auto* prepare = app.add_subcommand("prepare", "Prepare the data a data config describes");
  prepare->add_option("-c,--config", config_file, "data config (e.g. configs/data/kjv.json)")
      ->required();
  prepare->add_option("-s,--set", overrides, "override a config key (repeatable)");
  prepare->add_option("-o,--out", out_dir, "output directory")->required();
  prepare->add_option("--error-file", error_file,
                      "on a user-fixable error, also write its message to this file");
  prepare->add_flag("-q,--quiet", quiet, "print only errors");

  data::set_sentencepiece_backend(&data::libsentencepiece_backend());
  try {
    app.parse(argc, argv);
    core::set_log_level(quiet ? core::LogLevel::quiet : core::LogLevel::info);
    const auto config = core::load_config<data::DataConfig>(config_file, overrides);
    data::prepare_data(config, out_dir);
    return 0;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const InputError& e) {
    if (!error_file.empty()) {
      try {
        core::write_file_atomic(error_file, e.what());
      } catch (const std::exception&) {
      }
    } else {
      core::log_line(std::string("edgedistill-data: error: ") + e.what());
    }
    return 2;
  } catch (const std::exception& e) {
    core::log_line(std::string("edgedistill-data: internal error: ") + e.what());
    return 3;
  }
}
