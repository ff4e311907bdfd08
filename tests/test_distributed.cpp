// Data-parallel training on c10d (Gloo, localhost): torchrun's environment, equivalence of 2 ranks
// x batch 8 with 1 rank x batch 16 (train, and distill from a live teacher), a 2-rank run resumed
// by 1 rank, and the faults: a rank that dies or hangs, a bad environment.
#include "torch_catch.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "core/files.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "train/distributed.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

// The command-line tests' tiny recipe (byte tokenizer, no dropout) at batch 16, checkpoints
// every 4 steps: deterministic runs of a few seconds.
fs::path tiny_recipe(const fs::path& dir, int steps) {
  return test::tiny_recipe_file(dir, steps, 16, 4);
}

// Data parallel sums each half's gradient mean in another order than one process sums the 16
// rows, so the results differ by float32 rounding: measured after 8 steps of the tiny recipe,
// 5.6e-8 relative in the step losses and 4.8e-6 absolute in the weights (AdamW's normalised
// updates magnify differences in tiny gradients). Treating a gradient no rank has as zeros, a
// real semantic difference, moved weights by 1.9e-3.
constexpr double kLossTolerance = 1e-5;    // relative
constexpr double kWeightTolerance = 1e-5;  // absolute

// The per-step training loss of a run's metrics.jsonl.
std::vector<double> losses(const fs::path& run) {
  std::vector<double> out;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line);
    if (record.contains("loss")) out.push_back(record["loss"].get<double>());
  }
  return out;
}

// The largest absolute difference between two runs' final weights.
double max_weight_difference(const fs::path& a, const fs::path& b) {
  const io::SafetensorsFile first(a / "final" / "weights.safetensors");
  const io::SafetensorsFile second(b / "final" / "weights.safetensors");
  double worst = 0;
  for (const auto& view : first.tensors()) {
    const auto* other = second.find(view.name);
    REQUIRE(other != nullptr);
    const auto x = model::tensor_from_view(view).to(torch::kFloat64);
    const auto y = model::tensor_from_view(*other).to(torch::kFloat64);
    worst = std::max(worst, (x - y).abs().max().item<double>());
  }
  return worst;
}

void require_same_curve(const std::vector<double>& expected, const std::vector<double>& got) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(got[i] == Approx(expected[i]).epsilon(kLossTolerance));
  }
}

