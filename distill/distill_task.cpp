#include "distill/distill_task.h"

#include <cmath>

#include "core/log.h"
#include "data/prepare.h"
#include "distill/logit_losses.h"
#include "distill/student_init.h"
#include "train/setup.h"
#include "train/token_windows.h"

namespace edgedistill::distill {

LanguageModelDistillTask::LanguageModelDistillTask(model::LlamaModel student,
                                                   const data::PreparedData& data,
                                                   const DistillRecipe& recipe,
                                                   torch::Device device, const Teacher* teacher,
                                                   const TeacherCache* cache)
    : base_(student, data, recipe.base, device, /*aligned_windows=*/cache != nullptr),
      student_(student),
      teacher_(teacher),
      cache_(cache),
      loss_(recipe.distill.losses, recipe.base.model,
            teacher != nullptr ? teacher->meta.config : recipe.base.model),
      run_teacher_(teacher != nullptr &&
                   (recipe.needs_live_teacher() || (loss_.needs_teacher_logits() && !cache))),
      device_(device) {
  if (loss_.modules() != nullptr) loss_.modules()->to(device);
}

train::MicroBatchLoss LanguageModelDistillTask::next_micro_batch_loss() {
  std::vector<int64_t> starts;
  const auto batch = base_.next_batch(&starts);
  const int64_t seq_len = base_.seq_len();
  const auto inputs = batch.narrow(1, 0, seq_len);
  const auto student_out = student_->forward(inputs, loss_.student_options());
  const int64_t vocab = student_out.logits.size(-1);
  DistillBatch distill_batch;
  distill_batch.student_logits = student_out.logits.reshape({-1, vocab});
  distill_batch.targets = batch.narrow(1, 1, seq_len).reshape({-1});
  distill_batch.student = &student_out;
  model::ForwardOutput teacher_out;
  TopKDistribution top_k;
  if (run_teacher_) {
    torch::NoGradGuard no_grad;
    teacher_out = teacher_->llama().forward(inputs, loss_.teacher_options());
    distill_batch.teacher_logits = teacher_out.logits.reshape({-1, vocab});
    distill_batch.teacher = &teacher_out;
  } else if (cache_ != nullptr && loss_.needs_teacher_logits()) {
    top_k = cache_->lookup(starts, seq_len);
    top_k.ids = top_k.ids.to(device_);
    top_k.logprobs = top_k.logprobs.to(device_);
    top_k.tail = top_k.tail.to(device_);
    distill_batch.teacher_top_k = &top_k;
  }
  auto out = loss_.compute(distill_batch);
  out.items = inputs.numel();
  return out;
}

std::vector<train::Metric> LanguageModelDistillTask::evaluate(const std::string& split) {
  auto metrics = base_.evaluate(split);
  if (teacher_ == nullptr) return metrics;
  const auto& shard = base_.shard(split);
  if (teacher_ppl_.count(split) == 0) {
    const auto [loss, tokens] =
        train::language_model_loss(teacher_->llama(), shard, base_.seq_len(), base_.batch_size(),
                                   base_.eval_tokens(), device_);
    teacher_ppl_[split] = std::exp(loss);
  }
  const auto [kl, tokens] = teacher_student_kl(*student_, teacher_->llama(), shard, base_.seq_len(),
                                               base_.batch_size(), base_.eval_tokens(), device_);
  metrics.emplace_back(split + "_teacher_kl", kl);
  metrics.emplace_back(split + "_teacher_ppl", teacher_ppl_[split]);
  return metrics;
}

std::pair<double, int64_t> teacher_student_kl(model::LlamaModelImpl& student,
                                              model::LlamaModelImpl& teacher,
                                              const data::TokenShard& shard, int64_t seq_len,
                                              int64_t batch_size, int64_t max_tokens,
                                              torch::Device device) {
  const bool was_training = student.is_training();
  student.eval();
  const auto result = train::evaluation_mean(
      shard, seq_len, batch_size, max_tokens, device, [&](const torch::Tensor& batch) {
        const auto inputs = batch.narrow(1, 0, seq_len);
        const auto s = student.forward(inputs).logits;
        const auto t = teacher.forward(inputs).logits;
        return logit_loss(s.reshape({-1, s.size(-1)}), t.reshape({-1, t.size(-1)}), {},
                          LogitLossOptions{});
      });
  if (was_training) student.train();
  return result;
}

ImageDistillTask::ImageDistillTask(model::MlpClassifier student, const data::ImageSplits& splits,
                                   const DistillRecipe& recipe, torch::Device device,
                                   const Teacher& teacher)
    : base_(std::move(student), splits, recipe.base, device),
      teacher_(teacher),
      loss_(recipe.distill.losses, recipe.base.model, teacher.meta.config) {}

train::MicroBatchLoss ImageDistillTask::next_micro_batch_loss() {
  const auto batch = base_.next_batch();
  DistillBatch distill_batch;
  distill_batch.student_logits = base_.mlp().forward(batch.pixels);
  distill_batch.targets = batch.labels;
  if (loss_.needs_teacher_logits()) {
    torch::NoGradGuard no_grad;
    distill_batch.teacher_logits = teacher_.mlp().forward(batch.pixels);
  }
  auto out = loss_.compute(distill_batch);
  out.items = batch.labels.size(0);
  return out;
}

namespace {

// The checks between the teacher sources and the terms that a config file cannot express.
void check_teacher_sources(const DistillRecipe& recipe) {
  const bool llama = recipe.base.model.arch == "llama";
  const bool teacher = !recipe.teacher.empty(), cache = !recipe.teacher_cache.empty();
  if (recipe.needs_teacher() && !teacher && !cache) {
    throw InputError(
        "distill needs a teacher: give --teacher DIR (a checkpoint or finished run directory, e.g. "
        "runs/quickstart/teacher) or --teacher-cache DIR");
  }
  if (recipe.needs_live_teacher() && !teacher) {
    throw InputError(
        "the hidden, attention_relation and contrastive terms need the live teacher's internals, "
        "which a teacher cache does not hold; give --teacher DIR as well, or drop those terms");
  }
  if (cache && !llama) {
    throw InputError(
        "a teacher cache holds language-model logits; an image classifier distills "
        "from a live --teacher");
  }
  if (recipe.student.init == "teacher-layers" && (!teacher || !llama)) {
    throw InputError(
        "student.init = teacher-layers copies blocks from a live llama teacher; give --teacher "
        "DIR");
  }
}

}  // namespace

DistillSetup prepare_distillation(DistillRecipe recipe, const std::filesystem::path& cache_root) {
  DistillSetup setup;
  train::resolve_vocab_size(recipe.base);
  setup.device = train::resolve_device(recipe.base.device);
  check_teacher_sources(recipe);
  if (!recipe.teacher.empty()) {
    setup.teacher = std::make_unique<Teacher>(load_teacher(recipe.teacher, setup.device));
    if (setup.teacher->meta.config.arch != recipe.base.model.arch) {
      throw InputError(str("the teacher '", setup.teacher->dir.string(), "' is a ",
                           setup.teacher->meta.config.arch, " model but the student is a ",
                           recipe.base.model.arch, " model; give a teacher of the same kind"));
    }
  }
  if (!recipe.teacher_cache.empty()) {
    setup.cache = std::make_unique<TeacherCache>(recipe.teacher_cache);
  }
  setup.recipe = std::move(recipe);
  const auto& base = setup.recipe.base;

  torch::manual_seed(static_cast<uint64_t>(base.seed));
  auto module = model::build_model(base.model);
  module->to(setup.device);
  if (base.model.arch == "mlp") {
    setup.images = std::make_unique<data::ImageSplits>(data::load_image_splits(base.data));
    setup.task = std::make_unique<ImageDistillTask>(
        model::MlpClassifier(std::dynamic_pointer_cast<model::MlpClassifierImpl>(module)),
        *setup.images, setup.recipe, setup.device, *setup.teacher);
    return setup;
  }

  model::LlamaModel student(std::dynamic_pointer_cast<model::LlamaModelImpl>(module));
  setup.text_data =
      std::make_unique<data::PreparedData>(data::ensure_prepared(base.data, cache_root));
  const std::string tokenizer_hash = setup.text_data->tokenizer().hash();
  if (setup.teacher) {
    if (setup.teacher->meta.tokenizer_hash != tokenizer_hash) {
      throw InputError(str(
          "the teacher '", setup.teacher->dir.string(), "' was trained with another tokenizer (",
          setup.teacher->meta.tokenizer_hash.substr(0, 12), ") than this recipe's data (",
          tokenizer_hash.substr(0, 12), "); distill on the teacher's data config"));
    }
    if (setup.recipe.student.init == "teacher-layers") {
      init_from_teacher_layers(*student, setup.teacher->llama(), setup.recipe.student);
    }
  }
  if (setup.cache) {
    const auto train_shard = setup.text_data->shard("train");
    setup.cache->require_match(
        setup.teacher ? setup.teacher->weights_sha256 : setup.cache->info().teacher_weights_sha256,
        tokenizer_hash, base.train.seq_len, train_shard.size());
  }
  setup.task = std::make_unique<LanguageModelDistillTask>(student, *setup.text_data, setup.recipe,
                                                          setup.device, setup.teacher.get(),
                                                          setup.cache.get());
  return setup;
}

}  // namespace edgedistill::distill
