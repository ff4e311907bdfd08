// Pruning (prune/): masks against their definitions, Wanda against a hand-computed case,
// structured shrinking against masking the same units in the original model, masks surviving a
// healing run, and pruned models through the GGUF export into the runtime.
#include "torch_catch.h"

#include <algorithm>
#include <cmath>

#include "data/byte_tokenizer.h"
#include "distill/layer_removal.h"
#include "distill_fixtures.h"
#include "model/checkpoint.h"
#include "model/tensor_chunks.h"
#include "prune/calibration_pass.h"
#include "prune/masks.h"
#include "prune/structured.h"
#include "prune/unstructured.h"
#include "quantize/gguf_export.h"
#include "runtime/llama_session.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

// The largest pruned score never exceeds the smallest kept one within a comparison group.
void require_lowest_pruned(const torch::Tensor& scores, const torch::Tensor& mask) {
  const auto pruned = scores.masked_select(mask == 0);
  const auto kept = scores.masked_select(mask == 1);
  if (pruned.numel() > 0 && kept.numel() > 0) {
    REQUIRE(pruned.max().item<float>() <= kept.min().item<float>());
  }
}

// dim 128 with 4 heads of 32 in 2 GQA groups: keeping one group leaves k/v rows of 32, which
// GGUF's 32-element blocks accept.
model::LlamaConfig prunable_config() {
  model::LlamaConfig c;
  c.vocab_size = data::ByteTokenizer().vocab_size();
  c.dim = 128;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 128;
  c.max_seq_len = 64;
  c.init_std = 0.1;  // logits O(1), so a misplaced row shows
  return c;
}

torch::Tensor random_windows(int64_t n, int64_t length, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(vocab, {n, length}, torch::kInt64);
}

// What `prune --method structured` does: calibrate, measure block influence, plan.
prune::StructuredPlan plan_for(model::LlamaModelImpl& net, const torch::Tensor& windows,
                               const prune::StructuredOptions& options) {
  return prune::plan_structured(net.config(), prune::calibrate_blocks(net, windows, 4), options);
}

double max_relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

}  // namespace

TEST_CASE("unstructured masks prune exactly the requested share of the lowest scores") {
  torch::manual_seed(3);
  const auto scores = torch::rand({8, 64});
  const auto per_row = prune::lowest_share_mask(scores, 0.5, true);
  for (int64_t r = 0; r < 8; ++r) {
    REQUIRE((per_row[r] == 0).sum().item<int64_t>() == 32);
    require_lowest_pruned(scores[r], per_row[r]);
  }
  const auto odd = torch::rand({7, 33});
  const auto whole = prune::lowest_share_mask(odd, 0.3, false);
  REQUIRE((whole == 0).sum().item<int64_t>() == std::llround(0.3 * 7 * 33));  // 69
  require_lowest_pruned(odd, whole);
  // Equal scores: still exactly the share, the earlier indices going first.
  const auto flat = prune::lowest_share_mask(torch::ones({2, 8}), 0.25, true);
  REQUIRE(torch::equal(flat[0], torch::tensor({0.f, 0.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f})));
}

TEST_CASE("N:M masks keep exactly N of every M consecutive inputs") {
  torch::manual_seed(4);
  const auto scores = torch::rand({6, 32});
  for (const auto& [text, n, m] :
       {std::tuple{"2:4", 2, 4}, std::tuple{"4:8", 4, 8}, std::tuple{"1:4", 1, 4}}) {
    INFO(text);
    const auto pattern = prune::parse_nm_pattern(text);
    REQUIRE(pattern);
    REQUIRE(pattern->n == n);
    const auto mask = prune::nm_mask(scores, *pattern);
    const auto groups = mask.view({6, -1, m}), grouped_scores = scores.view({6, -1, m});
    REQUIRE(torch::equal(groups.sum(-1), torch::full({6, 32 / m}, static_cast<float>(n))));
    for (int64_t r = 0; r < 6; ++r) {
      for (int64_t g = 0; g < 32 / m; ++g)
        require_lowest_pruned(grouped_scores[r][g], groups[r][g]);
    }
  }
  for (const char* bad : {"4:2", "2:2", "0:4", "2-4", "2:", "a:4"}) {
    INFO(bad);
    REQUIRE_FALSE(prune::parse_nm_pattern(bad));
  }
}

TEST_CASE("a global threshold prunes the lowest scores of all matrices together") {
  // The first matrix's scores are all below the second's: a 50 % global share takes it all.
  const auto low = torch::rand({4, 8}) * 0.5, high = 0.5 + torch::rand({4, 8}) * 0.5;
  const auto masks = prune::global_share_masks({low, high}, 0.5);
  REQUIRE((masks[0] == 0).all().item<bool>());
  REQUIRE((masks[1] == 1).all().item<bool>());
  const auto some = prune::global_share_masks({low, high}, 0.25);
  REQUIRE((some[0] == 0).sum().item<int64_t>() + (some[1] == 0).sum().item<int64_t>() == 16);
}

