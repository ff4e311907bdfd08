// Logit distillation losses (distill/logit_losses.h), the top-k teacher distribution, the combined
// loss of a recipe, student initialisation from the teacher, and distillation end to end on a tiny
// config.
#include "torch_catch.h"

#include <cmath>

#include "core/config.h"
#include "data/prepare.h"
#include "distill/distill_loss.h"
#include "distill/distill_task.h"
#include "distill/logit_losses.h"
#include "distill/student_init.h"
#include "distill/top_k.h"
#include "distill_fixtures.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "train/setup.h"
#include "train/trainer.h"

using namespace edgedistill;
using namespace edgedistill::distill;
namespace fs = std::filesystem;

namespace {

const std::vector<Divergence> kAllDivergences = {Divergence::forward_kl, Divergence::reverse_kl,
                                                 Divergence::jsd, Divergence::skew_kl,
                                                 Divergence::skew_reverse_kl};

LogitLossOptions options_for(Divergence divergence, double temperature = 1.0) {
  LogitLossOptions options;
  options.divergence = divergence;
  options.temperature = temperature;
  options.beta = 0.3;
  options.lambda = 0.2;
  return options;
}

double value(const torch::Tensor& t) {
  return t.item<double>();
}

// The slow obvious forward KL: loops over rows and tokens in double precision.
double slow_forward_kl(const torch::Tensor& student, const torch::Tensor& teacher, double t) {
  const auto s = student.accessor<double, 2>();
  const auto v = teacher.accessor<double, 2>();
  double total = 0;
  for (int64_t r = 0; r < student.size(0); ++r) {
    double zs = 0, zt = 0;
    for (int64_t i = 0; i < student.size(1); ++i) {
      zs += std::exp(s[r][i] / t);
      zt += std::exp(v[r][i] / t);
    }
    for (int64_t i = 0; i < student.size(1); ++i) {
      const double p = std::exp(v[r][i] / t) / zt, q = std::exp(s[r][i] / t) / zs;
      total += p * std::log(p / q);
    }
  }
  return t * t * total / static_cast<double>(student.size(0));
}

}  // namespace

TEST_CASE("top_k_distribution keeps the k largest probabilities and the exact tail") {
  torch::manual_seed(3);
  const auto logits = torch::randn({5, 40}, torch::kFloat64) * 3;
  const auto top = top_k_distribution(logits, 8);
  const auto probs = torch::softmax(logits, -1);
  const auto sorted = std::get<0>(probs.sort(-1, /*descending=*/true));
  CHECK(torch::allclose(top.logprobs.exp(), sorted.narrow(1, 0, 8)));
  CHECK(torch::allclose(top.tail, sorted.narrow(1, 8, 32).sum(-1)));
  const auto full = top_k_distribution(logits, 40);
  CHECK(full.tail.abs().max().item<double>() == 0.0);
}

TEST_CASE("forward KL at temperature T matches the slow formula, with the T^2 factor") {
  torch::manual_seed(1);
  const auto s = torch::randn({6, 11}, torch::kFloat64) * 2;
  const auto t = torch::randn({6, 11}, torch::kFloat64) * 2;
  for (const double temperature : {1.0, 2.5, 20.0}) {
    INFO("T = " << temperature);
    auto options = options_for(Divergence::forward_kl, temperature);
    const double scaled = value(logit_loss(s, t, {}, options));
    CHECK(scaled == Approx(slow_forward_kl(s, t, temperature)).epsilon(1e-10));
    options.scale_by_t2 = false;
    CHECK(scaled ==
          Approx(temperature * temperature * value(logit_loss(s, t, {}, options))).epsilon(1e-12));
  }
}

TEST_CASE("at high temperature the T^2-scaled gradient is (z_s - z_t) / V (Hinton et al. 2015)") {
  // dC/dz_i = T (q_i - p_i) -> (z_i - v_i) / V for zero-mean logits as T grows.
  torch::manual_seed(2);
  const int64_t vocab = 9;
  auto s = torch::randn({1, vocab}, torch::kFloat64);
  s = (s - s.mean()).requires_grad_(true);
  auto t = torch::randn({1, vocab}, torch::kFloat64);
  t = t - t.mean();
  logit_loss(s, t, {}, options_for(Divergence::forward_kl, 1e4)).backward();
  const auto expected = (s.detach() - t) / static_cast<double>(vocab);
  CHECK(torch::allclose(s.grad(), expected, 1e-3, 1e-6));
}

