#include "model/mlp.h"

namespace edgedistill::model {

namespace F = torch::nn::functional;

MlpClassifierImpl::MlpClassifierImpl(const MlpConfig& config) : config_(config) {
  layers = register_module("layers", torch::nn::ModuleList());
  int64_t width = config.input_dim;
  for (int hidden : config.hidden) {
    layers->push_back(torch::nn::Linear(width, hidden));
    width = hidden;
  }
  layers->push_back(torch::nn::Linear(width, config.n_classes));
}

torch::Tensor MlpClassifierImpl::forward(const torch::Tensor& x) {
  auto h = F::dropout(x, F::DropoutFuncOptions().p(config_.input_dropout).training(is_training()));
  const size_t last = layers->size() - 1;
  for (size_t i = 0; i < last; ++i) {
    h = torch::relu(layers[i]->as<torch::nn::LinearImpl>()->forward(h));
    h = F::dropout(h, F::DropoutFuncOptions().p(config_.dropout).training(is_training()));
  }
  return layers[last]->as<torch::nn::LinearImpl>()->forward(h);
}

}  // namespace edgedistill::model
