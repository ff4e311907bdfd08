// Cross-tokenizer distillation: the ULD loss (distill/uld_loss.h) against a slow obvious version
// and analytic values, its gradient against finite differences, and (below) the alignment of
// student windows with the teacher's tokenizer and distillation end to end across tokenizers.
#include "torch_catch.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/files.h"
#include "data/byte_tokenizer.h"
#include "data/prepare.h"
#include "distill/tokenizer_alignment.h"
#include "distill/uld_loss.h"
#include "distill_fixtures.h"
#include "test_util.h"
#include "tokenizer/bpe_model.h"

using namespace edgedistill;
using namespace edgedistill::distill;
namespace fs = std::filesystem;

namespace {

// float64 throughout; the slow version sums in a different order than torch.
constexpr double kFloat64Tolerance = 1e-12;
// Central differences with h = 1e-6 in float64: truncation O(h^2) and rounding O(eps / h) ~ 1e-10.
constexpr double kFiniteDifferenceTolerance = 1e-6;

double value(const torch::Tensor& t) {
  return t.item<double>();
}

// softmax(row / T) of one row of a [N, V] float64 tensor, in double.
std::vector<double> slow_softmax(const torch::Tensor& logits, int64_t row, double temperature) {
  const auto a = logits.accessor<double, 2>();
  std::vector<double> out(static_cast<size_t>(logits.size(1)));
  double largest = -INFINITY;
  for (int64_t i = 0; i < logits.size(1); ++i) largest = std::max(largest, a[row][i] / temperature);
  double sum = 0;
  for (int64_t i = 0; i < logits.size(1); ++i) {
    out[static_cast<size_t>(i)] = std::exp(a[row][i] / temperature - largest);
    sum += out[static_cast<size_t>(i)];
  }
  for (double& p : out) p /= sum;
  return out;
}

// The slow obvious ULD: per row, both probability vectors sorted descending with std::sort, the
// shorter padded with zeros, the L1 distance; the mean over rows whose mask entry is nonzero.
double slow_uld(const torch::Tensor& student, const torch::Tensor& teacher, double temperature,
                const std::vector<double>& mask = {}) {
  double total = 0, counted = 0;
  for (int64_t r = 0; r < student.size(0); ++r) {
    const double weight = mask.empty() ? 1.0 : mask[static_cast<size_t>(r)];
    auto q = slow_softmax(student, r, temperature);
    auto p = slow_softmax(teacher, r, temperature);
    std::sort(q.begin(), q.end(), std::greater<double>());
    std::sort(p.begin(), p.end(), std::greater<double>());
    const size_t width = std::max(q.size(), p.size());
    q.resize(width, 0.0);
    p.resize(width, 0.0);
    double distance = 0;
    for (size_t i = 0; i < width; ++i) distance += std::abs(q[i] - p[i]);
    total += weight * distance;
    counted += weight;
  }
  return total / std::max(counted, 1.0);
}

// A GPT-2-style byte-level BPE tokenizer.json (ids 0..255 the bytes, then a few merges for the
// tiny corpus, then <|endoftext|>): another tokenizer than the byte one of tiny_teacher(), with a
// larger vocabulary and tokens that span several bytes.
fs::path write_byte_level_bpe(const fs::path& dir) {
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (int byte = 0; byte < 256; ++byte) {
    vocab[tok::byte_level_spelling(std::string(1, static_cast<char>(byte)))] = byte;
  }
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "t"},      {"\u0120", "s"},   {"\u0120s", "at"}, {"\u0120", "c"}, {"\u0120c", "at"},
      {"t", "h"},      {"th", "e"},       {"\u0120", "the"}, {"\u0120", "o"}, {"\u0120o", "n"},
      {"\u0120", "m"}, {"\u0120m", "at"}, {"o", "g"},        {"\u0120", "d"}, {"\u0120d", "og"}};
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [left, right] : merges) {
    if (!vocab.contains(left + right)) vocab[left + right] = static_cast<int>(vocab.size());
    merge_list.push_back(left + " " + right);
  }
  const int end_of_text = static_cast<int>(vocab.size());
  const nlohmann::ordered_json file = {
      {"added_tokens", {{{"id", end_of_text}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
  core::create_directories(dir, "test tokenizer");
  core::write_file_atomic(dir / "tokenizer.json", file.dump(2));
  return dir / "tokenizer.json";
}

std::vector<int64_t> ids64(const std::vector<int32_t>& ids) {
  return {ids.begin(), ids.end()};
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

// The values of `key` in metrics.jsonl, in step order.
std::vector<double> logged(const fs::path& run_dir, const std::string& key) {
  std::vector<double> values;
  std::istringstream lines(core::read_file(run_dir / "metrics.jsonl", "metrics"));
  for (std::string line; std::getline(lines, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.contains(key)) values.push_back(record[key].get<double>());
  }
  return values;
}

}  // namespace

TEST_CASE("ULD matches the slow sorted-probability distance for unequal vocabularies", "[uld]") {
  torch::manual_seed(21);
  for (const auto& [student_vocab, teacher_vocab] :
       {std::pair{13, 8}, std::pair{8, 13}, std::pair{11, 11}}) {
    const auto s = torch::randn({6, student_vocab}, torch::kFloat64) * 2;
    const auto t = torch::randn({6, teacher_vocab}, torch::kFloat64) * 3;
    for (const double temperature : {1.0, 2.5}) {
      INFO("V_s " << student_vocab << ", V_t " << teacher_vocab << ", T " << temperature);
      UldOptions options;
      options.temperature = temperature;
      CHECK(value(uld_loss(s, t, {}, options)) ==
            Approx(slow_uld(s, t, temperature)).margin(kFloat64Tolerance));
      // Rows 1 and 4 masked out.
      const std::vector<double> mask = {1, 0, 1, 1, 0, 1};
      CHECK(value(uld_loss(s, t, torch::tensor(mask, torch::kFloat64), options)) ==
            Approx(slow_uld(s, t, temperature, mask)).margin(kFloat64Tolerance));
      // Chunks of rows change nothing.
      options.chunk_rows = 4;
      CHECK(value(uld_loss(s, t, {}, options)) ==
            Approx(slow_uld(s, t, temperature)).margin(kFloat64Tolerance));
    }
  }
}

TEST_CASE("ULD is 0 between permuted distributions and 2 (1 - 1/V) from uniform to one-hot",
          "[uld]") {
  torch::manual_seed(22);
  const UldOptions options;
  // A permutation of the teacher's logits, plus any constant: the same sorted probabilities.
  const auto teacher = torch::randn({3, 9}, torch::kFloat64);
  const auto permuted = teacher.index_select(1, torch::randperm(9, torch::kInt64)) + 4.0;
  CHECK(std::abs(value(uld_loss(permuted, teacher, {}, options))) < kFloat64Tolerance);
  // Two one-hot distributions, at different tokens of vocabularies of different sizes (e^-1000
  // is 0 in float64).
  auto one_hot = [](int64_t vocab, int64_t hot) {
    auto logits = torch::zeros({1, vocab}, torch::kFloat64);
    logits[0][hot] = 1000.0;
    return logits;
  };
  CHECK(value(uld_loss(one_hot(7, 2), one_hot(12, 9), {}, options)) == 0.0);
  // Uniform over V student tokens against a one-hot teacher over 4 tokens: |1/V - 1| for the top
  // rank, then (V - 1) ranks of 1/V against 0.
  for (const int64_t vocab : {4, 10, 50}) {
    INFO("V " << vocab);
    const auto uniform = torch::zeros({1, vocab}, torch::kFloat64);
    const double expected = 2.0 * (1.0 - 1.0 / static_cast<double>(vocab));
    CHECK(value(uld_loss(uniform, one_hot(4, 1), {}, options)) ==
          Approx(expected).margin(kFloat64Tolerance));
    CHECK(value(uld_loss(one_hot(4, 1), uniform, {}, options)) ==
          Approx(expected).margin(kFloat64Tolerance));
  }
  // No rows: 0.
  CHECK(value(uld_loss(torch::zeros({0, 5}), torch::zeros({0, 3}), {}, options)) == 0.0);
}

TEST_CASE("ULD's gradient through the sort matches central finite differences in float64",
          "[uld]") {
  torch::manual_seed(23);
  const auto mask = torch::tensor({1.0, 0.0, 1.0, 1.0}, torch::kFloat64);
  for (const auto& [student_vocab, teacher_vocab] : {std::pair{9, 5}, std::pair{5, 9}}) {
    const auto teacher = torch::randn({4, teacher_vocab}, torch::kFloat64) * 2;
    const auto start = torch::randn({4, student_vocab}, torch::kFloat64) * 2;
    UldOptions options;
    options.temperature = 1.7;
    auto loss = [&](const torch::Tensor& s) { return uld_loss(s, teacher, mask, options); };
    auto s = start.clone().requires_grad_(true);
    loss(s).backward();
    const auto analytic = s.grad();
    const auto numeric = central_differences(loss, start);
    INFO("V_s " << student_vocab << ", V_t " << teacher_vocab);
    CHECK(torch::allclose(analytic, numeric, 1e-5, kFiniteDifferenceTolerance));
    CHECK(analytic.abs().sum().item<double>() > 1e-3);
    // The masked-out row gets no gradient.
    CHECK(analytic[1].abs().max().item<double>() == 0.0);
  }
}

TEST_CASE("a student window is re-encoded for the teacher with its document boundaries", "[uld]") {
  test::TempDir dir;
  const auto bpe = data::open_tokenizer(write_byte_level_bpe(dir.path() / "bpe"));
  const data::ByteTokenizer bytes;
  const int64_t end_of_text = bpe->eos_id();
  REQUIRE(end_of_text == bpe->vocab_size() - 1);
  REQUIRE(!bpe->frames_with_bos());
  const auto first = ids64(bpe->encode("the cat sat")), second = ids64(bpe->encode(" on the mat"));
  REQUIRE(first.size() < 11);  // the merges apply: fewer tokens than bytes
  // BPE student -> byte teacher: the text of each run, and the byte tokenizer's framing of a
  // document boundary (</s>, then <s>: its documents start with one).
  const auto student = concat({first, {end_of_text}, second});
  const auto expected = concat({ids64(bytes.encode("the cat sat")),
                                {bytes.eos_id()},
                                {bytes.bos_id()},
                                ids64(bytes.encode(" on the mat"))});
  CHECK(retokenize_window(student, *bpe, bytes, 1000) == expected);
  CHECK(retokenize_window(student, *bpe, bytes, 5) ==
        std::vector<int64_t>(expected.begin(), expected.begin() + 5));
  // Byte student -> BPE teacher: <s> has no counterpart (the BPE teacher's documents start with
  // none), </s> becomes <|endoftext|>.
  const auto byte_student = concat({{bytes.bos_id()},
                                    ids64(bytes.encode("the cat sat")),
                                    {bytes.eos_id()},
                                    {bytes.bos_id()},
                                    ids64(bytes.encode(" on the mat"))});
  CHECK(retokenize_window(byte_student, bytes, *bpe, 1000) ==
        concat({first, {end_of_text}, second}));
  // The same tokenizer on both sides gives the window back.
  CHECK(retokenize_window(byte_student, bytes, bytes, 1000) == byte_student);
}

TEST_CASE("aligned positions pair by index up to the shorter sequence of each row", "[uld]") {
  test::TempDir dir;
  const auto bpe = data::open_tokenizer(write_byte_level_bpe(dir.path() / "bpe"));
  const data::ByteTokenizer bytes;
  // Two byte-tokenizer windows of 6 tokens: "the ca" re-encodes to fewer BPE tokens (the, Ġc,
  // a), "xyzxyz" to as many (no merge applies).
  const auto row0 = ids64(bytes.encode("the ca"));
  const auto row1 = ids64(bytes.encode("xyzxyz"));
  auto inputs = torch::tensor(concat({row0, row1}), torch::kInt64).view({2, 6});
  const auto alignment = align_windows(inputs, bytes, *bpe, /*max_len=*/6);
  const auto len0 = static_cast<int64_t>(bpe->encode("the ca").size());
  const auto len1 = static_cast<int64_t>(bpe->encode("xyzxyz").size());
  REQUIRE(len0 < 6);
  REQUIRE(len1 == 6);
  CHECK(alignment.teacher_inputs.sizes() == torch::IntArrayRef({2, 6}));
  CHECK(alignment.teacher_tokens == len0 + len1);
  // Row 0 is padded with id 0 after its tokens.
  CHECK(alignment.teacher_inputs[0].narrow(0, len0, 6 - len0).abs().sum().item<int64_t>() == 0);
  std::vector<int64_t> student_rows, teacher_rows;
  for (int64_t t = 0; t < len0; ++t) student_rows.push_back(t), teacher_rows.push_back(t);
  for (int64_t t = 0; t < len1; ++t) student_rows.push_back(6 + t), teacher_rows.push_back(6 + t);
  CHECK(torch::equal(alignment.student_rows, torch::tensor(student_rows, torch::kInt64)));
  CHECK(torch::equal(alignment.teacher_rows, torch::tensor(teacher_rows, torch::kInt64)));
  // The other way the teacher's byte sequence is longer than the student's window: pairs stop at
  // the window's end.
  const auto window = ids64(bpe->encode("the cat sat"));
  REQUIRE(window.size() == 3);
  const auto back = align_windows(torch::tensor(window, torch::kInt64).view({1, 3}), *bpe, bytes,
                                  /*max_len=*/100);
  CHECK(back.teacher_inputs.size(1) == 11);
  CHECK(torch::equal(back.student_rows, torch::arange(3, torch::kInt64)));
  CHECK(torch::equal(back.teacher_rows, torch::arange(3, torch::kInt64)));
}

TEST_CASE("distilling across tokenizers needs a uld term and then trains the student", "[uld]") {
  test::TempDir dir;
  train::configure_threads(0, false);
  const auto teacher = tiny_teacher();
  auto recipe = tiny_distill_recipe(dir.path(), teacher);
  recipe.base.data.name = "tiny-bpe";
  recipe.base.data.tokenizer.from = write_byte_level_bpe(dir.path() / "bpe");
  recipe.base.train.steps = 30;
  recipe.base.train.log_every = 1;
  const auto teacher_tokenizer = data::open_tokenizer(teacher);
  const auto student_tokenizer = data::open_tokenizer(recipe.base.data.tokenizer.from);
  REQUIRE(teacher_tokenizer->hash() != student_tokenizer->hash());

  // forward_kl needs one vocabulary: refused, naming both tokenizers and the way out.
  try {
    prepare_distillation(recipe, dir.path() / "cache");
    FAIL("distillation across tokenizers without uld was not refused");
  } catch (const InputError& e) {
    const std::string message = e.what();
    CHECK(message.find(teacher_tokenizer->description()) != std::string::npos);
    CHECK(message.find(student_tokenizer->description()) != std::string::npos);
    CHECK(message.find("\"kind\": \"uld\"") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }

  recipe.distill.losses.resize(2);
  recipe.distill.losses[0].kind = "uld";
  recipe.distill.losses[1].kind = "ce";
  core::Validator::validate_config(recipe, "");
  auto setup = prepare_distillation(recipe, dir.path() / "cache");
  REQUIRE(setup.teacher_tokenizer != nullptr);
  const auto before = setup.task->model().parameters()[0].detach().clone();
  REQUIRE(train_distill(setup, dir.path() / "run").finished);
  CHECK(!torch::equal(before, setup.task->model().parameters()[0]));
  const auto uld = logged(dir.path() / "run", "loss_uld");
  REQUIRE(uld.size() >= 10);
  for (const double v : uld) CHECK((std::isfinite(v) && v >= 0 && v <= 2));
  // The student's sorted distribution moves towards the teacher's: the mean of the last five
  // steps is below that of the first five.
  const auto mean = [](auto first, auto last) {
    return std::accumulate(first, last, 0.0) / static_cast<double>(last - first);
  };
  CHECK(mean(uld.end() - 5, uld.end()) < mean(uld.begin(), uld.begin() + 5));
  CHECK(logged(dir.path() / "run", "loss_ce").size() == uld.size());
  // The run reports what the teacher read, and no teacher perplexity on the student's tokens.
  const auto result = core::read_json_file(dir.path() / "run" / "result.json", "result");
  CHECK(result.dump().find("teacher_ppl") == std::string::npos);
  CHECK(result.dump().find("teacher_tokens") != std::string::npos);
}

TEST_CASE("recipes that combine uld with what it cannot feed are refused by name", "[uld]") {
  test::TempDir dir;
  const auto teacher = tiny_teacher();
  auto base = tiny_distill_recipe(dir.path(), teacher);
  base.distill.losses[0].kind = "uld";
  auto fails = [](DistillRecipe recipe, const std::string& message) {
    CHECK_THROWS_WITH(core::Validator::validate_config(recipe, ""), Catch::Contains(message));
  };
  for (const char* kind : {"forward_kl", "hidden", "attention_relation", "contrastive"}) {
    auto recipe = base;
    recipe.distill.losses.resize(2);
    recipe.distill.losses[1].kind = kind;
    fails(recipe, str("distill.losses[1].kind: '", kind, "'"));
  }
  auto queried = base;
  queried.distill.queries.policy = "entropy";
  fails(queried, "distill.queries");
  auto removal = base;
  removal.base.model.llama.n_layers = 2;
  removal.distill.layer_removal.target_layers = 1;
  removal.distill.layer_removal.at_steps = {10};
  removal.distill.layer_removal.criterion = "loss";
  fails(removal, "distill.layer_removal.criterion");
  // What only touches the student combines with uld.
  removal.distill.layer_removal.criterion = "influence";
  removal.distill.layer_drop.enabled = true;
  CHECK_NOTHROW(core::Validator::validate_config(removal, ""));

  // The teacher sources: live only.
  auto cached = base;
  cached.teacher_cache = dir.path() / "topk";
  CHECK_THROWS_WITH(prepare_distillation(cached, dir.path() / "cache"),
                    Catch::Contains("--teacher-cache"));
  cached.teacher.clear();
  CHECK_THROWS_WITH(prepare_distillation(cached, dir.path() / "cache"),
                    Catch::Contains("give --teacher DIR"));
  // Across tokenizers the student cannot copy the teacher's embeddings.
  auto copied = base;
  copied.base.data.name = "tiny-bpe";
  copied.base.data.tokenizer.from = write_byte_level_bpe(dir.path() / "bpe");
  copied.base.model.llama.dim = 64;
  copied.student.init = "teacher-layers";
  copied.student.stride = 2;
  CHECK_THROWS_WITH(prepare_distillation(copied, dir.path() / "cache"),
                    Catch::Contains("teacher-layers"));
}