TEST_CASE("every divergence of a distribution with itself is 0, and positive otherwise") {
  torch::manual_seed(4);
  const auto a = torch::randn({4, 13}, torch::kFloat64);
  const auto b = torch::randn({4, 13}, torch::kFloat64);
  for (const auto divergence : kAllDivergences) {
    INFO("divergence " << static_cast<int>(divergence));
    CHECK(std::abs(value(logit_loss(a, a, {}, options_for(divergence, 2.0)))) < 1e-12);
    CHECK(value(logit_loss(a, b, {}, options_for(divergence, 2.0))) > 1e-3);
  }
}

TEST_CASE("every logit loss's gradient matches central finite differences in float64") {
  torch::manual_seed(5);
  const auto teacher_logits = torch::randn({3, 7}, torch::kFloat64) * 2;
  const auto teacher_top_k = top_k_distribution(teacher_logits, 3);
  const auto start = torch::randn({3, 7}, torch::kFloat64) * 2;
  const auto mask = torch::tensor({1.0, 0.0, 1.0}, torch::kFloat64);
  for (const bool top_k : {false, true}) {
    for (const auto divergence : kAllDivergences) {
      INFO("divergence " << static_cast<int>(divergence) << (top_k ? " top-k" : " dense"));
      const auto options = options_for(divergence, 1.7);
      auto loss = [&](const torch::Tensor& s) {
        return top_k ? logit_loss(s, teacher_top_k, mask, options)
                     : logit_loss(s, teacher_logits, mask, options);
      };
      auto s = start.clone().requires_grad_(true);
      loss(s).backward();
      const auto analytic = s.grad();
      const auto numeric = central_differences(loss, start);
      CHECK(torch::allclose(analytic, numeric, 1e-5, 1e-8));
      // The masked-out row gets no gradient.
      CHECK(analytic[1].abs().max().item<double>() == 0.0);
    }
  }
}

TEST_CASE("JSD(beta) approaches forward KL and reverse KL at its limits") {
  torch::manual_seed(6);
  const auto s = torch::randn({5, 10}, torch::kFloat64);
  const auto t = torch::randn({5, 10}, torch::kFloat64);
  const double fkl = value(logit_loss(s, t, {}, options_for(Divergence::forward_kl)));
  const double rkl = value(logit_loss(s, t, {}, options_for(Divergence::reverse_kl)));
  auto jsd = [&](double beta) {
    auto options = options_for(Divergence::jsd);
    options.beta = beta;
    return value(logit_loss(s, t, {}, options));
  };
  // JSD(beta) = beta KL(p || q) + O(beta^2) near 0, and (1 - beta) KL(q || p) + ... near 1.
  CHECK(jsd(1e-5) / 1e-5 == Approx(fkl).epsilon(1e-3));
  CHECK(jsd(1 - 1e-5) / 1e-5 == Approx(rkl).epsilon(1e-3));
  CHECK(jsd(0.0) == Approx(fkl).epsilon(1e-12));  // the endpoints are the KLs themselves
  CHECK(jsd(1.0) == Approx(rkl).epsilon(1e-12));
  // Skew KL with lambda = 0 is the plain KL of its direction.
  auto skew = [&](Divergence divergence) {
    auto options = options_for(divergence);
    options.lambda = 0.0;
    return value(logit_loss(s, t, {}, options));
  };
  CHECK(skew(Divergence::skew_kl) == Approx(fkl).epsilon(1e-12));
  CHECK(skew(Divergence::skew_reverse_kl) == Approx(rkl).epsilon(1e-12));
}

TEST_CASE("the top-k loss equals the dense loss when k = V, and approximates it for large k") {
  torch::manual_seed(7);
  const auto s = torch::randn({6, 20}, torch::kFloat64) * 2;
  const auto t = torch::randn({6, 20}, torch::kFloat64) * 3;
  for (const auto divergence : kAllDivergences) {
    for (const double temperature : {1.0, 2.0}) {
      INFO("divergence " << static_cast<int>(divergence) << " T " << temperature);
      const auto options = options_for(divergence, temperature);
      const double dense = value(logit_loss(s, t, {}, options));
      CHECK(value(logit_loss(s, top_k_distribution(t, 20), {}, options)) ==
            Approx(dense).epsilon(1e-12));
    }
  }
  // At T = 1 with one tail bucket the top-k forward KL is a lower bound of the dense one (merging
  // buckets never increases a KL), and close to it when k holds most of the mass.
  const auto options = options_for(Divergence::forward_kl);
  const double dense = value(logit_loss(s, t, {}, options));
  const double top10 = value(logit_loss(s, top_k_distribution(t, 10), {}, options));
  CHECK(top10 <= dense + 1e-12);
  CHECK(top10 > 0.5 * dense);
}

