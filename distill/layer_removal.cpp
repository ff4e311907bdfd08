#include "distill/layer_removal.h"

#include "model/tensor_chunks.h"

namespace edgedistill::distill {

std::vector<double> block_influence(model::LlamaModelImpl& model,
                                    const std::vector<torch::Tensor>& batches) {
  torch::NoGradGuard no_grad;
  const int layers = model.config().n_layers;
  std::vector<double> sums(layers, 0.0);
  int64_t tokens = 0;
  model::ForwardOptions options;
  options.hidden_states = true;
  for (const auto& batch : batches) {
    const auto out = model.forward(batch.narrow(1, 0, batch.size(1) - 1), options);
    for (int block = 0; block < layers; ++block) {
      sums[block] += model::influence_sum(out.hidden_states[block], out.hidden_states[block + 1]);
    }
    tokens += out.hidden_states[0].size(0) * out.hidden_states[0].size(1);
  }
  for (auto& sum : sums) sum /= static_cast<double>(std::max<int64_t>(1, tokens));
  return sums;
}

std::vector<double> skip_loss_increase(
    int layers, const std::function<double(const std::vector<double>& block_scales)>& loss) {
  const std::vector<double> all(layers, 1.0);
  const double full = loss(all);
  std::vector<double> increase(layers);
  for (int block = 0; block < layers; ++block) {
    auto scales = all;
    scales[block] = 0.0;
    increase[block] = loss(scales) - full;
  }
  return increase;
}

}  // namespace edgedistill::distill
