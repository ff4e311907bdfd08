#include "distill/teacher.h"

#include "convert/import_model.h"
#include "core/error.h"
#include "core/sha256.h"
#include "data/prepare.h"

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
  return convert::resolve_model_dir(path, what, data::default_cache_root());
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