TEST_CASE("chunking over rows and masking do not change the loss") {
  torch::manual_seed(8);
  const auto s = torch::randn({10, 16});
  const auto t = torch::randn({10, 16});
  for (const auto divergence : kAllDivergences) {
    auto options = options_for(divergence, 2.0);
    const double whole = value(logit_loss(s, t, {}, options));
    options.chunk_rows = 3;
    CHECK(value(logit_loss(s, t, {}, options)) == Approx(whole).epsilon(1e-5));
    // Rows 5..9 masked out: the mean over rows 0..4 only.
    auto mask = torch::zeros({10});
    mask.narrow(0, 0, 5).fill_(1);
    CHECK(
        value(logit_loss(s, t, mask, options)) ==
        Approx(value(logit_loss(s.narrow(0, 0, 5), t.narrow(0, 0, 5), {}, options))).epsilon(1e-5));
  }
  // float32 logits are computed in float32 even when given as bfloat16.
  CHECK(logit_loss(s.to(torch::kBFloat16), t, {}, options_for(Divergence::forward_kl))
            .scalar_type() == torch::kFloat32);
}

TEST_CASE("a recipe's loss sums its weighted terms and reports each on its own") {
  torch::manual_seed(9);
  model::ModelConfig config;
  config.arch = "mlp";
  std::vector<LossTerm> terms(2);
  terms[0].kind = "forward_kl";
  terms[0].temperature = 4;
  terms[0].alpha = 0.7;
  terms[0].weight = 2;
  terms[1].kind = "reverse_kl";
  terms[1].weight = 0.5;
  DistillLoss loss(terms, config, config);
  CHECK(loss.modules() == nullptr);
  DistillBatch batch;
  batch.student_logits = torch::randn({8, 10});
  batch.teacher_logits = torch::randn({8, 10});
  batch.targets = torch::randint(0, 10, {8}, torch::kInt64);
  const auto out = loss.compute(batch);
  auto term = [&](const std::string& name) {
    for (const auto& [key, v] : out.terms) {
      if (key == name) return v;
    }
    FAIL("no term " << name);
    return 0.0;
  };
  LogitLossOptions fkl = options_for(Divergence::forward_kl, 4);
  const double kl = value(logit_loss(batch.student_logits, batch.teacher_logits, {}, fkl));
  const double ce =
      value(torch::nn::functional::cross_entropy(batch.student_logits, batch.targets));
  const double rkl = value(logit_loss(batch.student_logits, batch.teacher_logits, {},
                                      options_for(Divergence::reverse_kl)));
  CHECK(term("loss_forward_kl_kl") == Approx(kl).epsilon(1e-5));
  CHECK(term("loss_forward_kl_ce") == Approx(ce).epsilon(1e-5));
  CHECK(term("loss_forward_kl") == Approx(0.7 * kl + 0.3 * ce).epsilon(1e-5));
  CHECK(term("loss_reverse_kl") == Approx(rkl).epsilon(1e-5));
  CHECK(value(out.loss) == Approx(2 * (0.7 * kl + 0.3 * ce) + 0.5 * rkl).epsilon(1e-5));
}

TEST_CASE("distillation recipes reject bad terms with the key path") {
  test::TempDir dir;
  const auto file = dir.path() / "r.json";
  auto load = [&](const std::string& losses) {
    core::write_file_atomic(file, R"({"data": {"kind": "images"}, "model": {"arch": "mlp"},
                                      "distill": {"losses": )" +
                                      losses + "}}");
    return core::load_config<DistillRecipe>(file, {});
  };
  CHECK_NOTHROW(load(R"([{"kind": "forward_kl", "temperature": 4, "alpha": 0.5}])"));
  CHECK_THROWS_WITH(load(R"([{"kind": "forward_kl", "beta": 0.5}])"),
                    Catch::Contains("distill.losses[0].beta"));
  CHECK_THROWS_WITH(load(R"([{"kind": "jsd", "beta": 2}])"), Catch::Contains("[0, 1]"));
  CHECK_THROWS_WITH(load(R"([{"kind": "hidden"}])"), Catch::Contains("hidden states"));
  CHECK_THROWS_WITH(load(R"([{"kind": "kl"}])"), Catch::Contains("distill.losses[0].kind"));
  CHECK_THROWS_WITH(load("[]"), Catch::Contains("at least one term"));
}

