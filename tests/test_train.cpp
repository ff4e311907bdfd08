// The training layer: schedule, AdamW, data windows, the loop's checkpoints, resume and failures.
#include "torch_catch.h"

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "core/files.h"
#include "data/prepare.h"
#include "data/token_shard.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "train/image_classifier_task.h"
#include "train/optimizer.h"
#include "train/run_dir.h"
#include "train/setup.h"
#include "train/token_windows.h"
#include "train/trainer.h"

using namespace edgedistill;
using namespace edgedistill::train;
namespace fs = std::filesystem;

TEST_CASE("the schedule warms up linearly and decays by a cosine") {
  OptimizerConfig c;
  c.lr = 1e-3;
  c.min_lr_ratio = 0.1;
  c.warmup_steps = 10;
  const int64_t total = 110;
  CHECK(learning_rate(c, 0, total) == Approx(1e-4));
  CHECK(learning_rate(c, 9, total) == Approx(1e-3));
  CHECK(learning_rate(c, 10, total) == Approx(1e-3));
  // Halfway through the decay the cosine is at the middle of [min_lr, lr].
  CHECK(learning_rate(c, 60, total) == Approx(0.55e-3));
  CHECK(learning_rate(c, 110, total) == Approx(1e-4));
  c.warmup_steps = 0;
  CHECK(learning_rate(c, 0, total) == Approx(1e-3));
}

TEST_CASE("AdamW matches LibTorch's AdamW step for step") {
  torch::manual_seed(11);
  OptimizerConfig c;
  c.lr = 0.01;
  c.weight_decay = 0.1;
  c.beta1 = 0.8;
  c.beta2 = 0.9;
  c.eps = 1e-6;
  auto ours = torch::randn({5, 7}).requires_grad_(true);
  auto theirs = ours.detach().clone().requires_grad_(true);
  auto gain = torch::randn({7}).requires_grad_(true);  // 1-D: no weight decay for us
  auto gain_theirs = gain.detach().clone().requires_grad_(true);
  AdamW optimizer({{"w", ours}, {"g", gain}}, c);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{theirs},
      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(c.lr)
                                                       .betas({c.beta1, c.beta2})
                                                       .eps(c.eps)
                                                       .weight_decay(c.weight_decay)));
  groups.emplace_back(
      std::vector<torch::Tensor>{gain_theirs},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(0.0)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(c.lr));
  const auto x = torch::randn({3, 5});
  for (int step = 0; step < 6; ++step) {
    optimizer.zero_grad();
    reference.zero_grad();
    (torch::tanh(x.matmul(ours) * gain).pow(2).sum()).backward();
    (torch::tanh(x.matmul(theirs) * gain_theirs).pow(2).sum()).backward();
    optimizer.step(c.lr);
    reference.step();
  }
  // Same formula in a slightly different operation order: float32 rounding only.
  CHECK((ours - theirs).abs().max().item<double>() < 1e-6);
  CHECK((gain - gain_theirs).abs().max().item<double>() < 1e-6);
  CHECK(optimizer.steps_taken() == 6);
}

