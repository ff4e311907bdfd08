#include "distill/teacher.h"

#include "core/error.h"
#include "core/sha256.h"

namespace edgedistill::distill {

model::LlamaModelImpl& Teacher::llama() const {
  ED_CHECK(is_llama(), "the teacher is not a llama model");
  return *std::dynamic_pointer_cast<model::LlamaModelImpl>(module);
}

model::MlpClassifierImpl& Teacher::mlp() const {
  ED_CHECK(!is_llama(), "the teacher is not an mlp classifier");
  return *std::dynamic_pointer_cast<model::MlpClassifierImpl>(module);
}

fs::path resolve_checkpoint_dir(const fs::path& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw InputError(
        str(what, " '", path.string(), "' does not exist; give a checkpoint ",
            "directory (model.json + weights.safetensors) or a finished run directory"));
  }
  if (fs::exists(path / model::kModelFileName, ec)) return path;
  if (fs::exists(path / "final" / model::kModelFileName, ec)) return path / "final";
  throw InputError(str(what, " '", path.string(), "' holds neither ", model::kModelFileName,
                       " nor final/", model::kModelFileName,
                       "; give a checkpoint directory or a finished run directory"));
}

Teacher load_teacher(const fs::path& path, torch::Device device) {
  Teacher teacher;
  teacher.dir = resolve_checkpoint_dir(path, "teacher");
  auto loaded = model::load_model(teacher.dir);
  teacher.meta = std::move(loaded.meta);
  teacher.module = std::move(loaded.module);
  teacher.module->to(device);
  teacher.module->eval();
  for (auto& parameter : teacher.module->parameters()) {
    parameter.set_requires_grad(false);
    teacher.parameters += parameter.numel();
  }
  teacher.weights_sha256 = core::sha256_file_hex(teacher.dir / model::kWeightsFileName);
  return teacher;
}

}  // namespace edgedistill::distill
