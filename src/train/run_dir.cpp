#include "train/run_dir.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/files.h"

namespace edgedistill::train {
namespace {

// Complete checkpoints as (step, dir), oldest first.
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  const fs::path root = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return found;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || !entry.is_directory()) continue;
    const std::string digits = name.substr(5);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    if (!fs::exists(entry.path() / "trainer.json")) continue;
    found.emplace_back(std::stoll(digits), entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Drops the keys that may differ between a run and its resumption.
nlohmann::json comparable(const nlohmann::json& config) {
  nlohmann::json copy = config;
  if (copy.is_object()) {
    copy.erase("threads");
    copy.erase("device");
  }
  return copy;
}

// A value that changes nothing: empty, zero, false, or a section of such.
bool unset(const nlohmann::json& value) {
  if (value.is_object()) {
    return std::all_of(value.begin(), value.end(), [](const auto& v) { return unset(v); });
  }
  return value.is_null() || value.empty() || value == "" || value == 0 || value == false;
}

// The first key path where `now` differs from `saved`. A key `saved` lacks is no difference when
// `now` holds it at its built-in default (`defaults`, null when unknown) or unset: keys a newer
// version added, so a run started before them still resumes.
std::string first_difference(const nlohmann::json& saved, const nlohmann::json& now,
                             const nlohmann::json& defaults, const std::string& at) {
  if (saved.is_object() && now.is_object()) {
    const auto default_of = [&](const std::string& key) {
      return defaults.is_object() && defaults.contains(key) ? defaults[key] : nlohmann::json();
    };
    for (const auto& item : saved.items()) {
      const std::string path = at.empty() ? item.key() : at + "." + item.key();
      if (!now.contains(item.key())) return path;
      const std::string inner =
          first_difference(item.value(), now[item.key()], default_of(item.key()), path);
      if (!inner.empty()) return inner;
    }
    for (const auto& item : now.items()) {
      if (saved.contains(item.key()) || unset(item.value()) ||
          default_of(item.key()) == item.value()) {
        continue;
      }
      return at.empty() ? item.key() : at + "." + item.key();
    }
    return "";
  }
  return saved == now ? "" : (at.empty() ? "(root)" : at);
}

}  // namespace

fs::path checkpoint_dir(const fs::path& run_dir, int64_t step) {
  return run_dir / "checkpoints" / str("step-", step);
}

std::optional<fs::path> newest_checkpoint(const fs::path& run_dir) {
  const auto found = complete_checkpoints(run_dir);
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

void prune_checkpoints(const fs::path& run_dir, int keep) {
  const auto found = complete_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < found.size(); ++i) {
    std::error_code ignored;
    fs::remove_all(found[i].second, ignored);
  }
}

void require_same_config(const fs::path& run_dir, const nlohmann::ordered_json& current,
                         const nlohmann::ordered_json& defaults) {
  const fs::path file = run_dir / "config.json";
  const nlohmann::json saved = comparable(core::read_json_file(file, "run config"));
  const nlohmann::json now = comparable(nlohmann::json::parse(current.dump()));
  const std::string differing =
      first_difference(saved, now, nlohmann::json::parse(defaults.dump()), "");
  if (!differing.empty()) {
    throw InputError(str("cannot resume '", run_dir.string(), "': config key '", differing,
                         "' differs from the run's config.json; resume with the same config and "
                         "--set values, or start a new --run-dir"));
  }
}

MetricsLog::MetricsLog(const fs::path& path, int64_t keep_through_step) : path_(path) {
  std::string kept;
  std::error_code ec;
  if (keep_through_step >= 0 && fs::exists(path, ec)) {
    std::istringstream lines(core::read_file(path, "metrics log"));
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_discarded()) continue;  // a torn last line of a killed run
      if (record.value("step", int64_t{0}) <= keep_through_step) kept += line + "\n";
    }
  }
  core::write_file_atomic(path, kept);
  out_.open(path, std::ios::app);
  if (!out_) throw FileError(str("cannot open metrics log '", path.string(), "' for writing"));
}

void MetricsLog::write(const nlohmann::ordered_json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) {
    throw FileError(str("cannot write to '", path_.string(),
                        "' (is the disk full?); free space and resume with --resume"));
  }
}

}  // namespace edgedistill::train
