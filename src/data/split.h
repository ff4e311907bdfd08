// The document split: a seeded shuffle of document indices; the first round(valid * n) go to
// valid, the next round(test * n) to test, the rest to train. Whole documents only, so no text is
// in two splits. Deterministic for a given seed and count (core::Rng is portable).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgedistill::data {

struct SplitConfig;

inline const std::vector<std::string> kSplitNames = {"train", "valid", "test"};

struct DocumentSplit {
  // Document indices of each split, ascending (corpus order is kept within a split).
  std::vector<int64_t> train, valid, test;

  const std::vector<int64_t>& named(const std::string& split) const;
};

DocumentSplit split_documents(int64_t document_count, const SplitConfig& config);

}  // namespace edgedistill::data
