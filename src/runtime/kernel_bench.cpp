#include "runtime/kernel_bench.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/timing.h"
#include "io/gguf_types.h"
#include "io/half.h"
#include "runtime/kernels.h"
#include "runtime/linear.h"
#include "runtime/thread_pool.h"

namespace edgedistill::runtime {
namespace {

using core::median;

using Clock = std::chrono::steady_clock;

constexpr int64_t kMiB = int64_t{1} << 20;
// The bandwidth buffer: kBufferPerL3 times L3 (so no cache level holds a useful share of it),
// within these limits (the machines this runs on have a few GiB free at least).
constexpr int64_t kBufferPerL3 = 4;
constexpr int64_t kMinBuffer = 256 * kMiB;
constexpr int64_t kMaxBuffer = 1024 * kMiB;
constexpr int64_t kFallbackL3 = 32 * kMiB;
// Below this many times L3, the table warns that caches may serve part of the matrix.
constexpr double kMatrixPerL3 = 4.0;
// A slow build (scalar F16) stops repeating after this long, once it has kMinRepeats timings.
constexpr double kTimeBudgetSeconds = 3.0;
constexpr int kMinRepeats = 3;
// Words summed per unit of parallel work: 256 KiB.
constexpr int64_t kWordsPerGrain = 32768;

// Bytes of the last-level (L3) cache: the larger of sysfs's (one core's L3) and sysconf's (on
// some virtual machines the whole socket's, when the vCPUs may span several L3s), else a typical
// size.
int64_t l3_cache_bytes() {
  int64_t bytes = 0;
  std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::string text;
  if (in >> text && !text.empty()) {
    try {
      int64_t value = std::stoll(text);
      if (text.back() == 'K') value *= 1024;
      if (text.back() == 'M') value *= kMiB;
      bytes = std::max(bytes, value);
    } catch (const std::exception&) {
    }
  }
#if defined(_SC_LEVEL3_CACHE_SIZE)
  bytes = std::max<int64_t>(bytes, sysconf(_SC_LEVEL3_CACHE_SIZE));
#endif
  return bytes > 0 ? bytes : kFallbackL3;
}

// One untimed warm-up run, then up to `repeats` timed ones, each right after one run of `probe`
// (the bandwidth probe: on a shared machine both then meet the same conditions); the median of
// the timed runs' seconds.
template <class Fn, class Probe>
double median_seconds(int repeats, Fn&& body, Probe&& probe) {
  body();
  std::vector<double> seconds;
  const auto start = Clock::now();
  for (int i = 0; i < repeats; ++i) {
    probe();
    const auto t0 = Clock::now();
    body();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    const double spent = std::chrono::duration<double>(Clock::now() - start).count();
    if (static_cast<int>(seconds.size()) >= kMinRepeats && spent > kTimeBudgetSeconds) break;
  }
  return median(seconds);
}

// Sums n words the way the matvec kernels read a row group: blocks of kStreams * kStreamWords
// words read as kStreams interleaved streams, asking for the same places in the next block to be
// brought into L2. Of the simple loops tried (one stream; 4 or 8 streams far apart, with and
// without prefetch; blocks of 2 to 8 streams of 4 to 64 KiB), this one read fastest on the
// machines measured, and a plain one-stream sum reached only ~70 % of it.
constexpr int kStreams = 4;
constexpr int64_t kStreamWords = 2048;  // 16 KiB
constexpr int64_t kWordsPerLine = 8;    // 64-byte cache lines
constexpr int64_t kBlockWords = kStreams * kStreamWords;
uint64_t sum_words(const uint64_t* p, int64_t n) {
  uint64_t sums[kStreams] = {};
  int64_t base = 0;
  for (; base + kBlockWords <= n; base += kBlockWords) {
    const uint64_t* block = p + base;
    for (int64_t i = 0; i < kStreamWords; i += kWordsPerLine) {
      for (int k = 0; k < kStreams; ++k) {
        const uint64_t* line = block + k * kStreamWords + i;
        __builtin_prefetch(line + kBlockWords, 0, 2);
        for (int64_t e = 0; e < kWordsPerLine; ++e) sums[k] += line[e];
      }
    }
  }
  uint64_t total = 0;
  for (; base < n; ++base) total += p[base];
  for (int k = 0; k < kStreams; ++k) total += sums[k];
  return total;
}

// Read bandwidth: every thread sums its share of a `bytes` buffer. Sampled right before every
// timed kernel run; reports the median of all samples.
class BandwidthProbe {
 public:
  BandwidthProbe(ThreadPool& pool, int64_t bytes)
      : pool_(pool), buffer_(static_cast<size_t>(bytes / 8)) {
    // Written by the threads that will read it (first touch places pages near them).
    pool_.parallel_for(words(), kWordsPerGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        buffer_[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15u;
      }
    });
  }

