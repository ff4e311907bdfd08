#include "convert/rope_rows.h"

#include <cstring>

#include "core/error.h"

namespace edgedistill::convert {

std::vector<int64_t> interleaved_rows_from_hf(int64_t heads, int64_t head_dim) {
  ED_CHECK(heads > 0 && head_dim > 0 && head_dim % 2 == 0, "rope rows: heads=", heads,
           " head_dim=", head_dim);
  const int64_t half = head_dim / 2;
  std::vector<int64_t> source(static_cast<size_t>(heads * head_dim));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      source[static_cast<size_t>(h * head_dim + 2 * i)] = h * head_dim + i;
      source[static_cast<size_t>(h * head_dim + 2 * i + 1)] = h * head_dim + i + half;
    }
  }
  return source;
}

std::vector<int64_t> hf_rows_from_interleaved(int64_t heads, int64_t head_dim) {
  const std::vector<int64_t> forward = interleaved_rows_from_hf(heads, head_dim);
  std::vector<int64_t> inverse(forward.size());
  for (size_t r = 0; r < forward.size(); ++r)
    inverse[static_cast<size_t>(forward[r])] = static_cast<int64_t>(r);
  return inverse;
}

std::vector<uint8_t> gather_rows(const uint8_t* in, const std::vector<int64_t>& source,
                                 size_t row_bytes) {
  std::vector<uint8_t> out(source.size() * row_bytes);
  for (size_t r = 0; r < source.size(); ++r) {
    std::memcpy(out.data() + r * row_bytes, in + static_cast<size_t>(source[r]) * row_bytes,
                row_bytes);
  }
  return out;
}

}  // namespace edgedistill::convert
