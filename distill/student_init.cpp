#include "distill/student_init.h"

#include "core/error.h"

namespace edgedistill::distill {

std::vector<int> teacher_blocks_to_copy(const StudentInit& init, int student_layers,
                                        int teacher_layers) {
  std::vector<int> blocks = init.layers;
  if (blocks.empty()) {
    for (int i = 0; i < student_layers; ++i) blocks.push_back(i * init.stride);
  }
  if (static_cast<int>(blocks.size()) != student_layers) {
    throw InputError(str("student.layers names ", blocks.size(), " teacher blocks but the student ",
                         "has ", student_layers, "; give one teacher block per student block"));
  }
  for (const int block : blocks) {
    if (block < 0 || block >= teacher_layers) {
      throw InputError(str("student.", init.layers.empty() ? "stride" : "layers",
                           " selects teacher block ", block, " but the teacher has ",
                           teacher_layers, " (0 to ", teacher_layers - 1,
                           "); lower the stride or fix the list"));
    }
  }
  return blocks;
}

void init_from_teacher_layers(model::LlamaModelImpl& student, const model::LlamaModelImpl& teacher,
                              const StudentInit& init) {
  const auto& s = student.config();
  const auto& t = teacher.config();
  for (const auto& [name, a, b] :
       {std::tuple{"dim", s.dim, t.dim}, std::tuple{"n_heads", s.n_heads, t.n_heads},
        std::tuple{"n_kv_heads", s.n_kv_heads, t.n_kv_heads},
        std::tuple{"ffn_dim", s.ffn_dim, t.ffn_dim},
        std::tuple{"vocab_size", s.vocab_size, t.vocab_size}}) {
    if (a != b) {
      throw InputError(
          str("student.init = teacher-layers needs the teacher's widths, but the "
              "student's model.",
              name, " is ", a, " and the teacher's ", b,
              "; use the teacher's widths with fewer n_layers, or init = scratch"));
    }
  }
  const auto blocks = teacher_blocks_to_copy(init, s.n_layers, t.n_layers);
  torch::NoGradGuard no_grad;
  auto copy_module = [](torch::nn::Module& to, const torch::nn::Module& from) {
    const auto source = from.named_parameters();
    for (auto& item : to.named_parameters()) item.value().copy_(source[item.key()]);
  };
  copy_module(*student.token_embd, *teacher.token_embd);
  copy_module(*student.output_norm, *teacher.output_norm);
  if (student.output) {
    student.output->weight.copy_(teacher.output ? teacher.output->weight
                                                : teacher.token_embd->weight);
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    copy_module(*student.blk->ptr(i), *teacher.blk->ptr(static_cast<size_t>(blocks[i])));
  }
}

}  // namespace edgedistill::distill