std::vector<std::string> train_args(const fs::path& recipe, const fs::path& run,
                                    const fs::path& cache, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train",      "--config",     recipe.string(), "--run-dir",
                                   run.string(), "--data-cache", cache.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> launched(int ranks, std::vector<std::string> command,
                                  std::vector<std::string> launch_options = {}) {
  std::vector<std::string> args = {"launch", "--nproc", std::to_string(ranks)};
  args.insert(args.end(), launch_options.begin(), launch_options.end());
  args.push_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

}  // namespace

TEST_CASE("torchrun's environment is read and checked") {
  using test::ScopedEnv;
  ScopedEnv port("MASTER_PORT", "29511"), addr("MASTER_ADDR", "127.0.0.1");
  ScopedEnv local("LOCAL_RANK", nullptr), local_size("LOCAL_WORLD_SIZE", nullptr);
  {
    ScopedEnv world("WORLD_SIZE", nullptr), rank("RANK", nullptr);
    CHECK_FALSE(train::distributed_env_from_environment().has_value());
  }
  {
    ScopedEnv world("WORLD_SIZE", "4"), rank("RANK", "3"), lsize("LOCAL_WORLD_SIZE", "2");
    const auto env = train::distributed_env_from_environment();
    REQUIRE(env.has_value());
    CHECK(env->rank == 3);
    CHECK(env->world_size == 4);
    CHECK(env->local_world_size == 2);
    CHECK(env->local_rank == 1);  // derived as RANK mod LOCAL_WORLD_SIZE when unset
    CHECK(env->master_port == 29511);
  }
  {
    ScopedEnv world("WORLD_SIZE", "1"), rank("RANK", "0");
    CHECK_FALSE(train::distributed_env_from_environment().has_value());  // one process
  }
  struct Bad {
    const char *world, *rank, *port;
    std::string fragment;
  };
  for (const auto& bad : std::vector<Bad>{{"2", "2", "29511", "RANK=2 is not below WORLD_SIZE=2"},
                                          {"2", nullptr, "29511", "RANK is not"},
                                          {nullptr, "1", "29511", "WORLD_SIZE is not"},
                                          {"two", "0", "29511", "WORLD_SIZE='two'"},
                                          {"2", "0", "70000", "MASTER_PORT='70000'"},
                                          {"2", "-1", "29511", "RANK='-1'"}}) {
    ScopedEnv world("WORLD_SIZE", bad.world), rank("RANK", bad.rank), p("MASTER_PORT", bad.port);
    INFO(bad.fragment);
    try {
      train::distributed_env_from_environment();
      FAIL("accepted");
    } catch (const InputError& e) {
      CHECK(std::string(e.what()).find(bad.fragment) != std::string::npos);
    }
  }
}

TEST_CASE("2 ranks x batch 8 train as 1 rank x batch 16, and 1 rank resumes a 2-rank run") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 8);
  const fs::path cache = dir.path() / "cache";
  const auto one = test::run_edgedistill(
      train_args(recipe, dir.path() / "one", cache, {"--deterministic"}), dir.path());
  INFO(one.err);
  REQUIRE(one.exit_code == 0);

  const auto two = test::run_edgedistill(
      launched(2, train_args(recipe, dir.path() / "two", cache,
                             {"--deterministic", "--set", "train.batch_size=8"})),
      dir.path());
  INFO(two.err);
  REQUIRE(two.exit_code == 0);
  CHECK(two.err.find("global batch 8 x 1 x 2 = 16") != std::string::npos);
  CHECK(two.out.find("perplexity: valid") != std::string::npos);  // rank 0's summary, once
  require_same_curve(losses(dir.path() / "one"), losses(dir.path() / "two"));
  CHECK(max_weight_difference(dir.path() / "one", dir.path() / "two") < kWeightTolerance);
  const auto run = core::read_json_file(dir.path() / "two" / "run.json", "run");
  CHECK(run["world_size"] == 2);

  // torchrun (Debian's python3-torch) starts the same ranks unchanged: with a static rendezvous
  // its agent hosts the store on MASTER_PORT (every rank a client), with --standalone rank 0 does.
  for (const std::string mode : {"static", "standalone"}) {
    const fs::path torchrun_run = dir.path() / ("torchrun-" + mode);
    std::vector<std::string> args = {"-m", "torch.distributed.run", "--nproc_per_node", "2"};
    if (mode == "static") {
      args.insert(args.end(), {"--master_addr", "127.0.0.1", "--master_port", "29517"});
    } else {
      args.push_back("--standalone");
    }
    // Debian's torchrun 1.13 under Python 3.11 cannot parse its default "--redirects 0"
    // (Std.from_str returns None for the zero flag); 1 (stdout to a log, teed) works.
    args.insert(args.end(), {"--monitor_interval", "1", "--redirects", "1", "--tee", "1",
                             "--log_dir", (dir.path() / ("torchrun-logs-" + mode)).string(),
                             "--no_python", test::edgedistill_program().string()});
    for (const auto& arg : train_args(recipe, torchrun_run, cache,
                                      {"--deterministic", "--set", "train.batch_size=8"})) {
      args.push_back(arg);
    }
    const auto torchrun = test::run_program("/usr/bin/python3", args, dir.path());
    INFO(mode << ": " << torchrun.err);
    REQUIRE(torchrun.exit_code == 0);
    require_same_curve(losses(dir.path() / "one"), losses(torchrun_run));
    CHECK(max_weight_difference(dir.path() / "one", torchrun_run) < kWeightTolerance);
  }

  // Stopped at step 4 by 2 ranks, resumed by 1: it accumulates 2 micro-batches of 8 per step to
  // keep the global batch, and follows the same curve.
  const fs::path split = dir.path() / "split";
  const auto stopped = test::run_edgedistill(
      launched(
          2, train_args(recipe, split, cache,
                        {"--deterministic", "--set", "train.batch_size=8", "--stop-at-step", "4"})),
      dir.path());
  INFO(stopped.err);
  REQUIRE(stopped.exit_code == 0);
  REQUIRE(fs::exists(split / "checkpoints" / "step-4" / "trainer.json"));
  const auto resumed = test::run_edgedistill(
      train_args(recipe, split, cache,
                 {"--deterministic", "--set", "train.batch_size=8", "--resume"}),
      dir.path());
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.err.find("1 rank accumulates 2 micro-batches") != std::string::npos);
  require_same_curve(losses(dir.path() / "one"), losses(split));
  CHECK(max_weight_difference(dir.path() / "one", split) < kWeightTolerance);
}

