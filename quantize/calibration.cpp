#include "quantize/calibration.h"

#include "core/error.h"
#include "core/rng.h"

namespace edgedistill::quant {

torch::Tensor calibration_windows(const data::TokenShard& shard, int64_t tokens, int64_t context,
                                  uint64_t seed, const std::string& what) {
  ED_CHECK(tokens > 0 && context > 0, "calibration_windows: tokens ", tokens, ", context ",
           context);
  if (shard.size() < context) {
    throw InputError(str(what, " has ", shard.size(),
                         " tokens, fewer than one calibration window of ", context,
                         "; lower --calib-ctx or calibrate on more data (--calib)"));
  }
  const int64_t windows = (tokens + context - 1) / context;
  auto out = torch::empty({windows, context}, torch::kInt64);
  core::Rng rng(seed);
  const auto starts = static_cast<uint64_t>(shard.size() - context + 1);
  for (int64_t w = 0; w < windows; ++w) {
    shard.read(static_cast<int64_t>(rng.below(starts)), context, out[w].data_ptr<int64_t>());
  }
  return out;
}

}  // namespace edgedistill::quant
