#include "train/trainer.h"

#include <csignal>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <optional>
#include <sstream>

#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "train/optimizer.h"
#include "train/run_dir.h"

namespace edgedistill::train {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_interrupt_requested{false};

extern "C" void request_interrupt(int) {
  g_interrupt_requested = true;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

// Installs the SIGINT handler for the loop's lifetime.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupt_requested = false;
    previous_ = std::signal(SIGINT, request_interrupt);
  }
  ~InterruptGuard() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int);
};

std::string format_number(double value, int precision = 4) {
  std::ostringstream out;
  out << std::setprecision(precision) << value;
  return out.str();
}

std::string describe(const std::vector<Metric>& metrics) {
  std::string text;
  for (const auto& [name, value] : metrics) {
    if (name.size() > 7 && name.compare(name.size() - 7, 7, "_tokens") == 0) continue;
    text += (text.empty() ? "" : "  ") + name + " " + format_number(value);
  }
  return text;
}

constexpr const char* kAuxiliaryFileName = "auxiliary.safetensors";

// The model's parameters, then the auxiliary modules' under "aux.".
std::vector<std::pair<std::string, torch::Tensor>> trained_parameters(TrainingTask& task) {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : task.model().named_parameters()) {
    named.emplace_back(item.key(), item.value());
  }
  if (auto* auxiliary = task.auxiliary()) {
    for (const auto& item : auxiliary->named_parameters()) {
      named.emplace_back("aux." + item.key(), item.value());
    }
  }
  return named;
}

std::vector<torch::Tensor> trained_parameter_tensors(TrainingTask& task) {
  std::vector<torch::Tensor> tensors;
  for (auto& [name, tensor] : trained_parameters(task)) tensors.push_back(tensor);
  return tensors;
}

// The auxiliary modules' parameters and buffers (e.g. a contrastive memory bank), by name.
std::vector<std::pair<std::string, torch::Tensor>> auxiliary_state(torch::nn::Module& auxiliary) {
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& item : auxiliary.named_parameters())
    state.emplace_back(item.key(), item.value());
  for (const auto& item : auxiliary.named_buffers()) state.emplace_back(item.key(), item.value());
  return state;
}

void save_auxiliary(const fs::path& file, torch::nn::Module& auxiliary) {
  io::SafetensorsWriter writer;
  for (const auto& [name, tensor] : auxiliary_state(auxiliary))
    model::add_tensor(writer, name, tensor);
  writer.write(file);
}

void load_auxiliary(const fs::path& file, torch::nn::Module& auxiliary) {
  const io::SafetensorsFile saved(file);
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : auxiliary_state(auxiliary)) {
    const auto view = saved.find(name);
    if (view == nullptr || view->shape != tensor.sizes().vec()) {
      throw FileError(str("'", file.string(), "' lacks the tensor '", name,
                          "' of this run's shape; the checkpoint belongs to another config"));
    }
    tensor.copy_(model::tensor_from_view(*view));
  }
}

// Data parallel: every rank starts from rank 0's step and weights (and the auxiliary modules'
// buffers, e.g. a contrastive memory bank), then reads its slice of each global batch. Ranks
// above 0 reseed their generator (dropout) apart from rank 0's.
void join_data_parallel(ProcessGroup& group, TrainingTask& task, int64_t step, uint64_t seed) {
  const auto main_step = group.from_main({static_cast<double>(step)}, "the start step")[0];
  if (main_step != static_cast<double>(step)) {
    throw InputError(str("rank ", group.rank(), " would start at step ", step,
                         " but rank 0 at step ", main_step,
                         "; every rank must see the same run directory (put it on a ",
                         "filesystem all hosts share)"));
  }
  std::vector<torch::Tensor> state = trained_parameter_tensors(task);
  if (!state.empty() && !state.front().device().is_cpu()) {
    throw InputError(
        "data-parallel training runs on the CPU (Gloo) only so far; NCCL for --device cuda is "
        "not built yet: use --device cpu, or one process");
  }
  if (auto* auxiliary = task.auxiliary()) {
    for (const auto& item : auxiliary->named_buffers()) state.push_back(item.value());
  }
  group.broadcast_from_main(state, "the initial weights");
  task.shard_data(group.rank(), group.world_size());
  if (group.rank() > 0) {
    torch::manual_seed(core::derive_seed(core::derive_seed(seed, static_cast<uint64_t>(step)),
                                         static_cast<uint64_t>(group.rank())));
  }
}

