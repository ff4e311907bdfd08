// Process-wide memory settings for training.
#pragma once

namespace edgedistill::core {

// Keeps freed memory in the process for reuse. A training step allocates and frees the same large
// tensors every step (activations, gradients, 32 MB of logits); glibc by default maps each large
// block afresh and returns it to the system on free, so every step pays the page faults again
// (measured: a 16 MB SwiGLU gradient took 15 ms instead of 3 ms, the cross-entropy gradient 28 ms
// instead of ~5 ms). With mmap for large blocks off and trimming off, the heap keeps them.
void keep_freed_memory();

}  // namespace edgedistill::core
