// `edgedistill bench --kernels`: how close the runtime's matrix-vector products (single-token
// decode) come to the machine's memory bandwidth, for every kernel build this CPU can run.
//
// Decode streams every weight once per token, so a matvec over a matrix much larger than the
// last-level cache can go no faster than memory reads; its weight bytes per second divided by the
// measured read bandwidth says how much of the hardware the kernel uses (1.0 = all of it).
#pragma once

#include <cstdint>
#include <ostream>

#include <nlohmann/json_fwd.hpp>

namespace edgedistill::runtime {

struct KernelBenchOptions {
  // The matrix [rows, cols]; the default is Q4_0 72 MiB, Q8_0 136 MiB, F16 256 MiB: several
  // times a server's L3.
  int64_t rows = 16384;
  int64_t cols = 8192;  // a multiple of 32
  int threads = 0;      // 0: all cores this process may use
  int repeats = 15;     // timed runs per measurement (after one warm-up); the median is reported
};

// Measures (a) read bandwidth: all threads summing a buffer several times larger than L3, and
// (b) for Q4_0, Q8_0, F16, Q4_1, Q5_0 and Q5_1 weights (and Q4_K, Q5_K and Q6_K when cols is a
// multiple of 256) and each available build (scalar included) the single-token
// linear() time, as weight GB/s (1e9 bytes) and its ratio to (a). A bandwidth sample is taken
// right before every timed kernel run, so on a shared machine both meet the same conditions;
// each figure is a median. Returns
// {"threads", "rows", "cols", "repeats", "cpu", "selected_isa",
//  "bandwidth": {"gb_per_s", "buffer_mib", "l3_mib", "samples"},
//  "matvec": [{"isa", "type", "weight_mib", "ms", "gb_per_s", "ratio_to_bandwidth"}, ...]}.
nlohmann::ordered_json run_kernel_bench(const KernelBenchOptions& options);

// The report of run_kernel_bench as a plain-text table.
void print_kernel_bench_table(const nlohmann::ordered_json& report, std::ostream& out);

}  // namespace edgedistill::runtime