// A resumed run keeps the global batch its checkpoint was written with (micro-batches per step
// over all ranks), and so its curve, whatever the world size now: each of `world` ranks
// accumulates global / world micro-batches. A global batch `world` cannot split evenly is refused.
int grad_accum_for_world(int64_t global, int world) {
  if (global % world != 0) {
    throw InputError(str("the checkpoint's steps took ", global, " micro-batches over all ranks, ",
                         "which ", world, " ranks cannot split evenly; resume with a number of ",
                         "ranks that divides ", global));
  }
  return static_cast<int>(global / world);
}

// Early stopping's bookkeeping: the lowest valid loss so far, where it was, and how many
// evaluations since have not beaten it by train.early_stop_min_delta. Saved with checkpoints.
struct EarlyStop {
  double best_loss = std::numeric_limits<double>::infinity();
  int64_t best_step = 0;
  int64_t stale = 0;

  nlohmann::json to_json() const {
    return {{"best_loss", best_loss}, {"best_step", best_step}, {"stale", stale}};
  }
  static EarlyStop from_json(const nlohmann::json& saved) {
    EarlyStop state;
    if (saved.is_object()) {
      state.best_loss = saved.value("best_loss", state.best_loss);
      state.best_step = saved.value("best_step", int64_t{0});
      state.stale = saved.value("stale", int64_t{0});
    }
    return state;
  }
};

constexpr const char* kBestDirName = "best";

void save_checkpoint(const fs::path& run_dir, int64_t step, TrainingTask& task,
                     const AdamW& optimizer, double train_seconds, const EarlyStop& early_stop,
                     int64_t global_micro_batches) {
  const fs::path target = checkpoint_dir(run_dir, step);
  const fs::path staging = target.parent_path() / str(".step-", step, ".partial");
  std::error_code ignored;
  fs::remove_all(staging, ignored);
  model::save_model(staging, task.model(), task.checkpoint_meta(step), task.masks());
  if (auto* auxiliary = task.auxiliary()) save_auxiliary(staging / kAuxiliaryFileName, *auxiliary);
  io::SafetensorsWriter state;
  optimizer.save_state(state);
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    model::add_tensor(state, "rng.cpu", generator.get_state());
  }
  state.write(staging / "trainer_state.safetensors");
  nlohmann::ordered_json meta;
  meta["format"] = kTrainerStateFormat;
  meta["version"] = kTrainerStateVersion;
  meta["step"] = step;
  meta["data_cursor"] = task.data_cursor();
  meta["train_seconds"] = train_seconds;
  meta["global_micro_batches"] = global_micro_batches;  // per step, over all ranks
  if (early_stop.best_step > 0) meta["early_stop"] = early_stop.to_json();
  if (const auto task_state = task.state(); !task_state.is_null()) meta["task_state"] = task_state;
  core::write_json_atomic(staging / "trainer.json", meta);
  core::replace_directory(staging, target);
}

struct ResumePoint {
  int64_t step = 0;
  double train_seconds = 0;
  int64_t global_micro_batches = 0;  // per step over all ranks when it was written (0: unknown)
  EarlyStop early_stop;
};

