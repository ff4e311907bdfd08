#include "data/split.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "data/data_config.h"

namespace edgedistill::data {

const std::vector<int64_t>& DocumentSplit::named(const std::string& split) const {
  if (split == "train") return train;
  if (split == "valid") return valid;
  ED_CHECK(split == "test", "split ", split);
  return test;
}

DocumentSplit split_documents(int64_t document_count, const SplitConfig& config) {
  ED_CHECK(document_count >= 0, "document_count=", document_count);
  std::vector<int64_t> order(static_cast<size_t>(document_count));
  for (int64_t i = 0; i < document_count; ++i) order[static_cast<size_t>(i)] = i;
  core::Rng rng(static_cast<uint64_t>(config.seed));
  rng.shuffle(order);

  const auto count = static_cast<double>(document_count);
  const auto valid_count = static_cast<size_t>(std::llround(config.valid * count));
  const auto test_count =
      std::min(order.size() - valid_count, static_cast<size_t>(std::llround(config.test * count)));

  DocumentSplit split;
  split.valid.assign(order.begin(), order.begin() + static_cast<ptrdiff_t>(valid_count));
  split.test.assign(order.begin() + static_cast<ptrdiff_t>(valid_count),
                    order.begin() + static_cast<ptrdiff_t>(valid_count + test_count));
  split.train.assign(order.begin() + static_cast<ptrdiff_t>(valid_count + test_count), order.end());
  for (auto* part : {&split.train, &split.valid, &split.test})
    std::sort(part->begin(), part->end());
  return split;
}

}  // namespace edgedistill::data
