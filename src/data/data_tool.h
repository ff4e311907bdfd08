// Data preparation in the edgedistill-data program, for programs that load LibTorch and therefore
// cannot load libsentencepiece (sentencepiece_backend.h explains why).
#pragma once

#include <filesystem>

#include "data/data_config.h"

namespace edgedistill::data {

// $EDGEDISTILL_DATA_TOOL, else the edgedistill-data program beside the running one. Throws
// InputError saying how to fix it when neither exists.
std::filesystem::path data_tool_path();

// Runs `edgedistill-data prepare` for `config` into `out_dir` and waits for it. Its progress
// appears on our stderr; its one-line error, if any, is rethrown here as an InputError.
void prepare_data_in_tool(const DataConfig& config, const std::filesystem::path& out_dir);

// Whether preparing `config` needs libsentencepiece (to train a SentencePiece tokenizer).
bool needs_sentencepiece(const DataConfig& config);

}  // namespace edgedistill::data