ResumePoint load_checkpoint(const fs::path& dir, TrainingTask& task, AdamW& optimizer) {
  const auto meta = core::read_json_file(dir / "trainer.json", "trainer state");
  if (meta.value("format", "") != kTrainerStateFormat) {
    throw FileError(
        str("'", (dir / "trainer.json").string(), "' is not an edgedistill trainer state"));
  }
  if (meta.value("version", 0) > kTrainerStateVersion) {
    throw FileError(str("'", (dir / "trainer.json").string(), "' has version ",
                        meta.value("version", 0), "; this edgedistill reads version ",
                        kTrainerStateVersion, "; upgrade it"));
  }
  if (meta.contains("task_state")) {
    task.restore_state(meta.at("task_state"));
    optimizer.rebind(trained_parameters(task));  // the model may have lost blocks
  }
  model::load_weights(dir / model::kWeightsFileName, task.model());
  if (auto* auxiliary = task.auxiliary()) load_auxiliary(dir / kAuxiliaryFileName, *auxiliary);
  const io::SafetensorsFile state(dir / "trainer_state.safetensors");
  optimizer.load_state(state);
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(model::tensor_from_view(state.at("rng.cpu")));
  }
  task.restore_data_cursor(meta.at("data_cursor"));
  ResumePoint point;
  point.step = meta.at("step").get<int64_t>();
  point.train_seconds = meta.value("train_seconds", 0.0);
  point.global_micro_batches = meta.value("global_micro_batches", int64_t{0});
  if (meta.contains("early_stop")) point.early_stop = EarlyStop::from_json(meta.at("early_stop"));
  if (optimizer.steps_taken() != point.step) {
    throw FileError(str("checkpoint '", dir.string(), "' is inconsistent: step ", point.step,
                        " but the optimizer took ", optimizer.steps_taken(), " steps"));
  }
  return point;
}

