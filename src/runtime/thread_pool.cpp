// The runtime's thread pool (thread_pool.h).
//
// A call publishes one job word, (generation << 16) | chunk count, with a single atomic store:
// worker i runs chunk i when i < chunk count, the caller runs chunk 0, and the caller waits until
// `pending` (the workers' chunks) reaches zero. Because a worker learns from that one load both
// that a job is new and whether it has a chunk, a worker with nothing to do never reads the job's
// other fields, which the caller may already be overwriting for the next call.
#include "runtime/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/threads.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace edgedistill::runtime {
namespace {

// Tells the core that this is a spin-wait loop (saves power and the sibling hyperthread's time).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// How long an idle worker spins before it sleeps: longer than the gap between two matrix products
// of one decode step (a norm, RoPE or softmax on the calling thread: a few microseconds), so
// decode does not pay a futex wake-up (tens of microseconds) per product; short enough that an
// idle pool gives its cores back at once.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);
// Spins between two reads of the clock.
constexpr int kSpinsPerClockRead = 64;

constexpr int kChunkBits = 16;  // the job word's low bits hold the chunk count
constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;

}  // namespace

struct ThreadPool::State {
  int size = 1;
  std::vector<std::thread> workers;

  // The current job. Written by the caller before it publishes job_word; read only by the
  // workers that job_word gives a chunk, and never changed before they have finished.
  Task task = nullptr;
  void* context = nullptr;
  int64_t n = 0;
  int64_t chunk_length = 0;

  alignas(64) std::atomic<uint64_t> job_word{0};
  alignas(64) std::atomic<int64_t> pending{0};  // workers' chunks of the current job not yet done
  std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> busy{false};  // a parallel_for is running (they do not nest)

  std::mutex mutex;
  std::condition_variable wake;

  // The first exception a chunk threw; rethrown by the caller once every chunk has finished.
  std::atomic<bool> failed{false};
  std::exception_ptr error;

  void record_error() {
    if (!failed.exchange(true)) error = std::current_exception();
  }

  void run_chunk(int64_t index) {
    const int64_t begin = index * chunk_length;
    const int64_t end = begin + chunk_length < n ? begin + chunk_length : n;
    try {
      task(context, begin, end);
    } catch (...) {
      record_error();
    }
  }

  // Returns the first job word different from `seen`, spinning first and then sleeping.
  uint64_t wait_for_job(uint64_t seen) {
    auto deadline = std::chrono::steady_clock::now() + kSpinBeforeSleep;
    for (int spins = 1;; ++spins) {
      const uint64_t word = job_word.load(std::memory_order_acquire);
      if (word != seen || stop.load(std::memory_order_relaxed)) return word;
      cpu_relax();
      if (spins % kSpinsPerClockRead == 0 && std::chrono::steady_clock::now() > deadline) break;
    }
    std::unique_lock<std::mutex> lock(mutex);
    // seq_cst on both sides (here and in publish) means either the caller sees this sleeper and
    // notifies, or this predicate sees the caller's new job word.
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    wake.wait(lock, [&] {
      return job_word.load(std::memory_order_seq_cst) != seen ||
             stop.load(std::memory_order_relaxed);
    });
    sleepers.fetch_sub(1, std::memory_order_relaxed);
    return job_word.load(std::memory_order_acquire);
  }

  void worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const uint64_t word = wait_for_job(seen);
      if (stop.load(std::memory_order_relaxed)) return;
      seen = word;
      if (static_cast<uint64_t>(index) < (word & kChunkMask)) {
        run_chunk(index);
        pending.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  void publish(uint64_t chunks) {
    pending.store(static_cast<int64_t>(chunks) - 1, std::memory_order_relaxed);
    const uint64_t generation = (job_word.load(std::memory_order_relaxed) >> kChunkBits) + 1;
    job_word.store((generation << kChunkBits) | chunks, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mutex);
      wake.notify_all();
    }
  }

  void wait_for_workers() {
    for (int spins = 1; pending.load(std::memory_order_acquire) != 0; ++spins) {
      cpu_relax();
      // A worker may share this core (more threads than cores): let it run.
      if (spins % kSpinsPerClockRead == 0) std::this_thread::yield();
    }
  }
};

ThreadPool::ThreadPool(int threads) : state_(new State) {
  state_->size = core::resolve_thread_count(threads);
  ED_CHECK(static_cast<uint64_t>(state_->size) <= kChunkMask, "thread count ", state_->size,
           " does not fit the job word");
  state_->workers.reserve(static_cast<size_t>(state_->size - 1));
  for (int i = 1; i < state_->size; ++i) {
    state_->workers.emplace_back([state = state_, i] { state->worker_loop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop.store(true);
  }
  state_->wake.notify_all();
  for (auto& worker : state_->workers) worker.join();
  delete state_;
}

int ThreadPool::size() const {
  return state_->size;
}

void ThreadPool::run(int64_t n, int64_t grain, Task task, void* context) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  // Split the n / grain units of work as evenly as whole units allow; no chunk is empty.
  const int64_t units = (n + grain - 1) / grain;
  const int64_t wanted = units < state_->size ? units : state_->size;
  const int64_t chunk_length = (units + wanted - 1) / wanted * grain;
  const int64_t chunks = (n + chunk_length - 1) / chunk_length;
  if (chunks <= 1) {
    task(context, 0, n);
    return;
  }

  State& s = *state_;
  ED_CHECK(!s.busy.exchange(true, std::memory_order_acquire),
           "ThreadPool::parallel_for called from inside a parallel_for or from two threads");
  s.task = task;
  s.context = context;
  s.n = n;
  s.chunk_length = chunk_length;
  s.publish(static_cast<uint64_t>(chunks));
  s.run_chunk(0);
  s.wait_for_workers();
  s.busy.store(false, std::memory_order_release);
  if (s.failed.load(std::memory_order_relaxed)) {
    std::exception_ptr error = s.error;
    s.error = nullptr;
    s.failed.store(false);
    std::rethrow_exception(error);
  }
}

}  // namespace edgedistill::runtime
