// Wall-clock helpers shared by the benchmarks (bench --train-config, --model, --kernels) and run.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace edgedistill::core {

// Seconds from `start` to now on the steady clock.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The median of a non-empty sample (the mean of the two middle values for an even count).
inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace edgedistill::core
