// Universal Logit Distillation (ULD; Boizard et al. 2024, "Towards Cross-Tokenizer Distillation:
// the Universal Logit Distillation Loss for LLMs", arXiv:2402.12030): a distance between a
// teacher's and a student's next-token distributions when their vocabularies differ.
//
// Token i of one vocabulary means nothing to the other, so ULD compares the distributions by rank,
// not by token: each position's probabilities are sorted in descending order, the shorter vector
// is padded with zeros to the longer vocabulary, and the two are compared with an L1 distance
// (the paper's closed form of its Wasserstein distance):
//
//   uld(z_s, z_t) = sum_i |sort(q)_i - sort(p)_i|,   q = softmax(z_s / T), p = softmax(z_t / T).
//
// It lies in [0, 2]; it is 0 when one distribution is a permutation of the other, and between a
// uniform distribution over V tokens and a one-hot one it is 2 (1 - 1/V). The student's gradient
// flows through the sort (the sorted values are a permutation of the inputs). Softmaxes and sorts
// run in float32 (float64 for float64 student logits), in chunks of rows.
#pragma once

#include <torch/torch.h>

namespace edgedistill::distill {

struct UldOptions {
  double temperature = 1.0;  // T of both softmaxes
  int64_t chunk_rows = 0;    // rows per chunk; 0: about 4 M elements of the wider vocabulary
};

// Per-row distances: student_logits [N, V_s], teacher_logits [N, V_t] (V_s and V_t may differ;
// the teacher is not differentiated) -> [N].
torch::Tensor uld_distance(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double temperature);

// The distance averaged over the rows where `mask` [N] is nonzero (undefined mask: all rows); 0
// (still attached to the student's graph) when no row counts.
torch::Tensor uld_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& mask, const UldOptions& options);

}  // namespace edgedistill::distill