TEST_CASE("Wanda ranks weights by |W| times the input norm within each row") {
  // Input norms sqrt([9, 1, 0.25, 4]) = [3, 1, 0.5, 2].
  // Row 0: |W| = [1, 2, 3, 0.5] -> scores [3, 2, 1.5, 1]: Wanda drops inputs 3 and 2, where
  //        magnitude would drop inputs 3 and 0 (the weight 3 on a quiet input goes first).
  // Row 1: |W| = [4, 1, 1, 2] -> scores [12, 1, 0.5, 4]: drops inputs 2 and 1.
  const auto weight = torch::tensor({{1.f, -2.f, 3.f, 0.5f}, {4.f, 1.f, -1.f, 2.f}});
  const auto input_sq = torch::tensor({9.0, 1.0, 0.25, 4.0}, torch::kFloat64);
  const auto scores = prune::wanda_scores(weight, input_sq);
  REQUIRE(torch::allclose(scores, torch::tensor({{3.f, 2.f, 1.5f, 1.f}, {12.f, 1.f, 0.5f, 4.f}})));
  const auto wanda = prune::lowest_share_mask(scores, 0.5, true);
  REQUIRE(torch::equal(wanda, torch::tensor({{1.f, 1.f, 0.f, 0.f}, {1.f, 0.f, 0.f, 1.f}})));
  const auto magnitude = prune::lowest_share_mask(prune::magnitude_scores(weight), 0.5, true);
  REQUIRE(torch::equal(magnitude, torch::tensor({{0.f, 1.f, 1.f, 0.f}, {1.f, 0.f, 0.f, 1.f}})));
}

TEST_CASE("the calibration pass sums each linear layer's squared inputs") {
  torch::manual_seed(5);
  model::LlamaModel net(prunable_config());
  net->eval();
  const auto windows = random_windows(6, 16, 256, 6);
  // Chunks of 4 windows: the sums must not depend on how the windows are split, beyond float32
  // rounding (BLAS blocks a batch of 4 and of 6 differently: ~1e-6 relative after two matmuls).
  constexpr double kTol = 1e-4;
  const auto stats = prune::calibrate_blocks(*net, windows, 4);
  REQUIRE(stats.size() == 3);
  torch::NoGradGuard no_grad;
  const auto context = net->block_context(16, torch::Device(torch::kCPU));
  auto x = net->token_embd(windows);
  for (int b = 0; b < 3; ++b) {
    auto& block = *net->blk[b]->as<model::LlamaBlockImpl>();
    const auto trace = block.trace(x, context.cos, context.sin, context.mask);
    const auto expect = [](const torch::Tensor& t) {
      return t.to(torch::kFloat64).square().sum(torch::IntArrayRef{0, 1});
    };
    REQUIRE(torch::allclose(stats[b].input_of("attn_k"), expect(trace.attn_in), kTol));
    REQUIRE(torch::allclose(stats[b].input_of("attn_output"), expect(trace.context), kTol));
    REQUIRE(torch::allclose(stats[b].input_of("ffn_up"), expect(trace.ffn_in), kTol));
    REQUIRE(torch::allclose(stats[b].input_of("ffn_down"), expect(trace.ffn_hidden), kTol));
    REQUIRE(stats[b].tokens == 6 * 16);
    // The block's influence, from the same input and output (1 - cos per token, averaged; the
    // chunked outputs differ by float32 rounding as above).
    REQUIRE(stats[b].influence ==
            Approx(model::influence_sum(x, trace.out) / (6 * 16)).epsilon(kTol));
    x = trace.out;
  }
}

