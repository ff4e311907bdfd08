// Contrastive representation distillation: each student sequence, projected into a shared space,
// must pick out its own teacher sequence among the other sequences of the batch (and, optionally,
// a memory bank of earlier teacher sequences).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace edgedistill::distill {

// The mean of hidden [B, T, D] over the positions where mask [B, T] is nonzero (undefined: all)
// -> [B, D] float32 (float64 for float64 input); a row with no such position is 0.
torch::Tensor pool_sequences(const torch::Tensor& hidden, const torch::Tensor& mask);

// InfoNCE (CRD arXiv:1910.10699, in SimCSE's form arXiv:2104.08821): s [N, P] and t [M, P],
// M >= N, are L2-normalised, and the loss is -mean_i log softmax_j(s_i . t_j / tau)[i]: row i of t
// is s_i's positive, the other rows (including t's rows N..M-1) its negatives. At random
// embeddings it is about log(M). Scalar, float32 (float64 for float64 inputs).
torch::Tensor info_nce(const torch::Tensor& s, const torch::Tensor& t, double tau);

// CRD (arXiv:1910.10699) with learned heads: "student_head" Linear(student_dim -> proj_dim) and
// "teacher_head" Linear(teacher_dim -> proj_dim) (the teacher is frozen, its head trains), and
// InfoNCE at temperature tau over the batch's teacher vectors plus the filled rows of a memory
// bank. The bank (memory_bank rows, 0: none) keeps past teacher pooled vectors BEFORE the head, so
// they stay valid while the head learns; it is a FIFO held in the buffers "bank"
// [memory_bank, teacher_dim] and "bank_fill" ({rows filled, next row to write}), which
// checkpoints save and restore exactly. The heads and the bank are not part of the student.
class ContrastiveLossImpl : public torch::nn::Module {
 public:
  // InputError unless the widths are positive, tau > 0 and memory_bank >= 0.
  ContrastiveLossImpl(int64_t student_dim, int64_t teacher_dim, int64_t proj_dim, double tau,
                      int64_t memory_bank);

  // student_pooled [N, student_dim], teacher_pooled [N, teacher_dim] (e.g. pool_sequences of
  // each model's last hidden state; the teacher's are not differentiated) -> scalar loss. In
  // training mode the batch's teacher vectors then enter the bank (the oldest rows leave first).
  torch::Tensor forward(const torch::Tensor& student_pooled, const torch::Tensor& teacher_pooled);

  int64_t bank_capacity() const { return bank.defined() ? bank.size(0) : 0; }
  int64_t bank_rows() const;  // rows filled now (reads the buffer: synchronises with the device)

  torch::nn::Linear student_head{nullptr}, teacher_head{nullptr};
  torch::Tensor bank;       // [memory_bank, teacher_dim]; undefined when memory_bank is 0
  torch::Tensor bank_fill;  // [2] int64: rows filled, next row to write

 private:
  void push_to_bank(const torch::Tensor& teacher_pooled);

  double tau_;
};
TORCH_MODULE(ContrastiveLoss);

}  // namespace edgedistill::distill