  // Times one pass over the buffer.
  void sample() {
    const auto t0 = Clock::now();
    pool_.parallel_for(words(), kWordsPerGrain, [&](int64_t begin, int64_t end) {
      checksum_.fetch_add(sum_words(buffer_.data() + begin, end - begin),
                          std::memory_order_relaxed);
    });
    seconds_.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }

  double bytes_per_second() const {
    // Keeps the sums observable, so the compiler cannot drop them.
    if (checksum_.load() == 1) std::fputs("", stderr);
    return static_cast<double>(words() * 8) / median(seconds_);
  }
  int64_t samples() const { return static_cast<int64_t>(seconds_.size()); }

 private:
  int64_t words() const { return static_cast<int64_t>(buffer_.size()); }

  ThreadPool& pool_;
  std::vector<uint64_t> buffer_;
  std::atomic<uint64_t> checksum_{0};
  std::vector<double> seconds_;
};

// A pseudo-random byte for position i (a 64-bit mix; the bench needs plausible, not random, data).
uint8_t mixed_byte(uint64_t i) {
  i ^= i >> 33;
  i *= 0xFF51AFD7ED558CCDu;
  i ^= i >> 33;
  return static_cast<uint8_t>(i);
}

// The types measured, in the table's order; the K-quants only where cols is a whole number of
// super-blocks.
std::vector<io::GgmlType> bench_types(int64_t cols) {
  std::vector<io::GgmlType> types = {io::GgmlType::q4_0, io::GgmlType::q8_0, io::GgmlType::f16,
                                     io::GgmlType::q4_1, io::GgmlType::q5_0, io::GgmlType::q5_1};
  if (cols % io::kSuperBlock == 0) {
    for (io::GgmlType type : {io::GgmlType::q4_k, io::GgmlType::q5_k, io::GgmlType::q6_k}) {
      types.push_back(type);
    }
  }
  return types;
}

// Byte offsets, within one block of `type`, of its f16 scale fields (scale, then minimum; -1
// where the type has none).
struct ScaleFields {
  int d = 0;
  int m = -1;
};
ScaleFields scale_fields(io::GgmlType type) {
  switch (type) {
    case io::GgmlType::q4_1:
    case io::GgmlType::q5_1:
    case io::GgmlType::q4_k:  // d, dmin
    case io::GgmlType::q5_k:
      return {0, 2};
    case io::GgmlType::q6_k:
      return {static_cast<int>(offsetof(io::Q6KBlock, d)), -1};
    default:
      return {0, -1};
  }
}

// A [rows, cols] matrix of `type` with varied quants and ordinary f16 scales (0.01): no NaN,
// infinity or subnormal that could slow a kernel down.
std::vector<uint8_t> bench_matrix(ThreadPool& pool, io::GgmlType type, int64_t rows, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(io::ggml_row_bytes(type, cols));
  std::vector<uint8_t> data(static_cast<size_t>(rows * stride));
  const uint16_t scale = io::float_to_f16(0.01f);
  pool.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      uint8_t* row = data.data() + r * stride;
      for (int64_t i = 0; i < stride; ++i)
        row[i] = mixed_byte(static_cast<uint64_t>(r * stride + i));
      auto set_f16 = [](uint8_t* p, uint16_t v) {
        p[0] = static_cast<uint8_t>(v & 0xFF);
        p[1] = static_cast<uint8_t>(v >> 8);
      };
      if (type == io::GgmlType::f16) {
        for (int64_t j = 0; j < cols; ++j) {
          set_f16(row + 2 * j,
                  io::float_to_f16((mixed_byte(static_cast<uint64_t>(j)) - 128) / 64.0f));
        }
        continue;
      }
      const auto& traits = io::ggml_type_traits(type);
      const ScaleFields fields = scale_fields(type);
      for (int64_t b = 0; b < cols / traits.block_elems; ++b) {
        uint8_t* block = row + b * traits.block_bytes;
        set_f16(block + fields.d, scale);
        if (fields.m >= 0) set_f16(block + fields.m, scale);
      }
    }
  });
  return data;
}

}  // namespace

