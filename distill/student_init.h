// A student initialised from its teacher (DistilBERT, arXiv:1910.01108: take one block in two):
// the embeddings, final norm and output head, and a chosen subset of the teacher's blocks.
#pragma once

#include <vector>

#include "distill/distill_config.h"
#include "model/llama.h"

namespace edgedistill::distill {

// The teacher blocks StudentInit selects for a student of `student_layers` blocks: its explicit
// list, or 0, stride, 2 stride, ... InputError when the count or an index does not fit.
std::vector<int> teacher_blocks_to_copy(const StudentInit& init, int student_layers,
                                        int teacher_layers);

// Copies the teacher's weights into the student. The widths (dim, heads, kv heads, ffn, vocab)
// must match: an InputError names the first that differs. A tied student takes the teacher's token
// embeddings; an untied student of a tied teacher gets them as its output head too.
void init_from_teacher_layers(model::LlamaModelImpl& student, const model::LlamaModelImpl& teacher,
                              const StudentInit& init);

}  // namespace edgedistill::distill
