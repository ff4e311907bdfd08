#include "cli/runtime_model.h"

#include <filesystem>

#include "convert/import_model.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/sha256.h"
#include "data/prepare.h"
#include "io/gguf.h"
#include "model/model_meta.h"
#include "quantize/gguf_export.h"

namespace edgedistill::cli {

namespace fs = std::filesystem;

std::string runtime_model_path(const std::string& model, const std::string& what) {
  if (io::is_gguf_file(model)) return model;
  const fs::path cache_root = data::default_cache_root();
  const fs::path dir = fs::absolute(convert::resolve_model_dir(model, what, cache_root));
  std::error_code ec;
  const fs::path weights = dir / model::kWeightsFileName;
  const std::string stamp = str("runtime-gguf 1\n", dir.lexically_normal().string(), "\n",
                                core::read_file(dir / model::kModelFileName, "model file"), "\n",
                                fs::file_size(weights, ec), " ",
                                fs::last_write_time(weights, ec).time_since_epoch().count());
  fs::path name = dir.lexically_normal();
  if (name.filename() == "final") name = name.parent_path();
  const fs::path out =
      cache_root / "gguf" /
      str(name.filename().string(), "-", core::sha256_hex(stamp).substr(0, 16), "-f16.gguf");
  if (io::is_gguf_file(out)) return out.string();
  core::create_directories(out.parent_path(), "GGUF cache directory");
  core::info(what, ": writing ", dir.string(),
             " as an f16 GGUF file for the runtime: ", out.string());
  quant::GgufExportOptions options;
  options.type = io::GgmlType::f16;
  quant::export_llama_gguf(dir, options, out);
  return out.string();
}

}  // namespace edgedistill::cli
