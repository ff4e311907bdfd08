#include "distill/hidden_loss.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "distill/token_mask.h"

namespace edgedistill::distill {

std::vector<LayerPair> uniform_layer_map(int student_layers, int teacher_layers) {
  if (student_layers < 1 || teacher_layers < 1) {
    throw InputError(str("uniform layer map: layer counts must be positive, got student ",
                         student_layers, " and teacher ", teacher_layers));
  }
  std::vector<LayerPair> pairs;
  for (int i = 0; i < student_layers; ++i) {
    // round((i + 1) * Lt / Ls) in integers, halves up: floor(((i + 1) * 2 Lt + Ls) / (2 Ls)). It
    // is already the teacher's hidden-state index (block index + 1).
    const int rounded = ((i + 1) * 2 * teacher_layers + student_layers) / (2 * student_layers);
    pairs.push_back({i + 1, std::max(rounded, 1)});
  }
  return pairs;
}

HiddenStateLossImpl::HiddenStateLossImpl(std::vector<LayerPair> pairs, int64_t student_dim,
                                         int64_t teacher_dim, const std::string& metric)
    : pairs_(std::move(pairs)), student_dim_(student_dim), teacher_dim_(teacher_dim) {
  if (metric != "mse" && metric != "cosine") {
    throw InputError(str("hidden-state loss: metric '", metric, "' is unknown; use mse or cosine"));
  }
  cosine_ = metric == "cosine";
  for (size_t i = 0; i < pairs_.size(); ++i) {
    torch::nn::Linear projection{nullptr};
    if (student_dim != teacher_dim) {
      projection = register_module(
          str("proj_", i),
          torch::nn::Linear(torch::nn::LinearOptions(student_dim, teacher_dim).bias(false)));
    }
    projections_.push_back(projection);
  }
}

namespace {

// InputError unless 0 <= index < hidden.size().
void check_hidden_index(int index, const std::vector<torch::Tensor>& hidden, const char* model) {
  ED_CHECK(!hidden.empty(), "the ", model, "'s forward pass did not capture hidden states");
  const int states = static_cast<int>(hidden.size());
  if (index < 0 || index >= states) {
    throw InputError(str("hidden-state loss: ", model, " layer index ", index,
                         " does not exist; the ", model, " has ", states - 1,
                         " layers (hidden states 0..", states - 1,
                         ": the embeddings, then each block's output); fix the layer map"));
  }
}

void check_width(const torch::Tensor& hidden, int64_t width, const char* model) {
  if (hidden.dim() != 3 || hidden.size(2) != width) {
    throw InputError(str("hidden-state loss: the ", model, "'s hidden states are ", hidden.sizes(),
                         "; the loss was built for width ", width, " ([batch, length, ", width,
                         "])"));
  }
}

}  // namespace

torch::Tensor HiddenStateLossImpl::forward(const std::vector<torch::Tensor>& student_hidden,
                                           const std::vector<torch::Tensor>& teacher_hidden,
                                           const torch::Tensor& mask) {
  ED_CHECK(!pairs_.empty(), "hidden-state loss without layer pairs");
  torch::Tensor total;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const auto [s, t] = pairs_[i];
    check_hidden_index(s, student_hidden, "student");
    check_hidden_index(t, teacher_hidden, "teacher");
    const auto& hs = student_hidden[s];
    const auto& ht = teacher_hidden[t];
    check_width(hs, student_dim_, "student");
    check_width(ht, teacher_dim_, "teacher");
    ED_CHECK(hs.sizes().slice(0, 2) == ht.sizes().slice(0, 2), "student ", hs.sizes(),
             " and teacher ", ht.sizes(), " cover different tokens");
    const auto type = hs.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    const auto projected = (projections_[i] ? projections_[i](hs) : hs).to(type);  // [B, T, Dt]
    const auto target = ht.to(type);
    const auto per_token = cosine_ ? 1.0 - torch::cosine_similarity(projected, target, -1)
                                   : (projected - target).square().mean(-1);  // [B, T]
    const auto mean = masked_token_mean(per_token, mask);
    total = total.defined() ? total + mean : mean;
  }
  return total / static_cast<double>(pairs_.size());
}

}  // namespace edgedistill::distill