TEST_CASE("a student initialised from teacher layers reproduces the copied blocks") {
  torch::manual_seed(10);
  model::LlamaConfig config;
  config.vocab_size = 50;
  config.dim = 64;
  config.n_layers = 4;
  config.n_heads = 2;
  config.n_kv_heads = 1;
  config.ffn_dim = 96;
  config.max_seq_len = 16;
  model::LlamaModel teacher(config);
  auto student_config = config;
  student_config.n_layers = 2;
  model::LlamaModel student(student_config);
  StudentInit init;
  init.init = "teacher-layers";
  init.stride = 2;
  CHECK(teacher_blocks_to_copy(init, 2, 4) == std::vector<int>{0, 2});
  init_from_teacher_layers(*student, *teacher, init);
  // A teacher with blocks 1 and 3 removed computes what the student computes.
  model::LlamaModel reduced(student_config);
  {
    torch::NoGradGuard no_grad;
    auto params = teacher->named_parameters();
    for (auto& item : reduced->named_parameters()) {
      std::string name = item.key();
      if (name.rfind("blk.1.", 0) == 0) name = "blk.2." + name.substr(6);
      item.value().copy_(params[name]);
    }
  }
  const auto tokens = torch::randint(0, 50, {2, 10}, torch::kInt64);
  CHECK(torch::allclose(student->forward(tokens).logits, reduced->forward(tokens).logits));
  init.stride = 4;
  CHECK_THROWS_WITH(teacher_blocks_to_copy(init, 2, 4), Catch::Contains("teacher block 4"));
  student_config.dim = 32;
  student_config.n_heads = 1;
  model::LlamaModel narrow(student_config);
  init.stride = 2;
  CHECK_THROWS_WITH(init_from_teacher_layers(*narrow, *teacher, init),
                    Catch::Contains("model.dim is 32"));
}

TEST_CASE("distilling a tiny student lowers its KL to the teacher below training from scratch") {
  test::TempDir dir;
  train::configure_threads(0, false);
  const auto teacher = tiny_teacher();
  auto run = [&](DistillRecipe recipe, const std::string& name) {
    auto setup = prepare_distillation(recipe, dir.path() / "cache");
    const auto result = train_distill(setup, dir.path() / name);
    REQUIRE(result.finished);
    for (const auto& [key, v] : result.final_metrics) {
      if (key == "valid_teacher_kl") return v;
    }
    FAIL("no valid_teacher_kl");
    return 0.0;
  };
  auto distilled = tiny_distill_recipe(dir.path(), teacher);
  auto scratch = distilled;
  scratch.distill.losses[0].kind = "ce";
  const double kl_distilled = run(distilled, "distilled");
  const double kl_scratch = run(scratch, "scratch");
  CHECK(kl_distilled < 0.9 * kl_scratch);
  // The final student is an ordinary checkpoint of the student's shape.
  const auto loaded = model::load_model(dir.path() / "distilled" / "final");
  CHECK(loaded.meta.config.llama.dim == 32);
}

TEST_CASE("representation terms train their projections and leave them out of the student") {
  test::TempDir dir;
  train::configure_threads(0, false);
  const auto teacher = tiny_teacher();
  auto recipe = tiny_distill_recipe(dir.path(), teacher);
  recipe.base.train.steps = 6;
  recipe.base.train.checkpoint_every = 3;
  recipe.distill.losses.resize(4);
  recipe.distill.losses[1].kind = "hidden";
  recipe.distill.losses[2].kind = "attention_relation";
  recipe.distill.losses[2].relation_heads = 2;
  recipe.distill.losses[3].kind = "contrastive";
  recipe.distill.losses[3].memory_bank = 16;
  auto setup = prepare_distillation(recipe, dir.path() / "cache");
  REQUIRE(setup.task->auxiliary() != nullptr);
  const auto before = setup.task->auxiliary()->named_parameters()[0].value().clone();
  const auto result = train_distill(setup, dir.path() / "run");
  REQUIRE(result.finished);
  CHECK(!torch::equal(before, setup.task->auxiliary()->named_parameters()[0].value()));
  // metrics.jsonl logs each term on its own.
  const auto metrics = core::read_file(dir.path() / "run" / "metrics.jsonl", "metrics");
  for (const char* name :
       {"loss_forward_kl", "loss_hidden", "loss_attention_relation", "loss_contrastive"}) {
    CHECK(metrics.find(name) != std::string::npos);
  }
  // The step checkpoint keeps the auxiliary state for --resume; final/ holds only the student.
  CHECK(fs::exists(dir.path() / "run" / "checkpoints" / "step-3" / "auxiliary.safetensors"));
  CHECK(!fs::exists(dir.path() / "run" / "final" / "auxiliary.safetensors"));
  CHECK_NOTHROW(model::load_model(dir.path() / "run" / "final"));
  // A cache alone cannot feed the hidden term.
  recipe.teacher.clear();
  recipe.teacher_cache = dir.path() / "no-cache";
  CHECK_THROWS_WITH(prepare_distillation(recipe, dir.path() / "cache"),
                    Catch::Contains("need the live teacher"));
}

