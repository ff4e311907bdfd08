#include "train/image_classifier_task.h"

#include "core/rng.h"

namespace edgedistill::train {

ImageTensors to_tensors(const data::ImageSet& images, torch::Device device) {
  const int64_t features = images.rows * images.cols;
  ImageTensors out;
  out.pixels = torch::from_blob(const_cast<uint8_t*>(images.pixels.data()),
                                {images.count, features}, torch::kUInt8)
                   .to(torch::kFloat32)
                   .div_(255.0)
                   .to(device);
  out.labels =
      torch::from_blob(const_cast<uint8_t*>(images.labels.data()), {images.count}, torch::kUInt8)
          .to(torch::kInt64)
          .to(device);
  return out;
}

torch::Tensor jitter_images(const torch::Tensor& pixels, int64_t rows, int64_t cols,
                            int64_t max_shift) {
  if (max_shift <= 0) return pixels;
  const int64_t count = pixels.size(0);
  const auto padded = torch::constant_pad_nd(pixels.view({count, rows, cols}),
                                             {max_shift, max_shift, max_shift, max_shift});
  const auto options = torch::TensorOptions().dtype(torch::kInt64).device(pixels.device());
  // Offsets in [0, 2 max_shift] into the padded image: max_shift is no shift.
  const auto dy = torch::randint(0, 2 * max_shift + 1, {count, 1, 1}, options);
  const auto dx = torch::randint(0, 2 * max_shift + 1, {count, 1, 1}, options);
  const auto image = torch::arange(count, options).view({count, 1, 1});
  const auto row = torch::arange(rows, options).view({1, rows, 1}) + dy;
  const auto col = torch::arange(cols, options).view({1, 1, cols}) + dx;
  return padded.index({image, row, col}).reshape({count, rows * cols});
}

ImageClassifierTask::ImageClassifierTask(model::MlpClassifier model,
                                         const data::ImageSplits& splits, const TrainRecipe& recipe,
                                         torch::Device device)
    : model_(std::move(model)),
      model_config_(recipe.model),
      batch_size_(recipe.train.batch_size),
      eval_limit_(recipe.train.eval_tokens),
      image_rows_(splits.train.rows),
      image_cols_(splits.train.cols),
      jitter_(recipe.train.jitter),
      seed_(static_cast<uint64_t>(recipe.seed)),
      device_(device),
      train_(to_tensors(splits.train, device)),
      valid_(to_tensors(splits.valid, device)),
      test_(to_tensors(splits.test, device)) {
  const int64_t features = splits.train.rows * splits.train.cols;
  if (features != model_->config().input_dim) {
    throw InputError(str("the images have ", features, " pixels but model.input_dim is ",
                         model_->config().input_dim, "; set model.input_dim to ", features));
  }
  if (splits.train.count < batch_size_) {
    throw InputError(str("the training images (", splits.train.count,
                         ") are fewer than train.batch_size (", batch_size_, ")"));
  }
  start_epoch(0);
}

void ImageClassifierTask::start_epoch(int64_t epoch) {
  core::Rng rng(core::derive_seed(seed_, static_cast<uint64_t>(epoch)));
  std::vector<int64_t> order(static_cast<size_t>(train_.labels.size(0)));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  rng.shuffle(order);
  order_ = torch::tensor(order, torch::kInt64);
  epoch_ = epoch;
  index_ = 0;
}

void ImageClassifierTask::shard_data(int rank, int world_size) {
  if (order_.size(0) < batch_size_ * world_size) {
    throw InputError(str("the training images (", order_.size(0), ") are fewer than one global ",
                         "batch (train.batch_size ", batch_size_, " x ", world_size, " ranks)"));
  }
  rank_ = rank;
  world_size_ = world_size;
}

ImageTensors ImageClassifierTask::next_batch() {
  // Whole batches only: the remainder of an epoch is skipped, as with drop_last.
  // Data parallel: the global batch is world_size_ batches; this rank takes its slice.
  const int64_t global = batch_size_ * world_size_;
  if (index_ + global > order_.size(0)) start_epoch(epoch_ + 1);
  const auto rows = order_.narrow(0, index_ + rank_ * batch_size_, batch_size_).to(device_);
  index_ += global;
  return {jitter_images(train_.pixels.index_select(0, rows), image_rows_, image_cols_, jitter_),
          train_.labels.index_select(0, rows)};
}

MicroBatchLoss ImageClassifierTask::next_micro_batch_loss() {
  const auto batch = next_batch();
  const auto logits = model_->forward(batch.pixels);
  MicroBatchLoss out;
  out.loss = torch::nn::functional::cross_entropy(logits, batch.labels);
  out.items = batch_size_;
  return out;
}

ClassifierScore score_classifier(model::MlpClassifierImpl& model, const ImageTensors& images,
                                 int64_t batch_size, int64_t limit) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  const int64_t count = limit > 0 ? std::min(limit, images.labels.size(0)) : images.labels.size(0);
  ClassifierScore score;
  double total_loss = 0;
  for (int64_t first = 0; first < count; first += batch_size) {
    const int64_t rows = std::min(batch_size, count - first);
    const auto logits = model.forward(images.pixels.narrow(0, first, rows));
    const auto labels = images.labels.narrow(0, first, rows);
    total_loss +=
        torch::nn::functional::cross_entropy(
            logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
    score.errors += logits.argmax(-1).ne(labels).sum().item<int64_t>();
  }
  if (was_training) model.train();
  score.count = count;
  score.loss = count > 0 ? total_loss / static_cast<double>(count) : 0;
  score.accuracy =
      count > 0 ? 1.0 - static_cast<double>(score.errors) / static_cast<double>(count) : 0;
  return score;
}

std::vector<Metric> ImageClassifierTask::evaluate(const std::string& split) {
  const ImageTensors& images = split == "test" ? test_ : valid_;
  const auto score =
      score_classifier(*model_, images, std::max<int64_t>(batch_size_, 1000), eval_limit_);
  return {{split + "_loss", score.loss},
          {split + "_accuracy", score.accuracy},
          {split + "_errors", static_cast<double>(score.errors)}};
}

nlohmann::json ImageClassifierTask::data_cursor() const {
  return {{"epoch", epoch_}, {"index", index_}};
}

void ImageClassifierTask::restore_data_cursor(const nlohmann::json& cursor) {
  start_epoch(cursor.at("epoch").get<int64_t>());
  index_ = cursor.at("index").get<int64_t>();
}

model::CheckpointMeta ImageClassifierTask::checkpoint_meta(int64_t step) const {
  model::CheckpointMeta meta;
  meta.config = model_config_;
  meta.step = step;
  return meta;
}

}  // namespace edgedistill::train
