// Hidden-state transfer: the student's hidden states at chosen layers, projected to the teacher's
// width when the widths differ, are pulled towards the teacher's at the layers mapped to them.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace edgedistill::distill {

// One student layer matched to one teacher layer, as indices into ForwardOutput::hidden_states
// (0: the embeddings, i + 1: block i's output).
struct LayerPair {
  int student;
  int teacher;
};

// Every student block matched to the teacher block at the same relative depth (TinyBERT,
// arXiv:1909.10351): student block i (hidden index i + 1) <- teacher block
// round((i + 1) * Lt / Ls) - 1, for i in [0, Ls). Ties round up; a student deeper than twice the
// teacher maps its first blocks to teacher block 0 rather than the embeddings.
// InputError unless both layer counts are positive.
std::vector<LayerPair> uniform_layer_map(int student_layers, int teacher_layers);

// MSE or cosine distance between mapped hidden states (TinyBERT arXiv:1909.10351, FitNets
// arXiv:1412.6550): the mean over pairs of the per-token distance between h_s W and h_t, averaged
// over the tokens that count. W is a learned bias-free Linear(student_dim -> teacher_dim) per pair,
// registered as "proj_<pair index>" only when the widths differ (the identity otherwise). The
// projections train with the student and are not part of it.
class HiddenStateLossImpl : public torch::nn::Module {
 public:
  // metric: "mse" (per token: mean over features of (h_s W - h_t)^2) or "cosine" (per token:
  // 1 - cos(h_s W, h_t)); another name is an InputError.
  HiddenStateLossImpl(std::vector<LayerPair> pairs, int64_t student_dim, int64_t teacher_dim,
                      const std::string& metric);

  // student_hidden, teacher_hidden: ForwardOutput::hidden_states of each model, entries
  // [B, T, student_dim] and [B, T, teacher_dim]; the teacher's are not differentiated.
  // mask: [B, T] tokens that count, or undefined for all. Returns a scalar (float32, or float64
  // for float64 inputs). A pair index outside a model's hidden states is an InputError.
  torch::Tensor forward(const std::vector<torch::Tensor>& student_hidden,
                        const std::vector<torch::Tensor>& teacher_hidden,
                        const torch::Tensor& mask);

  const std::vector<LayerPair>& pairs() const { return pairs_; }
  // The projection of pair i, or null (identity) when the widths are equal.
  const torch::nn::Linear& projection(size_t i) const { return projections_.at(i); }

 private:
  std::vector<LayerPair> pairs_;
  int64_t student_dim_, teacher_dim_;
  bool cosine_;
  std::vector<torch::nn::Linear> projections_;  // one per pair, null when widths are equal
};
TORCH_MODULE(HiddenStateLoss);

}  // namespace edgedistill::distill
