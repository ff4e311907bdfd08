// A progress display for long work. On a terminal: one line redrawn in place (done/total, rate,
// ETA and any caller text such as the current loss). Elsewhere (CI logs, pipes): a plain line at
// most every `plain_interval_s` seconds, so logs show progress without flooding.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace edgedistill::core {

class Progress {
 public:
  // `unit` names what is counted ("steps", "documents"); `total` may be 0 when unknown.
  Progress(std::string label, int64_t total, std::string unit, double plain_interval_s = 30.0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Reports `done` units finished; `detail` is appended ("loss 3.21  2,100 tok/s").
  void update(int64_t done, const std::string& detail = "");
  // Prints the final state (`done` units) with the elapsed time.
  void finish(int64_t done, const std::string& detail = "");
  double elapsed_s() const;

  // Starts timing rate and ETA from `done` (e.g. after resuming at step 500).
  void restart_from(int64_t done);

 private:
  std::string render(int64_t done, const std::string& detail) const;

  std::string label_;
  int64_t total_;
  std::string unit_;
  double plain_interval_s_;
  bool terminal_;
  bool finished_ = false;
  int64_t start_done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);
// "1,234,567".
std::string format_count(int64_t value);
// "4.3 MB".
std::string format_bytes(uint64_t bytes);

// True when stderr is a terminal (progress lines are redrawn in place).
bool stderr_is_terminal();

}  // namespace edgedistill::core
