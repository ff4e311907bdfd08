#include "core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <mutex>
#include <sstream>

#include "core/log.h"

namespace edgedistill::core {
namespace {

std::mutex g_output_mutex;
bool g_progress_showing = false;  // a \r line is on screen and must be cleared before a log line
LogLevel g_level = LogLevel::info;
std::string g_prefix;  // set_log_prefix

}  // namespace

void set_log_level(LogLevel level) {
  g_level = level;
}
LogLevel log_level() {
  return g_level;
}

void set_log_prefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(g_output_mutex);
  g_prefix = prefix;
}

void log_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_output_mutex);
  if (g_progress_showing) {
    std::fputs("\r\033[K", stderr);
    g_progress_showing = false;
  }
  std::fputs(g_prefix.c_str(), stderr);
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  std::ostringstream out;
  if (seconds < 60) {
    out << std::fixed << std::setprecision(seconds < 10 ? 1 : 0) << seconds << "s";
    return out.str();
  }
  const auto total = static_cast<int64_t>(std::llround(seconds));
  const int64_t hours = total / 3600, minutes = (total / 60) % 60, secs = total % 60;
  if (hours > 0) {
    out << hours << "h" << std::setw(2) << std::setfill('0') << minutes << "m";
  } else {
    out << minutes << "m" << std::setw(2) << std::setfill('0') << secs << "s";
  }
  return out.str();
}

std::string format_count(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return value < 0 ? "-" + out : out;
}

std::string format_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(unit == 0 ? 0 : 1) << value << " " << kUnits[unit];
  return out.str();
}

Progress::Progress(std::string label, int64_t total, std::string unit, double plain_interval_s)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      plain_interval_s_(plain_interval_s),
      terminal_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && terminal_) {
    std::lock_guard<std::mutex> lock(g_output_mutex);
    if (g_progress_showing) {
      std::fputc('\n', stderr);
      g_progress_showing = false;
    }
  }
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::restart_from(int64_t done) {
  start_done_ = done;
  start_ = std::chrono::steady_clock::now();
}

std::string Progress::render(int64_t done, const std::string& detail) const {
  std::ostringstream line;
  line << label_ << " " << format_count(done);
  if (total_ > 0) {
    line << "/" << format_count(total_) << " " << unit_ << " (" << std::fixed
         << std::setprecision(0) << 100.0 * static_cast<double>(done) / static_cast<double>(total_)
         << "%)";
  } else {
    line << " " << unit_;
  }
  const double elapsed = elapsed_s();
  const auto counted = static_cast<double>(done - start_done_);
  if (elapsed > 0 && counted > 0) {
    const double rate = counted / elapsed;
    line << "  " << std::setprecision(rate < 10 ? 2 : 0) << rate << " " << unit_ << "/s";
    if (total_ > 0 && done < total_) {
      line << "  ETA " << format_duration(static_cast<double>(total_ - done) / rate);
    }
  }
  if (!detail.empty()) line << "  " << detail;
  return line.str();
}

void Progress::update(int64_t done, const std::string& detail) {
  if (log_level() == LogLevel::quiet) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (terminal_) {
    if (since_draw < 0.1) return;
    last_draw_ = now;
    const std::string line = render(done, detail);
    std::lock_guard<std::mutex> lock(g_output_mutex);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    g_progress_showing = true;
  } else if (since_draw >= plain_interval_s_) {
    last_draw_ = now;
    log_line(render(done, detail));
  }
}

void Progress::finish(int64_t done, const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  if (log_level() == LogLevel::quiet) return;
  const std::string line = render(done, detail) + "  in " + format_duration(elapsed_s());
  log_line(line);
}

}  // namespace edgedistill::core
