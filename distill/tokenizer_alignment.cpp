#include "distill/tokenizer_alignment.h"

#include <algorithm>

#include "core/error.h"

namespace edgedistill::distill {

std::vector<int64_t> retokenize_window(const std::vector<int64_t>& student_ids,
                                       const data::Tokenizer& student,
                                       const data::Tokenizer& teacher, int64_t max_len) {
  // A token that is both the student's BOS and its EOS (GPT-2's <|endoftext|>) is read as EOS.
  const int32_t student_eos = student.eos_id(), student_bos = student.bos_id();
  const bool teacher_bos = teacher.bos_id() >= 0 && teacher.frames_with_bos();
  // The teacher's documents start with BOS but the student's do not: a BOS follows each EOS.
  const bool bos_after_eos = teacher_bos && !student.frames_with_bos();
  std::vector<int64_t> out;
  std::vector<int32_t> run;  // ordinary student tokens not yet re-encoded
  auto flush = [&] {
    if (run.empty()) return;
    for (const int32_t id : teacher.encode(student.decode(run))) out.push_back(id);
    run.clear();
  };
  for (const int64_t id : student_ids) {
    if (student_eos >= 0 && id == student_eos) {
      flush();
      if (teacher.eos_id() >= 0) out.push_back(teacher.eos_id());
      if (bos_after_eos) out.push_back(teacher.bos_id());
    } else if (student_bos >= 0 && id == student_bos) {
      flush();
      if (teacher_bos) out.push_back(teacher.bos_id());
    } else {
      run.push_back(static_cast<int32_t>(id));
    }
  }
  flush();
  if (static_cast<int64_t>(out.size()) > max_len) out.resize(static_cast<size_t>(max_len));
  return out;
}

TeacherAlignment align_windows(const torch::Tensor& student_inputs, const data::Tokenizer& student,
                               const data::Tokenizer& teacher, int64_t max_len) {
  ED_CHECK(student_inputs.dim() == 2 && student_inputs.scalar_type() == torch::kInt64 &&
               student_inputs.device().is_cpu(),
           "align_windows takes [rows, seq_len] int64 student ids on the CPU");
  const int64_t rows = student_inputs.size(0), seq_len = student_inputs.size(1);
  const auto ids = student_inputs.accessor<int64_t, 2>();
  std::vector<std::vector<int64_t>> encoded(static_cast<size_t>(rows));
  int64_t longest = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> window(static_cast<size_t>(seq_len));
    for (int64_t t = 0; t < seq_len; ++t) window[static_cast<size_t>(t)] = ids[r][t];
    encoded[static_cast<size_t>(r)] = retokenize_window(window, student, teacher, max_len);
    longest = std::max(longest, static_cast<int64_t>(encoded[static_cast<size_t>(r)].size()));
  }
  TeacherAlignment alignment;
  alignment.teacher_inputs = torch::zeros({rows, longest}, torch::kInt64);
  auto teacher_ids = alignment.teacher_inputs.accessor<int64_t, 2>();
  std::vector<int64_t> student_rows, teacher_rows;
  for (int64_t r = 0; r < rows; ++r) {
    const auto& row = encoded[static_cast<size_t>(r)];
    const auto length = static_cast<int64_t>(row.size());
    for (int64_t t = 0; t < length; ++t) teacher_ids[r][t] = row[static_cast<size_t>(t)];
    alignment.teacher_tokens += length;
    for (int64_t t = 0; t < std::min(seq_len, length); ++t) {
      student_rows.push_back(r * seq_len + t);
      teacher_rows.push_back(r * longest + t);
    }
  }
  alignment.student_rows = torch::tensor(student_rows, torch::kInt64);
  alignment.teacher_rows = torch::tensor(teacher_rows, torch::kInt64);
  return alignment;
}

}  // namespace edgedistill::distill
