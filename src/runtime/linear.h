// A linear layer of the forward pass: y = x W^T for one token (decode) or many (prefill), with the
// rows of W split across a thread pool.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/kernels.h"
#include "runtime/thread_pool.h"

namespace edgedistill::runtime {

// The 8-bit activation blocks of quantized-weight products, reused between calls so decode does
// not allocate: linear() grows it when too small and never shrinks it.
using ActivationScratch = std::vector<Q8ActivationBlock>;

// x [n_tokens, w.cols] -> y [n_tokens, w.rows] = x W^T. For Q8_0 / Q4_0 / Q4_1 weights x is first
// quantized into `scratch` (n_tokens * w.cols / 32 blocks). One token takes `kernels.matvec`, more
// take `kernels.matmul`; either way each thread gets a contiguous range of whole row groups, and
// every row's value is the same whatever the thread count.
void linear(ThreadPool& pool, const RuntimeKernels& kernels, const WeightMatrix& w, const float* x,
            int64_t n_tokens, float* y, ActivationScratch& scratch);

}  // namespace edgedistill::runtime
