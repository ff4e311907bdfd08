#include "runtime/linear.h"

#include "core/error.h"
#include "io/gguf_types.h"

namespace edgedistill::runtime {
namespace {

// Rows per unit of work: a multiple of the kernels' four-row groups, so no thread's range starts
// inside a group, and large enough that a unit's weight bytes (16 rows of 4096 Q4_0 columns:
// 36 KiB) outweigh the pool's per-chunk overhead.
constexpr int64_t kRowGrain = 16;

// The weight types whose kernels take 8-bit activation blocks: every block-quantized type (the
// K-quants' sub-blocks of 32 line up with the activation blocks).
bool quantized(io::GgmlType type) {
  return io::ggml_type_traits(type).quantized;
}

}  // namespace

void linear(ThreadPool& pool, const RuntimeKernels& kernels, const WeightMatrix& w, const float* x,
            int64_t n_tokens, float* y, ActivationScratch& scratch) {
  ED_CHECK(n_tokens >= 0 && w.rows >= 0 && w.cols >= 0, "n_tokens=", n_tokens, " rows=", w.rows,
           " cols=", w.cols);
  if (n_tokens == 0 || w.rows == 0) return;
  const int block = io::ggml_type_traits(w.type).block_elems;
  ED_CHECK(w.cols % block == 0, io::ggml_type_traits(w.type).name, " weight with ", w.cols,
           " columns, not a multiple of its block size ", block);

  const Q8ActivationBlock* xq = nullptr;
  if (quantized(w.type)) {
    ED_CHECK(w.cols % io::kQuantBlock == 0, "quantized weight with ", w.cols,
             " columns, not a multiple of ", io::kQuantBlock);
    const int64_t blocks_per_token = w.cols / io::kQuantBlock;
    const auto blocks = static_cast<size_t>(n_tokens * blocks_per_token);
    if (scratch.size() < blocks) scratch.resize(blocks);
    Q8ActivationBlock* out = scratch.data();
    // Prefill quantizes its tokens in parallel; one token's quantization is too short to split.
    pool.parallel_for(n_tokens, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        kernels.quantize_activations(x + t * w.cols, w.cols, out + t * blocks_per_token);
      }
    });
    xq = out;
  }

  if (n_tokens == 1) {
    pool.parallel_for(w.rows, kRowGrain,
                      [&](int64_t begin, int64_t end) { kernels.matvec(w, begin, end, x, xq, y); });
  } else {
    pool.parallel_for(w.rows, kRowGrain, [&](int64_t begin, int64_t end) {
      kernels.matmul(w, begin, end, x, xq, n_tokens, y, w.rows);
    });
  }
}

}  // namespace edgedistill::runtime
