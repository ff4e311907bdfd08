// The one place where the two RoPE row orders of q and k projections meet (docs/import.md).
//
// Hugging Face's Llama, Mistral and Qwen2 rotate "halves": in each head of width D, element i
// pairs with element i + D/2 (rotate_half). edgedistill, like GGUF's llama architecture and
// llama.cpp, rotates adjacent pairs (2i, 2i + 1). The two are the same attention once the rows of
// W_q and W_k (and their biases) are reordered inside every head:
//   interleaved row 2i     <- HF row i
//   interleaved row 2i + 1 <- HF row i + D/2            (i < D/2)
// v and the output projection are untouched: the attention scores q.k are invariant under the
// same permutation of q and k, and v never rotates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace edgedistill::convert {

// For a projection of `heads` heads of `head_dim` rows each: source[r] is the Hugging Face row
// that becomes interleaved row r. head_dim must be even.
std::vector<int64_t> interleaved_rows_from_hf(int64_t heads, int64_t head_dim);
// The inverse: source[r] is the interleaved row that becomes Hugging Face row r.
std::vector<int64_t> hf_rows_from_interleaved(int64_t heads, int64_t head_dim);

// Rows of `row_bytes` bytes each, gathered: out row r = in row source[r].
std::vector<uint8_t> gather_rows(const uint8_t* in, const std::vector<int64_t>& source,
                                 size_t row_bytes);

}  // namespace edgedistill::convert