TEST_CASE("gradient clipping rescales to the limit and reports the norm") {
  auto p = torch::zeros({2}).requires_grad_(true);
  OptimizerConfig c;
  c.grad_clip = 1.0;
  AdamW optimizer({{"p", p}}, c);
  (p * torch::tensor({3.0f, 4.0f})).sum().backward();
  CHECK(optimizer.clip_gradients() == Approx(5.0));
  CHECK(p.grad().norm().item<double>() == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("AdamW state survives a save and load exactly") {
  test::TempDir dir;
  torch::manual_seed(12);
  OptimizerConfig c;
  auto a = torch::randn({4, 4}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamW first({{"w", a}}, c);
  for (int i = 0; i < 3; ++i) {
    first.zero_grad();
    a.pow(3).sum().backward();
    first.step(1e-2);
  }
  io::SafetensorsWriter writer;
  first.save_state(writer);
  writer.write(dir.path() / "state.safetensors");
  {
    torch::NoGradGuard no_grad;
    b.copy_(a);
  }
  AdamW second({{"w", b}}, c);
  second.load_state(io::SafetensorsFile(dir.path() / "state.safetensors"));
  CHECK(second.steps_taken() == 3);
  for (auto [optimizer, p] : {std::pair{&first, a}, std::pair{&second, b}}) {
    optimizer->zero_grad();
    p.pow(3).sum().backward();
    optimizer->step(1e-2);
  }
  CHECK(torch::equal(a, b));
}

namespace {

// A shard of 0, 1, 2, ..., so every window's first token is its position.
fs::path counting_shard(const fs::path& dir, int64_t count) {
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) tokens[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const fs::path path = dir / "train.bin";
  data::write_token_shard(path, tokens, static_cast<int32_t>(count), std::string(64, '0'),
                          nlohmann::json::object());
  return path;
}

}  // namespace

TEST_CASE("token windows are contiguous slices, permuted per epoch, and resumable") {
  test::TempDir dir;
  const data::TokenShard shard(counting_shard(dir.path(), 1000));
  TokenWindows windows(shard, 16, 99);
  const auto first = windows.next(4);
  REQUIRE(first.sizes() == torch::IntArrayRef({4, 17}));
  for (int64_t row = 0; row < 4; ++row) {
    for (int64_t j = 1; j < 17; ++j) {
      CHECK(first[row][j].item<int64_t>() - first[row][j - 1].item<int64_t>() == 1);
    }
  }
  // Resuming from a saved cursor replays exactly what the original sequence draws next.
  const auto cursor = windows.cursor();
  const auto expected = windows.next(100);  // crosses into the next epoch (~62 windows each)
  TokenWindows resumed(shard, 16, 99);
  resumed.restore(cursor);
  CHECK(torch::equal(resumed.next(100), expected));
  CHECK(windows.epoch() == 1);
  // Another seed gives another order.
  TokenWindows other(shard, 16, 100);
  CHECK_FALSE(torch::equal(other.next(4), first));
  // Every window of an epoch is visited once: the starts are offset + 16 k for k = 0..n-1, where
  // n = (1000 - offset - 1) / 16 windows fit.
  TokenWindows fresh(shard, 16, 5);
  const int64_t per_epoch = fresh.windows_per_epoch();
  const auto all = fresh.next(per_epoch);
  std::set<int64_t> starts;
  for (int64_t row = 0; row < per_epoch; ++row) starts.insert(all[row][0].item<int64_t>());
  REQUIRE(static_cast<int64_t>(starts.size()) == per_epoch);
  const int64_t offset = *starts.begin();
  CHECK(offset < 16);
  CHECK(per_epoch == (1000 - offset - 1) / 16);
  for (int64_t start : starts) CHECK((start - offset) % 16 == 0);
}

namespace {

// A task on a one-parameter model whose loss becomes NaN at a chosen step, and whose valid loss
// follows a script (step -> loss; 1.0 at steps it does not name).
class ScriptedTask : public TrainingTask {
 public:
  explicit ScriptedTask(int64_t nan_at_step, std::map<int64_t, double> valid_script = {})
      : nan_at_step_(nan_at_step), valid_script_(std::move(valid_script)) {
    net_ = std::make_shared<torch::nn::LinearImpl>(2, 1);
  }
  // The weight matrix as it was when the valid split was evaluated after step `step`.
  torch::Tensor weights_at(int64_t step) const { return evaluated_weights_.at(step); }
  torch::Tensor weights() const { return net_->weight.detach().clone(); }
  torch::nn::Module& model() override { return *net_; }
  MicroBatchLoss next_micro_batch_loss() override {
    ++calls_;
    MicroBatchLoss out;
    out.loss = net_->forward(torch::ones({1, 2})).pow(2).sum();
    if (calls_ == nan_at_step_) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
    out.items = 1;
    out.terms = {{"part", 0.5}};
    return out;
  }
  std::vector<Metric> evaluate(const std::string& split) override {
    evaluated_weights_.emplace(calls_, weights());  // the first evaluation after the step
    const auto scripted = valid_script_.find(calls_);
    return {{split + "_loss", scripted == valid_script_.end() ? 1.0 : scripted->second}};
  }
  std::string headline_metric() const override { return "valid_loss"; }
  std::string item_unit() const override { return "ex"; }
  nlohmann::json data_cursor() const override { return {{"calls", calls_}}; }
  void restore_data_cursor(const nlohmann::json& cursor) override { calls_ = cursor.at("calls"); }
  model::CheckpointMeta checkpoint_meta(int64_t step) const override {
    model::CheckpointMeta meta;
    meta.config.arch = "mlp";
    meta.config.mlp.input_dim = 2;
    meta.config.mlp.hidden = {};
    meta.config.mlp.n_classes = 2;
    meta.step = step;
    return meta;
  }

 private:
  std::shared_ptr<torch::nn::LinearImpl> net_;
  int64_t nan_at_step_;
  std::map<int64_t, double> valid_script_;
  std::map<int64_t, torch::Tensor> evaluated_weights_;
  int64_t calls_ = 0;
};

TrainConfig scripted_config(int64_t steps) {
  TrainConfig c;
  c.steps = steps;
  c.log_every = 1;
  c.eval_every = 2;
  c.checkpoint_every = 2;
  c.keep_checkpoints = 10;
  c.optimizer.warmup_steps = 0;
  return c;
}

}  // namespace

TEST_CASE("a non-finite loss stops the run naming the step and keeps the last checkpoint") {
  test::TempDir dir;
  ScriptedTask task(/*nan_at_step=*/5);
  TrainOptions options;
  options.run_dir = dir.path();
  CHECK_THROWS_WITH(
      run_training(scripted_config(10), {{"name", "nan"}}, task, options),
      Catch::Contains("step 5") && Catch::Contains("step-4") && Catch::Contains("lower train.lr"));
  CHECK(newest_checkpoint(dir.path()) == checkpoint_dir(dir.path(), 4));
  CHECK_FALSE(fs::exists(dir.path() / "final"));
}

TEST_CASE("the loop logs terms and evaluations, and refuses to overwrite a run") {
  test::TempDir dir;
  ScriptedTask task(/*nan_at_step=*/-1);
  TrainOptions options;
  options.run_dir = dir.path();
  const auto result = run_training(scripted_config(4), {{"name", "ok"}}, task, options);
  CHECK(result.finished);
  CHECK(fs::exists(dir.path() / "final" / "weights.safetensors"));
  CHECK(fs::exists(dir.path() / "result.json"));
  std::ifstream metrics(dir.path() / "metrics.jsonl");
  std::string line;
  int train_records = 0, eval_records = 0;
  while (std::getline(metrics, line)) {
    const auto record = nlohmann::json::parse(line);
    if (record.contains("loss")) {
      ++train_records;
      CHECK(record.at("part").get<double>() == Approx(0.5));
      CHECK(record.contains("lr"));
      CHECK(record.contains("grad_norm"));
    } else {
      ++eval_records;
      CHECK(record.contains("valid_loss"));
    }
  }
  CHECK(train_records == 4);
  CHECK(eval_records == 2);  // step 2 and the final evaluation
  ScriptedTask again(-1);
  CHECK_THROWS_WITH(run_training(scripted_config(4), {{"name", "ok"}}, again, options),
                    Catch::Contains("--resume"));
  options.resume = true;
  CHECK(run_training(scripted_config(4), {{"name", "ok"}}, again, options).finished);
  CHECK_THROWS_WITH(run_training(scripted_config(4), {{"name", "changed"}}, again, options),
                    Catch::Contains("'name' differs"));
}

TEST_CASE("early stopping keeps the best evaluated weights and survives a resume") {
  // Evaluations every 2 steps; the valid loss is lowest at step 4, and with patience 2 the run
  // stops after the evaluations at steps 6 and 8 fail to beat it by min_delta (3.0 - 0.1 > 2.95).
  const std::map<int64_t, double> script = {{2, 5.0}, {4, 3.0}, {6, 2.95}, {8, 4.0}, {10, 1.0}};
  auto config = scripted_config(20);
  config.checkpoint_every = 3;
  config.early_stop_patience = 2;
  config.early_stop_min_delta = 0.1;
  const auto final_weights = [](const fs::path& run_dir) {
    auto net = torch::nn::Linear(2, 1);
    model::load_weights(run_dir / "final" / "weights.safetensors", *net);
    return net->weight.detach().clone();
  };

  test::TempDir straight;
  torch::manual_seed(3);  // the same initial weights for every task below
  ScriptedTask task(-1, script);
  TrainOptions options;
  options.run_dir = straight.path();
  const auto result = run_training(config, {{"name", "es"}}, task, options);
  REQUIRE(result.finished);
  CHECK(result.step == 8);
  CHECK(torch::equal(final_weights(straight.path()), task.weights_at(4)));
  CHECK_FALSE(torch::equal(task.weights_at(4), task.weights_at(8)));  // it did move on
  const auto summary = core::read_json_file(straight.path() / "result.json", "result");
  CHECK(summary.at("step") == 8);
  CHECK(summary.at("best_step") == 4);
  CHECK(summary.at("stopped_early") == true);
  CHECK(core::read_json_file(straight.path() / "final" / "model.json", "model").at("step") == 4);
  CHECK_FALSE(fs::exists(straight.path() / "best"));
  // A finished, early-stopped run resumed is finished: nothing is trained again.
  options.resume = true;
  ScriptedTask again(-1, script);
  const auto repeat = run_training(config, {{"name", "es"}}, again, options);
  CHECK(repeat.finished);
  CHECK(repeat.step == 8);

  // Stopped at step 6 (after the best and one stale evaluation) and resumed: the same end.
  test::TempDir resumed;
  TrainOptions first;
  first.run_dir = resumed.path();
  first.stop_at_step = 6;
  torch::manual_seed(3);
  ScriptedTask before(-1, script);
  CHECK(run_training(config, {{"name", "es"}}, before, first).interrupted);
  TrainOptions second;
  second.run_dir = resumed.path();
  second.resume = true;
  ScriptedTask after(-1, script);
  const auto continued = run_training(config, {{"name", "es"}}, after, second);
  REQUIRE(continued.finished);
  CHECK(continued.step == 8);
  CHECK(torch::equal(final_weights(resumed.path()), final_weights(straight.path())));

  // Patience without evaluations is refused.
  config.eval_every = 0;
  CHECK_THROWS_WITH(config.validate("train"), Catch::Contains("train.eval_every"));
}

TEST_CASE("training a tiny language model lowers the loss well below chance") {
  test::TempDir dir;
  configure_threads(0, false);
  auto setup = prepare_training(test::tiny_recipe(dir.path()), dir.path() / "cache");
  TrainOptions options;
  options.run_dir = dir.path() / "run";
  options.seed = 1;
  const auto result =
      run_training(setup.recipe.train, core::to_json(setup.recipe), *setup.task, options);
  REQUIRE(result.finished);
  double valid_loss = 0;
  for (const auto& [name, value] : result.final_metrics) {
    if (name == "valid_loss") valid_loss = value;
  }
  // Chance over 259 byte tokens is ln(259) = 5.56 nats; this repetitive text is learnable to far
  // below that within 40 steps.
  CHECK(valid_loss < 0.5 * std::log(259.0));
  const auto loaded = model::load_model(dir.path() / "run" / "final");
  CHECK(loaded.meta.step == 40);
  CHECK(loaded.meta.tokenizer_hash == setup.text_data->tokenizer().hash());
  CHECK(fs::equivalent(loaded.meta.data_dir, setup.text_data->dir()));
}

TEST_CASE("a deterministic run stopped and resumed ends with byte-identical weights") {
  test::TempDir dir;
  configure_threads(0, /*deterministic=*/true);
  auto recipe = test::tiny_recipe(dir.path());
  recipe.train.steps = 12;
  recipe.train.checkpoint_every = 4;
  recipe.train.grad_accum = 2;
  const fs::path cache = dir.path() / "cache";
  auto run = [&](const fs::path& run_dir, int64_t stop_at, bool resume) {
    auto setup = prepare_training(recipe, cache);
    TrainOptions options;
    options.run_dir = run_dir;
    options.stop_at_step = stop_at;
    options.resume = resume;
    options.seed = static_cast<uint64_t>(recipe.seed);
    return run_training(setup.recipe.train, core::to_json(setup.recipe), *setup.task, options);
  };
  REQUIRE(run(dir.path() / "whole", 0, false).finished);
  const auto stopped = run(dir.path() / "split", 6, false);
  CHECK(stopped.interrupted);
  CHECK(stopped.step == 6);
  REQUIRE(run(dir.path() / "split", 0, true).finished);
  const auto whole =
      core::read_file(dir.path() / "whole" / "final" / "weights.safetensors", "weights");
  const auto split =
      core::read_file(dir.path() / "split" / "final" / "weights.safetensors", "weights");
  CHECK(whole == split);
  configure_threads(0, false);
}

namespace {

TrainRecipe fmnist_recipe(int64_t steps) {
  auto recipe = core::load_config<TrainRecipe>(
      test::source_dir() / "configs" / "recipes" / "teacher-fmnist.json",
      {str("train.steps=", steps), "train.eval_every=0", "train.checkpoint_every=0",
       "train.warmup_steps=5", "train.log_every=5", "train.eval_tokens=2000"});
  return recipe;
}

}  // namespace

TEST_CASE("an MLP trained on Fashion-MNIST classifies far above chance") {
  test::TempDir dir;
  configure_threads(0, false);
  auto setup = prepare_training(fmnist_recipe(60), dir.path() / "cache");
  TrainOptions options;
  options.run_dir = dir.path() / "run";
  const auto result =
      run_training(setup.recipe.train, core::to_json(setup.recipe), *setup.task, options);
  REQUIRE(result.finished);
  double accuracy = 0;
  for (const auto& [name, value] : result.final_metrics) {
    if (name == "test_accuracy") accuracy = value;
  }
  // Chance is 10 %; 60 steps of 100 images reach about 75 % here (measured: 74.6 % valid).
  CHECK(accuracy > 0.6);
}

TEST_CASE("jittered images are the originals shifted by at most the limit with zero fill") {
  torch::manual_seed(5);
  const int64_t rows = 5, cols = 6, limit = 2, count = 40;
  const auto pixels = torch::rand({count, rows * cols}) + 0.5;  // no zero pixel: shifts show
  CHECK(torch::equal(jitter_images(pixels, rows, cols, 0), pixels));
  const auto shifted = jitter_images(pixels, rows, cols, limit);
  REQUIRE(shifted.sizes() == pixels.sizes());
  // The slow obvious check: some (dy, dx) in [-limit, limit]^2 reproduces each output exactly.
  std::set<std::pair<int, int>> seen;
  for (int64_t i = 0; i < count; ++i) {
    const auto in = pixels[i].view({rows, cols});
    const auto out = shifted[i].view({rows, cols});
    bool found = false;
    for (int dy = -limit; dy <= limit && !found; ++dy) {
      for (int dx = -limit; dx <= limit && !found; ++dx) {
        bool same = true;
        for (int64_t r = 0; r < rows && same; ++r) {
          for (int64_t c = 0; c < cols && same; ++c) {
            const int64_t sr = r + dy, sc = c + dx;
            const float want =
                sr >= 0 && sr < rows && sc >= 0 && sc < cols ? in[sr][sc].item<float>() : 0.0f;
            same = out[r][c].item<float>() == want;
          }
        }
        if (same) {
          found = true;
          seen.insert({dy, dx});
        }
      }
    }
    CHECK(found);
  }
  CHECK(seen.size() > 5);  // the offsets vary from image to image
}

TEST_CASE("a classifier with dropout and jitter resumes to byte-identical weights") {
  // Dropout and jitter draw from LibTorch's generator: the checkpoint must restore its state.
  test::TempDir dir;
  configure_threads(0, /*deterministic=*/true);
  auto run = [&](const fs::path& run_dir, int64_t stop_at, bool resume) {
    auto recipe = fmnist_recipe(8);
    recipe.train.jitter = 2;
    auto setup = prepare_training(recipe, dir.path() / "cache");
    TrainOptions options;
    options.run_dir = run_dir;
    options.stop_at_step = stop_at;
    options.resume = resume;
    options.seed = static_cast<uint64_t>(setup.recipe.seed);
    return run_training(setup.recipe.train, core::to_json(setup.recipe), *setup.task, options);
  };
  REQUIRE(run(dir.path() / "whole", 0, false).finished);
  REQUIRE(run(dir.path() / "split", 3, false).interrupted);
  REQUIRE(run(dir.path() / "split", 0, true).finished);
  CHECK(core::read_file(dir.path() / "whole" / "final" / "weights.safetensors", "weights") ==
        core::read_file(dir.path() / "split" / "final" / "weights.safetensors", "weights"));
  configure_threads(0, false);
}

TEST_CASE("resuming compares configs, accepting keys a newer version added at their defaults") {
  test::TempDir dir;
  core::write_json_atomic(dir.path() / "config.json",
                          nlohmann::json::parse(R"({"a": 1, "b": {"c": "x"}, "threads": 2})"));
  const auto now = [](const char* text) { return nlohmann::ordered_json::parse(text); };
  // New keys at an unset value (empty string, zero, false, a section of such), other threads.
  CHECK_NOTHROW(train::require_same_config(
      dir.path(), now(R"({"a": 1, "b": {"c": "x", "from": ""}, "head_dim": 0,
                          "extra": {"on": false, "list": []}, "threads": 8})")));
  // A new key that is set, a changed value, a key the current config lacks: each named.
  CHECK_THROWS_WITH(
      train::require_same_config(dir.path(), now(R"({"a": 1, "b": {"c": "x", "from": "d"}})")),
      Catch::Contains("'b.from'"));
  // A new section at its built-in default, though not unset (a non-zero parameter).
  const auto defaults = now(R"({"a": 0, "b": {"c": "", "drop": {"on": false, "rate": 0.5}}})");
  CHECK_NOTHROW(train::require_same_config(
      dir.path(), now(R"({"a": 1, "b": {"c": "x", "drop": {"on": false, "rate": 0.5}}})"),
      defaults));
  CHECK_THROWS_WITH(
      train::require_same_config(
          dir.path(), now(R"({"a": 1, "b": {"c": "x", "drop": {"on": false, "rate": 0.6}}})"),
          defaults),
      Catch::Contains("'b.drop'"));
  CHECK_THROWS_WITH(train::require_same_config(dir.path(), now(R"({"a": 2, "b": {"c": "x"}})")),
                    Catch::Contains("'a'"));
  CHECK_THROWS_WITH(train::require_same_config(dir.path(), now(R"({"a": 1, "b": {}})")),
                    Catch::Contains("'b.c'"));
}
