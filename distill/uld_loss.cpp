#include "distill/uld_loss.h"

#include <algorithm>

#include "core/error.h"

namespace edgedistill::distill {
namespace {

// softmax(logits / T) [N, V] sorted descending along the vocabulary, then zero-padded to `width`.
torch::Tensor sorted_probabilities(const torch::Tensor& logits, double temperature,
                                   torch::ScalarType type, int64_t width) {
  const auto probabilities = torch::softmax(logits.to(type) * (1.0 / temperature), -1);
  const auto sorted = std::get<0>(probabilities.sort(-1, /*descending=*/true));
  const int64_t missing = width - sorted.size(1);
  return missing > 0 ? torch::constant_pad_nd(sorted, {0, missing}, 0.0) : sorted;
}

}  // namespace

torch::Tensor uld_distance(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double temperature) {
  ED_CHECK(student_logits.dim() == 2 && teacher_logits.dim() == 2 &&
               student_logits.size(0) == teacher_logits.size(0),
           "uld needs student [rows, V_s] and teacher [rows, V_t] logits with the same rows");
  ED_CHECK(temperature > 0, "uld temperature must be positive");
  const auto type =
      student_logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const int64_t width = std::max(student_logits.size(1), teacher_logits.size(1));
  const auto q = sorted_probabilities(student_logits, temperature, type, width);
  const auto p = sorted_probabilities(teacher_logits.detach(), temperature, type, width);
  return (q - p).abs().sum(-1);
}

torch::Tensor uld_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& mask, const UldOptions& options) {
  const int64_t rows = student_logits.size(0);
  ED_CHECK(!mask.defined() || mask.numel() == rows, "mask must have one entry per row");
  const int64_t width = std::max(student_logits.size(1), teacher_logits.size(1));
  const int64_t chunk =
      options.chunk_rows > 0
          ? options.chunk_rows
          : std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, width));
  torch::Tensor total;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    auto distances = uld_distance(student_logits.narrow(0, first, count),
                                  teacher_logits.narrow(0, first, count), options.temperature);
    if (mask.defined()) {
      distances = distances * mask.narrow(0, first, count).to(distances.scalar_type());
    }
    total = total.defined() ? total + distances.sum() : distances.sum();
  }
  // No rows: 0, still attached to the student's graph so a caller can backpropagate through it.
  if (!total.defined()) return student_logits.sum() * 0.0;
  const double denominator =
      mask.defined() ? mask.to(torch::kFloat64).sum().item<double>() : static_cast<double>(rows);
  return total / std::max(denominator, 1.0);
}

}  // namespace edgedistill::distill
