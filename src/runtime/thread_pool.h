// A small fixed pool of worker threads for splitting a kernel's rows across cores.
//
// parallel_for runs fn(begin, end) on contiguous chunks of [0, n), the calling thread taking one
// chunk itself, and returns when every chunk is done. Workers spin briefly before sleeping, so the
// many short calls of single-token decode do not pay a wake-up each; nothing is allocated per call.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace edgedistill::runtime {

class ThreadPool {
 public:
  // `threads` counts the caller: 1 runs everything inline, 0 means all available cores.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;

  // Splits [0, n) into at most size() chunks whose boundaries are multiples of `grain` (except
  // the end) and runs fn(begin, end) for each.
  template <class Fn>
  void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
    auto call = [](void* context, int64_t begin, int64_t end) {
      (*static_cast<std::remove_reference_t<Fn>*>(context))(begin, end);
    };
    run(n, grain, call, &fn);
  }

 private:
  using Task = void (*)(void* context, int64_t begin, int64_t end);
  void run(int64_t n, int64_t grain, Task task, void* context);

  struct State;
  State* state_;
};

}  // namespace edgedistill::runtime