TEST_CASE("2 ranks distil from a live teacher or its cache as 1 rank does with the global batch") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 6);
  const fs::path cache = dir.path() / "cache";
  REQUIRE(test::run_edgedistill(train_args(recipe, dir.path() / "teacher", cache), dir.path())
              .exit_code == 0);
  auto distill = [&](const fs::path& run, int batch) {
    std::vector<std::string> args = {"distill",
                                     "--config",
                                     recipe.string(),
                                     "--teacher",
                                     (dir.path() / "teacher").string(),
                                     "--run-dir",
                                     run.string(),
                                     "--data-cache",
                                     cache.string(),
                                     "--deterministic",
                                     "--set",
                                     "train.batch_size=" + std::to_string(batch),
                                     "--set",
                                     "distill.losses=[{\"kind\": \"forward_kl\", \"weight\": 0.7, "
                                     "\"temperature\": 2}, {\"kind\": \"ce\", \"weight\": 0.3}]"};
    return args;
  };
  const auto one = test::run_edgedistill(distill(dir.path() / "one", 16), dir.path());
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  const auto two = test::run_edgedistill(launched(2, distill(dir.path() / "two", 8)), dir.path());
  INFO(two.err);
  REQUIRE(two.exit_code == 0);
  require_same_curve(losses(dir.path() / "one"), losses(dir.path() / "two"));
  CHECK(max_weight_difference(dir.path() / "one", dir.path() / "two") < kWeightTolerance);

  // Progressive layer dropping draws its blocks from the seed and the step, so every rank drops
  // the same blocks as the single process does: the same curve and weights.
  auto dropping = [&](const fs::path& run, int batch) {
    auto args = distill(run, batch);
    for (const std::string setting :
         {"distill.layer_drop.enabled=true", "distill.layer_drop.theta_bar=0.5",
          "distill.layer_drop.gamma=0.2"}) {
      args.insert(args.end(), {"--set", setting});
    }
    return args;
  };
  const auto one_pld = test::run_edgedistill(dropping(dir.path() / "one-pld", 16), dir.path());
  INFO(one_pld.err);
  REQUIRE(one_pld.exit_code == 0);
  const auto two_pld =
      test::run_edgedistill(launched(2, dropping(dir.path() / "two-pld", 8)), dir.path());
  INFO(two_pld.err);
  REQUIRE(two_pld.exit_code == 0);
  require_same_curve(losses(dir.path() / "one-pld"), losses(dir.path() / "two-pld"));
  CHECK(max_weight_difference(dir.path() / "one-pld", dir.path() / "two-pld") < kWeightTolerance);
  const auto pld_totals = core::read_json_file(dir.path() / "two-pld" / "result.json", "result");
  CHECK(pld_totals["pld_blocks_run_share"].get<double>() < 1.0);  // blocks were dropped
  CHECK(max_weight_difference(dir.path() / "one", dir.path() / "one-pld") > 1e-6);

  // Teacher queries keep one budget over all ranks: the items scored, the items asked and the
  // teacher's tokens are totals (per-rank counting would report half of them), and the share
  // asked tracks the budget globally.
  auto with_queries = distill(dir.path() / "queries", 8);
  for (const std::string setting : {"distill.queries.policy=random", "distill.queries.budget=0.25",
                                    "train.steps=12", "distill.queries.window_items=64"}) {
    with_queries.insert(with_queries.end(), {"--set", setting});
  }
  const auto queried = test::run_edgedistill(launched(2, with_queries), dir.path());
  INFO(queried.err);
  REQUIRE(queried.exit_code == 0);
  const auto totals = core::read_json_file(dir.path() / "queries" / "result.json", "result");
  CHECK(totals["query_items"].get<double>() == 12 * 16);  // sequences over both ranks
  CHECK(totals["teacher_tokens_full"].get<double>() == 12 * 16 * 32);
  // The budget's debt term pulls the realised share back to the budget; 0.06 allows 11.5 of the
  // 48 items a 25 % budget of 192 asks (random scores, so the share is not exact), while counts
  // kept per rank would be off by half.
  CHECK(totals["query_rate"].get<double>() == Approx(0.25).margin(0.06));
  CHECK(totals["teacher_tokens"].get<double>() ==
        Approx(totals["query_rate"].get<double>() * 12 * 16 * 32));

  // From the teacher's top-k cache instead of the live teacher: each rank looks up its windows.
  const fs::path topk = dir.path() / "topk";
  const auto cached = test::run_edgedistill(
      {"teacher-cache", "--teacher", (dir.path() / "teacher").string(), "--config", recipe.string(),
       "--data-cache", cache.string(), "--top-k", "8", "--out", topk.string()},
      dir.path());
  INFO(cached.err);
  REQUIRE(cached.exit_code == 0);
  auto from_cache = [&](const fs::path& run, int batch) {
    auto args = distill(run, batch);
    args[3] = "--teacher-cache";  // instead of --teacher
    args[4] = topk.string();
    return args;
  };
  const auto one_cached =
      test::run_edgedistill(from_cache(dir.path() / "one-cache", 16), dir.path());
  INFO(one_cached.err);
  REQUIRE(one_cached.exit_code == 0);
  const auto two_cached =
      test::run_edgedistill(launched(2, from_cache(dir.path() / "two-cache", 8)), dir.path());
  INFO(two_cached.err);
  REQUIRE(two_cached.exit_code == 0);
  require_same_curve(losses(dir.path() / "one-cache"), losses(dir.path() / "two-cache"));
  CHECK(max_weight_difference(dir.path() / "one-cache", dir.path() / "two-cache") <
        kWeightTolerance);
  // The cache really stood in for the teacher: other weights than the live teacher's run.
  CHECK(max_weight_difference(dir.path() / "one", dir.path() / "one-cache") > 1e-6);
}

