#include "core/threads.h"

#include <sched.h>

#include <thread>

namespace edgedistill::core {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? static_cast<int>(hardware) : 1;
}

int resolve_thread_count(int requested) {
  return requested > 0 ? requested : available_cores();
}

}  // namespace edgedistill::core