// Weighted means of named terms. A term a micro-batch or step did not report (e.g. the mean score
// of asked items when none was asked) is averaged over those that did.
class TermMeans {
 public:
  void add(const std::string& name, double value, double weight) {
    auto it = std::find_if(sums_.begin(), sums_.end(),
                           [&](const auto& entry) { return entry.first == name; });
    if (it == sums_.end()) it = sums_.insert(sums_.end(), {name, {0.0, 0.0}});
    it->second.first += value * weight;
    it->second.second += weight;
  }
  std::vector<Metric> means() const {
    std::vector<Metric> out;
    for (const auto& [name, sum] : sums_) out.emplace_back(name, sum.first / sum.second);
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::pair<double, double>>> sums_;  // name, {sum, weight}
};

[[noreturn]] void diverged(const fs::path& run_dir, const std::string& what, double value,
                           int64_t step, const std::string& fix) {
  const auto last = newest_checkpoint(run_dir);
  throw RunError(str("training diverged: ", what, " is ", value, " at step ", step,
                     "; the last good checkpoint is ", last ? last->string() : std::string("none"),
                     "; ", fix));
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The steps since the last metrics.jsonl record: their mean loss and terms, and the training
// rate without the time spent evaluating or saving.
struct LogWindow {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int64_t items = 0, steps = 0;
  double loss = 0, side_seconds = 0;
  TermMeans terms;

  double training_seconds() const { return std::max(1e-9, seconds_since(start) - side_seconds); }
  double rate() const { return static_cast<double>(items) / training_seconds(); }
  void reset() { *this = LogWindow(); }
};

nlohmann::ordered_json metrics_record(int64_t step, const std::vector<Metric>& metrics) {
  nlohmann::ordered_json record;
  record["step"] = step;
  for (const auto& [name, value] : metrics) record[name] = value;
  return record;
}

}  // namespace

TrainResult run_training(const TrainConfig& recipe_config,
                         const nlohmann::ordered_json& merged_config, TrainingTask& task,
                         const TrainOptions& options) {
  const fs::path& run_dir = options.run_dir;
  ProcessGroup* const group = options.group;
  const bool main_rank = group == nullptr || group->is_main();
  const int world_size = group != nullptr ? group->world_size() : 1;
  TrainConfig config = recipe_config;  // grad_accum may change with the world size on resume
  core::create_directories(run_dir, "run directory");
  AdamW optimizer(trained_parameters(task), config.optimizer);
  task.model().train();
  if (auto* auxiliary = task.auxiliary()) auxiliary->train();

  // Setup: a fresh start, the newest checkpoint, or (resuming a finished run) its result.
  ResumePoint start;
  const auto checkpoint = newest_checkpoint(run_dir);
  const fs::path result_file = run_dir / "result.json";
  std::error_code ec;
  const bool finished_before = fs::exists(result_file, ec);
  if ((checkpoint || finished_before) && !options.resume) {
    throw InputError(str("run directory '", run_dir.string(), "' already holds ",
                         finished_before
                             ? "a finished run"
                             : "checkpoints (newest: " + checkpoint->filename().string() + ")",
                         "; pass --resume to continue it, or choose another --run-dir"));
  }
  if (finished_before) {
    require_same_config(run_dir, merged_config, options.config_defaults);
    const auto summary = core::read_json_file(result_file, "run result");
    const bool stopped_early = summary.value("stopped_early", false);
    if (summary.value("step", int64_t{0}) == config.steps || stopped_early) {
      TrainResult result;
      result.step = summary.value("step", config.steps);
      result.best_step = summary.value("best_step", int64_t{0});
      result.stopped_early = stopped_early;
      result.finished = true;
      result.final_dir = run_dir / "final";
      for (const auto& item : summary.items()) {
        if (item.value().is_number() && item.key() != "step" && item.key() != "best_step") {
          result.final_metrics.emplace_back(item.key(), item.value().get<double>());
        }
      }
      core::info("run '", run_dir.string(), "' already finished (", result.step, " steps",
                 stopped_early ? ", stopped early" : "", "); nothing to do");
      return result;
    }
  }
  if (checkpoint) {
    require_same_config(run_dir, merged_config, options.config_defaults);
    start = load_checkpoint(*checkpoint, task, optimizer);
    core::info("resuming from ", checkpoint->string(), " (step ", start.step, ")");
    if (start.global_micro_batches > 0) {
      config.grad_accum = grad_accum_for_world(start.global_micro_batches, world_size);
      if (config.grad_accum != recipe_config.grad_accum) {
        core::info("keeping the checkpoint's global batch: ", world_size,
                   world_size == 1 ? " rank accumulates " : " ranks accumulate ", config.grad_accum,
                   " micro-batches per step (train.grad_accum is ", recipe_config.grad_accum, ")");
      }
    }
  } else {
    if (options.resume) core::info("no checkpoint in ", run_dir.string(), "; starting at step 0");
    torch::manual_seed(options.seed);
    if (main_rank) core::write_json_atomic(run_dir / "config.json", merged_config);
  }
  if (group != nullptr) join_data_parallel(*group, task, start.step, options.seed);
  // Rank 0 alone writes metrics.jsonl.
  std::optional<MetricsLog> metrics_log;
  if (main_rank) metrics_log.emplace(run_dir / "metrics.jsonl", checkpoint ? start.step : -1);
  auto write_metrics = [&](const nlohmann::ordered_json& record) {
    if (metrics_log) metrics_log->write(record);
  };

  TrainResult result;
  result.step = start.step;
  const auto began = std::chrono::steady_clock::now();
  int64_t items_this_run = 0;
  double side_seconds = 0;  // evaluation and checkpoints: not part of the training rate
  InterruptGuard interrupt_guard;
  core::Progress progress("train", config.steps, "steps");
  progress.restart_from(start.step);
  LogWindow window;
  const bool early_stopping = config.early_stop_patience > 0;
  EarlyStop early_stop = start.early_stop;
  bool stopped_early = false;
  // Runs work that is not training (evaluation, checkpoints), keeping its time out of the rates.
  auto aside = [&](auto work) {
    const auto work_start = std::chrono::steady_clock::now();
    work();
    const double spent = seconds_since(work_start);
    side_seconds += spent;
    window.side_seconds += spent;
  };

  for (int64_t step = start.step; step < config.steps; ++step) {
    const int64_t done = step + 1;
    const double lr = learning_rate(config.optimizer, step, config.steps);
    optimizer.zero_grad();
    double step_loss = 0;
    TermMeans step_terms;
    task.begin_step(step);
    const double share = 1.0 / config.grad_accum;  // of each micro-batch in the step's gradient
    double bad_loss = 0;                           // a non-finite micro-batch loss, or 0
    int64_t step_items = 0;
    for (int micro = 0; micro < config.grad_accum; ++micro) {
      MicroBatchLoss micro_loss = task.next_micro_batch_loss();
      const double value = micro_loss.loss.item<double>();
      if (!std::isfinite(value)) {
        bad_loss = value;
        break;  // with other ranks, first agree that the step failed
      }
      (micro_loss.loss * share).backward();
      step_loss += value * share;
      step_items += micro_loss.items;
      for (const auto& [name, term] : micro_loss.terms) step_terms.add(name, term, 1.0);
    }
    bool interrupted = g_interrupt_requested.load();
    if (group != nullptr) {
      // One small all-reduce agrees on the step's loss and items, a failed loss anywhere, and an
      // interrupt any rank received; then the gradients are averaged.
      const auto agreed = group->sum({step_loss, static_cast<double>(step_items),
                                      bad_loss != 0 ? 1.0 : 0.0, interrupted ? 1.0 : 0.0},
                                     str("the step ", done, " agreement"));
      if (agreed[2] > 0 && bad_loss == 0) bad_loss = std::nan("");
      step_loss = agreed[0] / group->world_size();
      step_items = static_cast<int64_t>(agreed[1]);
      interrupted = agreed[3] > 0;
    }
    if (bad_loss != 0) {
      diverged(run_dir, "the loss", bad_loss, done,
               str("lower train.lr (now ", format_number(lr),
                   ") or raise train.warmup_steps, then resume or restart"));
    }
    if (group != nullptr) {
      group->average_gradients(trained_parameter_tensors(task));
      task.synchronize(*group);
    }
    items_this_run += step_items;
    window.items += step_items;
    // Pruned weights (a masked student) get no gradient, so clipping and the moments ignore them.
    model::apply_masks(task.model(), task.masks());
    const double grad_norm = optimizer.clip_gradients();
    if (!std::isfinite(grad_norm)) {
      diverged(run_dir, "the gradient norm", grad_norm, done, "lower train.lr or train.grad_clip");
    }
    optimizer.step(lr);
    model::apply_masks(task.model(), task.masks());  // decoupled weight decay cannot revive them
    result.step = done;
    const auto event = task.end_step(done);
    if (event.parameters_changed) optimizer.rebind(trained_parameters(task));
    if (!event.metrics.empty()) write_metrics(metrics_record(done, event.metrics));
    if (!event.message.empty()) core::info("step ", done, ": ", event.message);
    window.loss += step_loss;
    ++window.steps;
    for (const auto& [name, term] : step_terms.means()) window.terms.add(name, term, 1.0);

    progress.update(done, str("loss ", format_number(step_loss), "  lr ", format_number(lr, 3),
                              "  ", core::format_count(static_cast<int64_t>(window.rate())), " ",
                              task.item_unit(), "/s"));
    if (done % config.log_every == 0 || done == config.steps) {
      nlohmann::ordered_json record;
      record["step"] = done;
      record["loss"] = window.loss / static_cast<double>(window.steps);
      for (const auto& [name, value] : window.terms.means()) record[name] = value;
      record["lr"] = lr;
      record["grad_norm"] = grad_norm;
      record[task.item_unit() + "_per_s"] = window.rate();
      record["step_s"] = window.training_seconds() / static_cast<double>(window.steps);
      record["elapsed_s"] = start.train_seconds + seconds_since(began);
      write_metrics(record);
      window.reset();
    }
    const bool last_step = done == config.steps;
    if (config.eval_every > 0 && done % config.eval_every == 0 && (!last_step || early_stopping)) {
      aside([&] {
        const auto evaluation = task.evaluate("valid");
        write_metrics(metrics_record(done, evaluation));
        core::info("step ", done, ": ", describe(evaluation));
        if (!early_stopping) return;
        const auto loss = std::find_if(evaluation.begin(), evaluation.end(),
                                       [](const Metric& m) { return m.first == "valid_loss"; });
        if (loss == evaluation.end()) throw RunError("early stopping needs a valid_loss metric");
        if (loss->second < early_stop.best_loss - config.early_stop_min_delta) {
          early_stop.best_loss = loss->second;
          early_stop.best_step = done;
          early_stop.stale = 0;
          if (main_rank) {
            const fs::path staging = run_dir / ".best.partial";
            std::error_code ignored;
            fs::remove_all(staging, ignored);
            model::save_model(staging, task.model(), task.checkpoint_meta(done), task.masks());
            core::replace_directory(staging, run_dir / kBestDirName);
          }
        } else if (++early_stop.stale >= config.early_stop_patience && !last_step) {
          stopped_early = true;
          core::info("step ", done, ": no lower valid loss in ", early_stop.stale,
                     " evaluations; stopping early and keeping step ", early_stop.best_step);
        }
        // Rank 0's evaluation decides for every rank.
        if (group != nullptr) {
          stopped_early = group->from_main({stopped_early ? 1.0 : 0.0}, "early stopping")[0] > 0;
        }
      });
    }
    if (stopped_early) break;
    const bool stop_here = options.stop_at_step > 0 && done == options.stop_at_step;
    if (main_rank && !last_step &&
        ((config.checkpoint_every > 0 && done % config.checkpoint_every == 0) || stop_here ||
         interrupted)) {
      aside([&] {
        save_checkpoint(run_dir, done, task, optimizer, start.train_seconds + seconds_since(began),
                        early_stop, int64_t{config.grad_accum} * world_size);
        prune_checkpoints(run_dir, config.keep_checkpoints);
      });
    }
    if (!last_step && (stop_here || interrupted)) {
      result.interrupted = true;
      result.wall_s = seconds_since(began);
      progress.finish(done, "stopped");
      core::info(interrupted ? "interrupted" : "stopped", " at step ", done,
                 "; checkpoint saved in ", checkpoint_dir(run_dir, done).string(),
                 "; continue with --resume");
      return result;
    }
  }

  result.wall_s = seconds_since(began);
  result.items_per_s =
      static_cast<double>(items_this_run) / std::max(1e-9, result.wall_s - side_seconds);
  progress.finish(result.step, stopped_early ? "stopped early" : "");
  if (group != nullptr) result.communication_s = group->communication_seconds();
  result.final_dir = run_dir / "final";
  if (!main_rank) {  // rank 0 saves and scores the final model
    result.finished = true;
    return result;
  }
  // Early stopping keeps the best evaluated weights, whether it stopped or ran every step.
  const int64_t model_step =
      early_stopping && early_stop.best_step > 0 ? early_stop.best_step : result.step;
  if (model_step != result.step) {
    model::load_weights(run_dir / kBestDirName / model::kWeightsFileName, task.model());
    core::info("final/ holds the weights of step ", model_step, " (lowest valid loss, ",
               format_number(early_stop.best_loss), ")");
  }

  // The final model: final/ (model.json + weights.safetensors), its valid and test metrics, and
  // result.json. A run resumed after it finished only re-reads these.
  model::save_model(result.final_dir, task.model(), task.checkpoint_meta(model_step), task.masks());
  result.final_metrics = task.evaluate("valid");
  auto final_record = metrics_record(result.step, result.final_metrics);
  if (early_stopping) final_record["model_step"] = model_step;
  write_metrics(final_record);
  core::info("step ", result.step, ": ", describe(result.final_metrics));
  for (const auto& metric : task.evaluate("test")) result.final_metrics.push_back(metric);
  nlohmann::ordered_json summary;
  summary["step"] = result.step;
  if (early_stopping) {
    result.best_step = model_step;
    result.stopped_early = stopped_early;
    summary["best_step"] = model_step;
    summary["stopped_early"] = stopped_early;
  }
  for (const auto& [name, value] : result.final_metrics) summary[name] = value;
  summary["train_seconds"] = start.train_seconds + result.wall_s;
  summary[task.item_unit() + "_per_s"] = result.items_per_s;
  summary["step_s"] = (result.wall_s - side_seconds) /
                      static_cast<double>(std::max<int64_t>(1, result.step - start.step));
  if (group != nullptr) {
    summary["world_size"] = world_size;
    summary["communication_s"] = result.communication_s;  // rank 0's time in collectives
  }
  for (const auto& [name, value] : task.summary()) summary[name] = value;
  summary["final_dir"] = result.final_dir.string();
  core::write_json_atomic(run_dir / "result.json", summary);
  std::error_code ignored;
  fs::remove_all(run_dir / kBestDirName, ignored);  // final/ holds it now
  result.finished = true;
  return result;
}

}  // namespace edgedistill::train
