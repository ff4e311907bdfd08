#include "model/model_meta.h"

#include "core/error.h"
#include "core/files.h"
#include "core/version.h"

namespace edgedistill::model {

nlohmann::ordered_json model_json(const CheckpointMeta& meta, int64_t parameters) {
  nlohmann::ordered_json json;
  json["format"] = kModelFormat;
  json["version"] = kModelFormatVersion;
  json["model"] = core::to_json(meta.config);
  json["tokenizer_hash"] = meta.tokenizer_hash;
  json["data_dir"] = meta.data_dir.string();
  json["step"] = meta.step;
  json["parameters"] = parameters;
  json["edgedistill_version"] = kVersion;
  return json;
}

CheckpointMeta read_model_meta(const fs::path& dir) {
  const fs::path file = dir / kModelFileName;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw FileError(str("model directory '", dir.string(),
                        "' does not exist; pass a checkpoint directory such as RUN/final"));
  }
  if (!fs::exists(file, ec)) {
    throw FileError(
        str("'", dir.string(), "' has no ", kModelFileName,
            "; pass a checkpoint directory such as RUN/final or RUN/checkpoints/step-N"));
  }
  const auto json = core::read_json_file(file, "model file");
  if (!json.is_object() || json.value("format", "") != kModelFormat) {
    throw FileError(str("'", file.string(), "' is not an edgedistill model file (format '",
                        kModelFormat, "' expected)"));
  }
  const auto version = json.value("version", 0);
  if (version > kModelFormatVersion) {
    throw FileError(str("'", file.string(), "' has format version ", version,
                        "; this edgedistill (", kVersion, ") reads version ", kModelFormatVersion,
                        "; upgrade edgedistill"));
  }
  if (!json.contains("model")) {
    throw FileError(str("'", file.string(), "' has no \"model\" section"));
  }
  CheckpointMeta meta;
  try {
    meta.config = core::config_from_saved_json<ModelConfig>(json["model"], file);
  } catch (const ConfigError& e) {
    throw FileError(str("'", file.string(), "': ", e.what()));
  }
  if (meta.config.arch == "llama" && meta.config.llama.vocab_size <= 0) {
    throw FileError(
        str("'", file.string(), "': model.vocab_size must be positive in a checkpoint"));
  }
  meta.tokenizer_hash = json.value("tokenizer_hash", "");
  meta.data_dir = json.value("data_dir", "");
  meta.step = json.value("step", int64_t{0});
  return meta;
}

}  // namespace edgedistill::model