TEST_CASE("structured removal gives the outputs of masking the same units in the original") {
  const auto config = prunable_config();
  torch::manual_seed(7);
  model::LlamaModel net(config);
  net->eval();
  const auto windows = random_windows(8, 24, config.vocab_size, 8);
  prune::StructuredOptions options;
  options.heads = 0.5;  // one of the two GQA groups per block
  options.ffn = 0.25;   // 128 -> 96 channels
  options.layers = 1;
  const auto plan = plan_for(*net, windows, options);
  const auto& influence = plan.influence;
  REQUIRE(plan.config.n_kv_heads == 1);
  REQUIRE(plan.config.n_heads == 2);
  REQUIRE(plan.config.head_dim() == 32);
  REQUIRE(plan.config.ffn_dim == 96);
  REQUIRE(plan.config.n_layers == 2);
  REQUIRE(plan.removed_layers.size() == 1);
  // The removed block is the one of least influence; kept groups and channels the most important.
  const int removed = plan.removed_layers[0];
  REQUIRE(influence[removed] == *std::min_element(influence.begin(), influence.end()));
  for (int b = 0; b < 3; ++b) {
    const auto& g = plan.group_importance[b];
    REQUIRE(g[plan.kept_groups[b][0]] == std::max(g[0], g[1]));
    const auto kept = torch::tensor(plan.kept_channels[b], torch::kInt64);
    const auto& importance = plan.channel_importance[b];
    auto dropped = torch::ones({config.ffn_dim}, torch::kBool);
    dropped.index_fill_(0, kept, false);
    REQUIRE(importance.index_select(0, kept).min().item<double>() >=
            importance.masked_select(dropped).max().item<double>());
  }

  auto small = prune::shrink_model(*net, plan);
  small->eval();
  // The original with the same units masked: the removed groups' heads and the removed channels
  // contribute nothing (their attn_output and ffn_down columns are zero), the removed block is
  // skipped.
  torch::NoGradGuard no_grad;
  const int64_t head_dim = config.head_dim();
  for (int b = 0; b < 3; ++b) {
    auto& block = *net->blk[b]->as<model::LlamaBlockImpl>();
    for (int64_t group = 0; group < 2; ++group) {
      if (group == plan.kept_groups[b][0]) continue;
      block.attn_output->weight.narrow(1, group * 2 * head_dim, 2 * head_dim).zero_();
    }
    auto keep = torch::zeros({config.ffn_dim});
    keep.index_fill_(0, torch::tensor(plan.kept_channels[b], torch::kInt64), 1.0);
    block.ffn_down->weight.mul_(keep.unsqueeze(0));
  }
  model::ForwardOptions skip;
  skip.block_scales = {1.0, 1.0, 1.0};
  skip.block_scales[removed] = 0.0;
  const auto tokens = windows.narrow(0, 0, 4);
  const auto masked = net->forward(tokens, skip).logits;
  const auto shrunk = small->forward(tokens).logits;
  REQUIRE(max_relative_error(shrunk, masked) <= 1e-5);
  // The pruned model is really smaller.
  int64_t before = 0, after = 0;
  for (const auto& p : net->parameters()) before += p.numel();
  for (const auto& p : small->parameters()) after += p.numel();
  REQUIRE(after == model::count_parameters(plan.config).total);
  REQUIRE(after < before);
}

TEST_CASE("a parameter share solves for the widest FFN that meets it") {
  const auto config = prunable_config();
  std::vector<prune::BlockActivations> stats(3);
  for (size_t b = 0; b < stats.size(); ++b) {
    stats[b].context = torch::rand({128}, torch::kFloat64);
    stats[b].ffn_hidden = torch::rand({128}, torch::kFloat64);
    stats[b].influence = 0.3 - 0.1 * static_cast<double>(b);
  }
  prune::StructuredOptions options;
  options.params = 0.15;
  const auto plan = prune::plan_structured(config, stats, options);
  const double budget = 0.85 * static_cast<double>(model::count_parameters(config).total);
  REQUIRE(model::count_parameters(plan.config).total <= budget);
  auto wider = plan.config;
  wider.ffn_dim += 32;
  REQUIRE(static_cast<double>(model::count_parameters(wider).total) > budget);
  // Out-of-range targets are input errors naming the option.
  options.params = 0.99;
  REQUIRE_THROWS_WITH(prune::plan_structured(config, stats, options), Catch::Contains("--params"));
  options = {};
  options.heads = 0.2;  // less than half of one of the two groups
  REQUIRE_THROWS_WITH(prune::plan_structured(config, stats, options), Catch::Contains("GQA group"));
  options.heads = 1.0;
  REQUIRE_THROWS_WITH(prune::plan_structured(config, stats, options),
                      Catch::Contains("keep at least one"));
}

