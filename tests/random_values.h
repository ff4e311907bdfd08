// Reproducible random test values (core::Rng, portable across compilers and CPUs).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace edgedistill::test {

// `count` standard normal values by Box-Muller.
inline std::vector<float> unit_normal(size_t count, uint64_t seed) {
  constexpr double kPi = 3.14159265358979323846;
  core::Rng rng(seed);
  std::vector<float> values(count);
  for (size_t i = 0; i < count; i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(1.0 - rng.uniform()));  // 1 - u in (0, 1]
    const double angle = 2.0 * kPi * rng.uniform();
    values[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < count) values[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return values;
}

}  // namespace edgedistill::test
