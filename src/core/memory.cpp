#include "core/memory.h"

#include <malloc.h>

namespace edgedistill::core {

void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // trim only when a GiB at the heap's top is free
#endif
}

}  // namespace edgedistill::core
