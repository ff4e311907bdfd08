// The alignment of student and teacher positions when their tokenizers differ, as ULD does it
// (Boizard et al. 2024, arXiv:2402.12030, section 3): the student's token window is decoded to
// text with the student's tokenizer and encoded again with the teacher's; the teacher runs on that
// sequence, and position t of one is paired with position t of the other, up to the shorter of the
// two. No attempt is made to match token boundaries: the pairing is by index only, which is the
// paper's approximation (the two sequences drift apart where the tokenizers split text
// differently).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "data/tokenizer.h"

namespace edgedistill::distill {

// The teacher's token ids for one student window: each run of ordinary student tokens is decoded
// with `student` and encoded with `teacher`; the student's BOS and EOS become the teacher's (left
// out when the teacher has none, and BOS also when the teacher's documents do not start with one),
// so document boundaries survive. At most `max_len` ids (the first ones).
std::vector<int64_t> retokenize_window(const std::vector<int64_t>& student_ids,
                                       const data::Tokenizer& student,
                                       const data::Tokenizer& teacher, int64_t max_len);

// A batch of student windows re-encoded for the teacher, and the positions paired by index.
struct TeacherAlignment {
  // [B, L_t] teacher ids, L_t the longest re-encoded row; shorter rows are padded on the right
  // with id 0 (padding follows every paired position and the teacher is causal, so it changes no
  // paired position's logits). L_t is 0 when no row has a teacher token.
  torch::Tensor teacher_inputs;
  // [M] paired positions, flattened: student b * S + t with teacher b * L_t + t, for each row b and
  // t < min(S, the row's teacher length).
  torch::Tensor student_rows, teacher_rows;
  int64_t teacher_tokens = 0;  // teacher ids in the batch, padding not counted
};

// Aligns each row of `student_inputs` [B, S] (int64, on the CPU) with its re-encoding, each cut to
// `max_len` teacher tokens (the teacher's context, or S: later positions are never paired).
TeacherAlignment align_windows(const torch::Tensor& student_inputs, const data::Tokenizer& student,
                               const data::Tokenizer& teacher, int64_t max_len);

}  // namespace edgedistill::distill