TEST_CASE("a pruned model exports to GGUF and runs in the runtime with LibTorch's logits") {
  const auto config = prunable_config();
  torch::manual_seed(9);
  model::LlamaModel net(config);
  net->eval();
  const auto windows = random_windows(4, 24, config.vocab_size, 10);
  prune::StructuredOptions options;
  options.heads = 0.5;
  options.ffn = 0.25;
  const auto plan = plan_for(*net, windows, options);
  auto small = prune::shrink_model(*net, plan);
  small->eval();
  // Heads narrower than dim / n_heads: the export must say so (llama.attention.key_length).
  REQUIRE(plan.config.head_dim() * plan.config.n_heads != plan.config.dim);

  test::TempDir dir;
  const data::ByteTokenizer tokenizer;
  data::save_tokenizer(tokenizer, dir.path() / "data" / "tokenizer");
  model::CheckpointMeta meta;
  meta.config.llama = small->config();
  meta.tokenizer_hash = tokenizer.hash();
  meta.data_dir = dir.path() / "data";
  model::save_model(dir.path() / "model", *small, meta);
  // The checkpoint reloads with its explicit head width.
  const auto reloaded = model::load_model(dir.path() / "model");
  REQUIRE(reloaded.meta.config.llama.head_dim() == 32);

  quant::GgufExportOptions export_options;
  export_options.type = io::GgmlType::f32;
  const fs::path gguf = dir.path() / "pruned.gguf";
  quant::export_llama_gguf(dir.path() / "model", export_options, gguf);
  const runtime::LlamaModel model(gguf);
  REQUIRE(model.hparams().head_dim == 32);
  REQUIRE(model.hparams().n_heads == 2);
  REQUIRE(model.hparams().ffn_dim == 96);
  runtime::ThreadPool pool(2);
  runtime::LlamaSession session(model, pool, 64, 64);
  const auto tokens = windows[0];
  std::vector<int32_t> ids(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + 24);
  const float* logits = session.forward(ids.data(), 24, true);
  torch::NoGradGuard no_grad;
  const auto ref = small->forward(tokens.unsqueeze(0)).logits.squeeze(0).contiguous();
  const auto got = torch::from_blob(const_cast<float*>(logits), ref.sizes(), torch::kFloat32);
  // The F32 export's tolerance (test_runtime_model.cpp: summation order only).
  REQUIRE(max_relative_error(got, ref) < 1e-4);
}

TEST_CASE("a masked student keeps its pruned weights at zero through distillation") {
  const auto teacher = distill::tiny_teacher();
  test::TempDir dir;
  // Prune the teacher 50 % by magnitude and save it with its masks, as `prune` does.
  auto loaded = model::load_model(teacher / "final");
  auto& net = dynamic_cast<model::LlamaModelImpl&>(*loaded.module);
  prune::UnstructuredOptions options;
  options.method = "magnitude";
  options.sparsity = 0.5;
  const auto pruned = prune::prune_unstructured(net, {}, options);
  REQUIRE(pruned.masks.size() == 2 * 7);
  for (const auto& layer : pruned.layers) REQUIRE(layer.zeros * 2 == layer.weights);
  model::save_model(dir.path() / "pruned", net, loaded.meta, pruned.masks);
  REQUIRE(fs::exists(dir.path() / "pruned" / model::kMaskFileName));

  auto recipe = distill::tiny_distill_recipe(dir.path(), teacher);
  recipe.student.init = "checkpoint";
  recipe.student.from = (dir.path() / "pruned").string();
  recipe.base.train.steps = 8;
  auto setup = distill::prepare_distillation(recipe, dir.path() / "cache");
  // The student takes the checkpoint's shape, not the recipe's.
  REQUIRE(setup.recipe.base.model.llama.dim == net.config().dim);
  REQUIRE(distill::train_distill(setup, dir.path() / "heal").finished);

  const auto healed = model::load_model(dir.path() / "heal" / "final");
  REQUIRE(healed.masks.size() == pruned.masks.size());
  const auto after = healed.module->named_parameters();
  const auto before = net.named_parameters();
  for (const auto& [name, mask] : pruned.masks) {
    INFO(name);
    const auto& weight = after[name];
    REQUIRE((weight.masked_select(mask == 0) == 0).all().item<bool>());
    REQUIRE(torch::equal(healed.masks.at(name), mask));
    // The kept weights did train.
    REQUIRE_FALSE(
        torch::equal(weight.masked_select(mask == 1), before[name].masked_select(mask == 1)));
  }
}

TEST_CASE("a mask that does not fit its model is a file error naming it") {
  test::TempDir dir;
  const auto config = prunable_config();
  model::LlamaModel net(config);
  model::CheckpointMeta meta;
  meta.config.llama = config;
  model::WeightMasks masks;
  masks["blk.0.attn_q.weight"] = torch::ones({3, 3});
  model::save_model(dir.path(), *net, meta, masks);
  REQUIRE_THROWS_WITH(model::load_model(dir.path()), Catch::Contains("mask.safetensors") &&
                                                         Catch::Contains("blk.0.attn_q.weight"));
  masks.clear();
  masks["blk.0.attn_q.weight"] = torch::full({128, 128}, 2.0);
  model::save_model(dir.path(), *net, meta, masks);
  REQUIRE_THROWS_WITH(model::load_model(dir.path()), Catch::Contains("other than 0 and 1"));
  // Saving without masks removes the stale file.
  model::save_model(dir.path(), *net, meta);
  REQUIRE_FALSE(fs::exists(dir.path() / model::kMaskFileName));
  REQUIRE(model::load_model(dir.path()).masks.empty());
}
