// A multilayer perceptron classifier: Linear -> ReLU -> dropout per hidden layer, then a linear
// output layer. Used for the Fashion-MNIST image task (Hinton et al. 2015's setting).
#pragma once

#include <torch/torch.h>

#include "model/model_config.h"

namespace edgedistill::model {

class MlpClassifierImpl : public torch::nn::Module {
 public:
  explicit MlpClassifierImpl(const MlpConfig& config);
  // x: [B, input_dim] float -> logits [B, n_classes]. Dropout is active only in training mode.
  torch::Tensor forward(const torch::Tensor& x);
  const MlpConfig& config() const { return config_; }

  torch::nn::ModuleList layers{nullptr};  // hidden layers then the output layer

 private:
  MlpConfig config_;
};
TORCH_MODULE(MlpClassifier);

}  // namespace edgedistill::model
