// The runtime's matrix kernels: weight rows of a GGUF type times float activations.
//
// One source is compiled once per instruction set, each in its own file with its own flags
// (kernels_scalar.cpp, kernels_avx2.cpp, kernels_avx512.cpp, kernels_neon.cpp); runtime_kernels()
// picks one at first use from CPUID (core::selected_isa(); EDGEDISTILL_ISA forces one). The scalar
// build is the reference twin every other build is tested against.
//
// For the block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) the activations
// are first quantized to 8-bit blocks of 32 (as llama.cpp's CPU path does) and the dot products
// are integer sums scaled per block: a K-quant's sub-blocks (32 elements; Q6_K's scales cover 16)
// line up with the activation blocks, so its small integer sub-block scales multiply the integer
// sums and its f16 super-block scales the float ones. F32 and F16 weights take float activations
// directly.
//
// A weight matrix is `rows` rows of `cols` elements in GGUF layout: row r starts at
// data + r * io::ggml_row_bytes(type, cols). Every kernel computes a range of rows [row_begin,
// row_end) so callers split rows across threads.
#pragma once

#include <cstdint>

#include "io/gguf_types.h"

namespace edgedistill::runtime {

// 32 activations as int8 with one float scale: x_j ~= qs[j] * d; sum = d * sum_j qs[j] (the
// term a Q4_1 weight's minimum multiplies).
struct Q8ActivationBlock {
  float d;
  float sum;
  int8_t qs[io::kQuantBlock];
};
static_assert(sizeof(Q8ActivationBlock) == 40, "two floats + 32 int8");

struct WeightMatrix {
  io::GgmlType type = io::GgmlType::f32;
  int64_t rows = 0;
  int64_t cols = 0;  // a multiple of the type's block size
  const uint8_t* data = nullptr;
};

struct RuntimeKernels {
  const char* isa;  // "scalar", "avx2", "avx512", "avx512vnni" or "neon"

  // x [n] -> n / 32 blocks: d = max|x| / 127, qs = round(x / d).
  void (*quantize_activations)(const float* x, int64_t n, Q8ActivationBlock* out);

  // y[r] = dot(W_r, x) for r in [row_begin, row_end); y is indexed by absolute row. `x` is read
  // for F32/F16 weights, `xq` (cols / 32 blocks) for quantized ones; the other may be null.
  void (*matvec)(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                 const Q8ActivationBlock* xq, float* y);

  // The same for n_tokens activation rows at once (prefill): x [n_tokens, cols] (or xq
  // [n_tokens, cols / 32]) -> y[t * y_stride + r]. Weight rows are read once per tile of tokens.
  void (*matmul)(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                 const Q8ActivationBlock* xq, int64_t n_tokens, float* y, int64_t y_stride);
};

// The kernels for this CPU (or EDGEDISTILL_ISA), chosen once.
const RuntimeKernels& runtime_kernels();
// Each build, for tests and benchmarks: the scalar reference always; the others when they were
// compiled and this CPU can run them (else nullptr).
const RuntimeKernels& scalar_runtime_kernels();
const RuntimeKernels* avx2_runtime_kernels();
const RuntimeKernels* avx512_runtime_kernels();  // the VNNI variant where the CPU has VNNI
// The AVX-512 build without VNNI even where the CPU has VNNI (the one Skylake-SP runs), so that
// tests on a VNNI machine check both variants; nullptr without AVX-512 BW.
const RuntimeKernels* avx512_without_vnni_runtime_kernels();
const RuntimeKernels* neon_runtime_kernels();

}  // namespace edgedistill::runtime
