#include "prune/masks.h"

#include <charconv>
#include <cmath>

#include "core/error.h"

namespace edgedistill::prune {

namespace {

// Ones of `scores`' shape (flattened to [groups, size]) with the `count` lowest of each group
// zeroed; a stable sort breaks ties towards the earlier index.
torch::Tensor zero_lowest(const torch::Tensor& grouped, int64_t count) {
  auto mask = torch::ones(grouped.sizes(), grouped.options().dtype(torch::kFloat32));
  if (count <= 0) return mask;
  // The optional<bool> spells out the stable overload (a plain `true` would bind to `dim`).
  const auto order = std::get<1>(
      torch::sort(grouped, c10::optional<bool>(true), /*dim=*/-1, /*descending=*/false));
  mask.scatter_(-1, order.narrow(-1, 0, count), 0.0);
  return mask;
}

}  // namespace

std::optional<NmPattern> parse_nm_pattern(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  NmPattern pattern;
  const auto parse = [](std::string_view part, int& out) {
    const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), out);
    return error == std::errc() && end == part.data() + part.size();
  };
  if (!parse(text.substr(0, colon), pattern.n) || !parse(text.substr(colon + 1), pattern.m)) {
    return std::nullopt;
  }
  if (pattern.n <= 0 || pattern.n >= pattern.m) return std::nullopt;
  return pattern;
}

torch::Tensor magnitude_scores(const torch::Tensor& weight) {
  return weight.detach().abs().to(torch::kFloat32);
}

torch::Tensor wanda_scores(const torch::Tensor& weight, const torch::Tensor& input_sq) {
  ED_CHECK(input_sq.dim() == 1 && input_sq.size(0) == weight.size(1),
           "wanda: one input norm per column");
  return magnitude_scores(weight) * input_sq.to(torch::kFloat32).sqrt().unsqueeze(0);
}

torch::Tensor lowest_share_mask(const torch::Tensor& scores, double share, bool per_row) {
  ED_CHECK(scores.dim() == 2 && share >= 0 && share <= 1, "a share of a matrix's scores");
  const auto grouped = per_row ? scores : scores.reshape({1, -1});
  const auto count = std::llround(share * static_cast<double>(grouped.size(1)));
  return zero_lowest(grouped, count).view(scores.sizes());
}

torch::Tensor nm_mask(const torch::Tensor& scores, NmPattern pattern) {
  ED_CHECK(scores.dim() == 2 && pattern.enabled() && scores.size(1) % pattern.m == 0,
           "an N:M pattern over whole groups of inputs");
  const auto grouped = scores.reshape({scores.size(0), -1, pattern.m});
  return zero_lowest(grouped, pattern.m - pattern.n).view(scores.sizes());
}

std::vector<torch::Tensor> global_share_masks(const std::vector<torch::Tensor>& scores,
                                              double share) {
  std::vector<torch::Tensor> flat;
  for (const auto& s : scores) flat.push_back(s.reshape({-1}).to(torch::kFloat32));
  const auto all = torch::cat(flat).unsqueeze(0);
  const auto count = std::llround(share * static_cast<double>(all.size(1)));
  const auto mask = zero_lowest(all, count).squeeze(0);
  std::vector<torch::Tensor> masks;
  int64_t offset = 0;
  for (const auto& s : scores) {
    masks.push_back(mask.narrow(0, offset, s.numel()).view(s.sizes()).clone());
    offset += s.numel();
  }
  return masks;
}

}  // namespace edgedistill::prune
