// Thread counts. LibTorch starts with one thread on these machines, so every command sets the
// count explicitly; the default (0) means all cores this process may run on.
#pragma once

namespace edgedistill::core {

// The number of cores this process may use (sched_getaffinity), at least 1.
int available_cores();

// `requested` > 0 is used as is; 0 means available_cores().
int resolve_thread_count(int requested);

}  // namespace edgedistill::core