TEST_CASE("a rank that dies or hangs stops the others with a message naming it") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 100000);
  const fs::path cache = dir.path() / "cache";
  // The rank-1 process of a launched run: found by its environment.
  auto rank_one_pid = [&](const fs::path& run) -> pid_t {
    for (const auto& entry : fs::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream cmdline(entry.path() / "cmdline"), environ(entry.path() / "environ");
      const std::string args((std::istreambuf_iterator<char>(cmdline)), {});
      const std::string env((std::istreambuf_iterator<char>(environ)), {});
      if (args.find(run.string()) != std::string::npos &&
          args.find("launch") == std::string::npos &&
          env.find(std::string("RANK=1\0", 7)) != std::string::npos &&
          env.find("LOCAL_RANK=1") != std::string::npos) {
        return static_cast<pid_t>(std::stol(name));
      }
    }
    return -1;
  };
  for (const int signal_number : {SIGKILL, SIGSTOP}) {
    const fs::path run = dir.path() / (signal_number == SIGKILL ? "killed" : "stopped");
    const auto started = std::chrono::steady_clock::now();
    std::thread killer([&] {
      // Once the run has a checkpoint, kill (or freeze) rank 1.
      for (int i = 0; i < 6000; ++i) {
        if (fs::exists(run / "checkpoints" / "step-8" / "trainer.json")) {
          const pid_t pid = rank_one_pid(run);
          if (pid > 0) ::kill(pid, signal_number);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    const auto result = test::run_edgedistill(
        launched(2, train_args(recipe, run, cache, {"--set", "train.batch_size=8"}),
                 {"--dist-timeout", "5", "--grace", "2"}),
        dir.path());
    killer.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    INFO(result.err);
    CHECK(seconds < 60);
    if (signal_number == SIGKILL) {
      CHECK(result.exit_code == 128 + SIGKILL);  // the first failing rank's code
      CHECK(result.err.find("launch: rank 1 was killed by signal 9") != std::string::npos);
    } else {
      CHECK(result.exit_code == 2);  // rank 0 timed out first
      CHECK(result.err.find("launch: rank 0 exited with code 2") != std::string::npos);
    }
    CHECK(result.err.find("rank 0: edgedistill: error: ") != std::string::npos);
    CHECK(result.err.find("failed on rank 0 of 2") != std::string::npos);
    CHECK(result.err.find("EDGEDISTILL_DIST_TIMEOUT") != std::string::npos);
    // The newest checkpoint is complete: one rank resumes it (accumulating rank 1's share too)
    // and stops one step later.
    int64_t newest = 0;
    for (const auto& entry : fs::directory_iterator(run / "checkpoints")) {
      const std::string name = entry.path().filename();
      if (name.rfind("step-", 0) == 0)
        newest = std::max<int64_t>(newest, std::stoll(name.substr(5)));
    }
    REQUIRE(newest >= 8);
    const auto resumed =
        test::run_edgedistill(train_args(recipe, run, cache,
                                         {"--set", "train.batch_size=8", "--resume",
                                          "--stop-at-step", std::to_string(newest + 1)}),
                              dir.path());
    INFO(resumed.err);
    CHECK(resumed.exit_code == 0);
    CHECK(
        fs::exists(run / "checkpoints" / ("step-" + std::to_string(newest + 1)) / "trainer.json"));
  }
}

TEST_CASE("a bad distributed environment is one line and exit 2") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 4);
  const auto args = train_args(recipe, dir.path() / "run", dir.path() / "cache");
  auto require_one_line = [&](const std::string& environment, const std::string& fragment) {
    const auto result = test::run_edgedistill(args, dir.path(), environment);
    INFO(environment << ": " << result.err);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(fragment) != std::string::npos);
    CHECK(result.err.find("terminate") == std::string::npos);
  };
  require_one_line("WORLD_SIZE=2 RANK=5 MASTER_ADDR=127.0.0.1 MASTER_PORT=29512",
                   "RANK=5 is not below WORLD_SIZE=2");
  require_one_line("WORLD_SIZE=2 RANK=0", "needs MASTER_ADDR and MASTER_PORT");
  // A port another program holds.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  const std::string held = std::to_string(ntohs(address.sin_port));
  require_one_line(
      "EDGEDISTILL_DIST_TIMEOUT=3 WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 "
      "MASTER_PORT=" +
          held,
      "could not join the process group at 127.0.0.1:" + held);
  ::close(fd);
  // Nobody listens where rank 1 looks for rank 0.
  require_one_line(
      "EDGEDISTILL_DIST_TIMEOUT=3 WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 "
      "MASTER_PORT=" +
          held,
      "rank 1 of 2 could not join the process group");
  // launch runs only train and distill.
  const auto refused =
      test::run_edgedistill({"launch", "--nproc", "2", "--", "export"}, dir.path());
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("launch runs 'train', 'distill' or 'bench --allreduce'") !=
        std::string::npos);
}

TEST_CASE("bench --allreduce reports the bandwidth between launched ranks") {
  test::TempDir dir;
  const auto result = test::run_edgedistill(
      {"launch", "--nproc", "2", "--", "bench", "--allreduce", "-r", "2", "--json"}, dir.path());
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto report = nlohmann::json::parse(result.out);  // rank 0 alone prints
  CHECK(report["world_size"] == 2);
  REQUIRE(report["sizes"].size() == 8);  // 4 KB x 4^k up to 64 MB
  CHECK(report["sizes"][0]["bytes"] == 4096);
  CHECK(report["sizes"][7]["bytes"] == 64 << 20);
  for (const auto& row : report["sizes"]) {
    CHECK(row["seconds"].get<double>() > 0);
    // busbw = 2 (n - 1) / n x algbw = algbw for n = 2.
    CHECK(row["busbw_gb_s"].get<double>() == Approx(row["algbw_gb_s"].get<double>()));
  }
  // Outside a process group it says how to run it.
  const auto alone = test::run_edgedistill({"bench", "--allreduce"}, dir.path());
  CHECK(alone.exit_code == 2);
  CHECK(alone.err.find("launch --nproc 2 -- bench --allreduce") != std::string::npos);
}
