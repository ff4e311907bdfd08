// The run directory every training stage writes (DESIGN.md):
//   config.json     the merged config actually used
//   metrics.jsonl   one JSON object per logged step or evaluation
//   checkpoints/    step-N/ (model.json, weights.safetensors, trainer_state.safetensors,
//   trainer.json) final/          model.json + weights.safetensors of the finished run result.json
//   the finished run's summary
#pragma once

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace edgedistill::train {

namespace fs = std::filesystem;

inline constexpr const char* kTrainerStateFormat = "edgedistill-trainer-state";
inline constexpr int kTrainerStateVersion = 1;

fs::path checkpoint_dir(const fs::path& run_dir, int64_t step);
// The newest complete checkpoint (one whose trainer.json exists), if any.
std::optional<fs::path> newest_checkpoint(const fs::path& run_dir);
// Deletes all but the newest `keep` complete checkpoints.
void prune_checkpoints(const fs::path& run_dir, int keep);

// Compares a run's saved config.json with the config of the command now running, ignoring keys
// that do not change results (threads, device) and keys the saved config lacks whose current
// value is their built-in default in `defaults` (the config type's defaults as JSON; may be null)
// or unset (empty, zero, false): keys added by a newer version, so runs started before them still
// resume. Throws InputError naming the first differing key.
void require_same_config(const fs::path& run_dir, const nlohmann::ordered_json& current,
                         const nlohmann::ordered_json& defaults = nullptr);

// metrics.jsonl: appends one JSON object per line, flushed as written.
class MetricsLog {
 public:
  // Keeps the records with "step" <= keep_through_step (resume: drop records of steps that are
  // replayed); a negative value starts a fresh file.
  MetricsLog(const fs::path& path, int64_t keep_through_step);
  void write(const nlohmann::ordered_json& record);

 private:
  fs::path path_;
  std::ofstream out_;
};

}  // namespace edgedistill::train