nlohmann::ordered_json run_kernel_bench(const KernelBenchOptions& options) {
  if (options.rows <= 0 || options.cols <= 0 || options.cols % io::kQuantBlock != 0) {
    throw InputError(str("bench --kernels: --rows ", options.rows, " --cols ", options.cols,
                         ": rows must be positive and cols a positive multiple of ",
                         io::kQuantBlock, " (e.g. --rows 16384 --cols 8192)"));
  }
  if (options.repeats < 1) {
    throw InputError(str("bench --kernels: repeats is ", options.repeats, "; use 1 or more"));
  }
  ThreadPool pool(options.threads);
  const int64_t l3 = l3_cache_bytes();
  const int64_t buffer_bytes = std::clamp(kBufferPerL3 * l3, kMinBuffer, kMaxBuffer);
  BandwidthProbe probe(pool, buffer_bytes);
  probe.sample();  // warm-up: the samples that count come with the kernels' timed runs

  std::vector<const RuntimeKernels*> builds = {&scalar_runtime_kernels()};
  for (const RuntimeKernels* build :
       {avx2_runtime_kernels(), avx512_runtime_kernels(), neon_runtime_kernels()}) {
    if (build != nullptr) builds.push_back(build);
  }

  std::vector<float> x(static_cast<size_t>(options.cols));
  for (int64_t j = 0; j < options.cols; ++j) {
    x[j] = (mixed_byte(static_cast<uint64_t>(j) + 7) - 127.5f) / 64.0f;
  }
  std::vector<float> y(static_cast<size_t>(options.rows));
  ActivationScratch scratch;
  struct Timing {
    const char* isa;
    io::GgmlType type;
    double bytes;
    double seconds;
  };
  std::vector<Timing> timings;
  for (io::GgmlType type : bench_types(options.cols)) {
    const std::vector<uint8_t> data = bench_matrix(pool, type, options.rows, options.cols);
    const WeightMatrix w{type, options.rows, options.cols, data.data()};
    for (const RuntimeKernels* build : builds) {
      const double seconds = median_seconds(
          options.repeats, [&] { linear(pool, *build, w, x.data(), 1, y.data(), scratch); },
          [&] { probe.sample(); });
      timings.push_back({build->isa, type, static_cast<double>(data.size()), seconds});
    }
  }
  const double bandwidth = probe.bytes_per_second();

  nlohmann::ordered_json report;
  report["threads"] = pool.size();
  report["rows"] = options.rows;
  report["cols"] = options.cols;
  report["repeats"] = options.repeats;
  report["cpu"] = core::describe_cpu_features();
  report["selected_isa"] = runtime_kernels().isa;
  report["bandwidth"] = {{"gb_per_s", bandwidth / 1e9},
                         {"buffer_mib", buffer_bytes / kMiB},
                         {"l3_mib", static_cast<double>(l3) / kMiB},
                         {"samples", probe.samples()}};
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const Timing& t : timings) {
    const double bytes_per_second = t.bytes / t.seconds;
    results.push_back({{"isa", t.isa},
                       {"type", std::string(io::ggml_type_traits(t.type).name)},
                       {"weight_mib", t.bytes / kMiB},
                       {"ms", t.seconds * 1e3},
                       {"gb_per_s", bytes_per_second / 1e9},
                       {"ratio_to_bandwidth", bytes_per_second / bandwidth}});
  }
  report["matvec"] = std::move(results);
  return report;
}

void print_kernel_bench_table(const nlohmann::ordered_json& report, std::ostream& out) {
  char line[200];
  const auto& bw = report.at("bandwidth");
  std::snprintf(line, sizeof line,
                "read bandwidth: %.1f GB/s (%d threads summing a %d MiB buffer, median of %d "
                "samples taken between the kernels' runs; L3 %.0f MiB)\n",
                bw.at("gb_per_s").get<double>(), report.at("threads").get<int>(),
                bw.at("buffer_mib").get<int>(), bw.at("samples").get<int>(),
                bw.at("l3_mib").get<double>());
  out << line;
  std::snprintf(line, sizeof line, "matvec: %lld x %lld weights, 1 token, median of %d runs; cpu: ",
                static_cast<long long>(report.at("rows").get<int64_t>()),
                static_cast<long long>(report.at("cols").get<int64_t>()),
                report.at("repeats").get<int>());
  out << line << report.at("cpu").get<std::string>() << "\n\n";
  // Q4_0, the smallest matrix, must not fit in the caches, or the ratios overstate the kernels.
  double smallest_mib = 0;
  for (const auto& row : report.at("matvec")) {
    const double mib = row.at("weight_mib").get<double>();
    if (smallest_mib == 0 || mib < smallest_mib) smallest_mib = mib;
  }
  if (smallest_mib < kMatrixPerL3 * bw.at("l3_mib").get<double>()) {
    std::snprintf(
        line, sizeof line,
        "note: the smallest matrix (%.0f MiB) is less than %d x L3: caches may serve part "
        "of it; a larger --rows gives honest ratios\n",
        smallest_mib, static_cast<int>(kMatrixPerL3));
    out << line;
  }
  std::snprintf(line, sizeof line, "%-11s %-5s %11s %9s %8s %13s\n", "isa", "type", "weights MiB",
                "ms", "GB/s", "x bandwidth");
  out << line;
  for (const auto& row : report.at("matvec")) {
    std::snprintf(line, sizeof line, "%-11s %-5s %11.1f %9.2f %8.1f %13.2f\n",
                  row.at("isa").get<std::string>().c_str(),
                  row.at("type").get<std::string>().c_str(), row.at("weight_mib").get<double>(),
                  row.at("ms").get<double>(), row.at("gb_per_s").get<double>(),
                  row.at("ratio_to_bandwidth").get<double>());
    out << line;
  }
}

}  // namespace edgedistill::runtime