TEST_CASE("distillation from a teacher cache trains, and a cache for other windows is refused") {
  test::TempDir dir;
  train::configure_threads(0, false);
  const auto teacher_dir = tiny_teacher();
  auto recipe = tiny_distill_recipe(dir.path(), teacher_dir);
  recipe.base.train.steps = 20;
  const auto data =
      data::PreparedData(data::ensure_prepared(recipe.base.data, dir.path() / "cache"));
  const auto teacher = load_teacher(teacher_dir, torch::kCPU);
  const auto shard = data.shard("train");
  write_teacher_cache(teacher, shard, data.shard_path("train").string(), recipe.base.train.seq_len,
                      /*k=*/259, /*batch_size=*/8, torch::kCPU, dir.path() / "topk");
  // From the cache alone (k = V: the exact teacher distribution), the student moves towards the
  // teacher as with the live teacher.
  auto cached = recipe;
  cached.teacher.clear();
  cached.teacher_cache = dir.path() / "topk";
  auto setup = prepare_distillation(cached, dir.path() / "cache");
  REQUIRE(train_distill(setup, dir.path() / "cached").finished);
  const auto student = model::load_model(dir.path() / "cached" / "final");
  auto& llama = dynamic_cast<model::LlamaModelImpl&>(*student.module);
  const auto [kl_trained, tokens] =
      teacher_student_kl(llama, teacher.llama(), data.shard("valid"), 32, 8, 0, torch::kCPU);
  torch::manual_seed(static_cast<uint64_t>(recipe.base.seed));
  auto fresh = std::dynamic_pointer_cast<model::LlamaModelImpl>(model::build_model([&] {
    auto config = recipe.base.model;
    config.llama.vocab_size = 259;
    return config;
  }()));
  const auto [kl_fresh, ignored] =
      teacher_student_kl(*fresh, teacher.llama(), data.shard("valid"), 32, 8, 0, torch::kCPU);
  CHECK(tokens > 0);
  CHECK(kl_trained < 0.5 * kl_fresh);
  // A run with another seq_len does not match the cache's windows.
  cached.base.train.seq_len = 16;
  CHECK_THROWS_WITH(prepare_distillation(cached, dir.path() / "cache"), Catch::Contains("seq_len"));
}

TEST_CASE("a deterministic distillation run stopped and resumed ends with byte-identical weights") {
  // The contrastive memory bank and the projections live in auxiliary.safetensors; resuming must
  // restore them (and the optimizer state of their parameters) exactly.
  test::TempDir dir;
  train::configure_threads(0, /*deterministic=*/true);
  auto recipe = tiny_distill_recipe(dir.path(), tiny_teacher());
  recipe.base.train.steps = 8;
  recipe.base.train.checkpoint_every = 0;
  recipe.distill.losses.resize(3);
  recipe.distill.losses[1].kind = "hidden";
  recipe.distill.losses[2].kind = "contrastive";
  recipe.distill.losses[2].memory_bank = 24;
  auto run = [&](const std::string& name, int64_t stop_at, bool resume) {
    auto setup = prepare_distillation(recipe, dir.path() / "cache");
    return train_distill(setup, dir.path() / name, stop_at, resume);
  };
  REQUIRE(run("whole", 0, false).finished);
  CHECK(run("split", 5, false).interrupted);
  REQUIRE(run("split", 0, true).finished);
  CHECK(core::read_file(dir.path() / "whole" / "final" / "weights.safetensors", "weights") ==
        core::read_file(dir.path() / "split" / "final" / "weights.safetensors", "weights"));
  train::configure_threads(0, false);
}
