#include "model/tensor_chunks.h"

#include <algorithm>
#include <vector>

namespace edgedistill::model {

void for_chunks(const torch::Tensor& x, int64_t chunk,
                const std::function<void(const torch::Tensor&)>& fn) {
  torch::NoGradGuard no_grad;
  for (int64_t begin = 0; begin < x.size(0); begin += chunk) {
    fn(x.narrow(0, begin, std::min(chunk, x.size(0) - begin)));
  }
}

torch::Tensor map_chunks(const torch::Tensor& x, int64_t chunk,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  std::vector<torch::Tensor> parts;
  for_chunks(x, chunk, [&](const torch::Tensor& c) { parts.push_back(fn(c)); });
  return parts.size() == 1 ? parts[0] : torch::cat(parts);
}

double influence_sum(const torch::Tensor& x_in, const torch::Tensor& x_out) {
  const auto cos =
      torch::cosine_similarity(x_in.to(torch::kFloat64), x_out.to(torch::kFloat64), -1, 1e-12);
  return (1.0 - cos).sum().item<double>();
}

}  // namespace edgedistill::model
