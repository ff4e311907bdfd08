// Image classification (Fashion-MNIST) with an MLP.
#pragma once

#include "data/idx.h"
#include "model/mlp.h"
#include "train/task.h"
#include "train/train_config.h"

namespace edgedistill::train {

// Images as float tensors in [0, 1], [count, rows * cols], and labels [count] int64.
struct ImageTensors {
  torch::Tensor pixels;
  torch::Tensor labels;
};
ImageTensors to_tensors(const data::ImageSet& images, torch::Device device);

// Each image of `pixels` ([count, rows * cols]) shifted by its own random offset of up to
// `max_shift` pixels along each axis (drawn from LibTorch's default generator, so a resumed run
// draws the same), the uncovered pixels zero.
torch::Tensor jitter_images(const torch::Tensor& pixels, int64_t rows, int64_t cols,
                            int64_t max_shift);

class ImageClassifierTask : public TrainingTask {
 public:
  ImageClassifierTask(model::MlpClassifier model, const data::ImageSplits& splits,
                      const TrainRecipe& recipe, torch::Device device);

  torch::nn::Module& model() override { return *model_; }
  MicroBatchLoss next_micro_batch_loss() override;
  std::vector<Metric> evaluate(const std::string& split) override;
  std::string headline_metric() const override { return "valid_accuracy"; }
  std::string item_unit() const override { return "img"; }
  void shard_data(int rank, int world_size) override;
  nlohmann::json data_cursor() const override;
  void restore_data_cursor(const nlohmann::json& cursor) override;
  model::CheckpointMeta checkpoint_meta(int64_t step) const override;

  // The next training batch (advancing the data cursor): pixels [B, 784], labels [B].
  ImageTensors next_batch();
  model::MlpClassifierImpl& mlp() { return *model_; }
  int64_t batch_size() const { return batch_size_; }

 private:
  void start_epoch(int64_t epoch);

  model::MlpClassifier model_;
  model::ModelConfig model_config_;
  int64_t batch_size_, eval_limit_;
  int64_t image_rows_, image_cols_, jitter_;
  uint64_t seed_;
  torch::Device device_;
  ImageTensors train_, valid_, test_;
  int64_t epoch_ = 0, index_ = 0;
  int64_t rank_ = 0, world_size_ = 1;  // shard_data: this rank's slice of each global batch
  torch::Tensor order_;  // [train count] permutation for the current epoch (CPU int64)
};

// {loss, accuracy, errors} of a classifier on images, in evaluation mode.
struct ClassifierScore {
  double loss = 0;
  double accuracy = 0;
  int64_t errors = 0;
  int64_t count = 0;
};
ClassifierScore score_classifier(model::MlpClassifierImpl& model, const ImageTensors& images,
                                 int64_t batch_size, int64_t limit);

}  // namespace edgedistill::train
