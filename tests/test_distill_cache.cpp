// The offline teacher cache (distill/teacher_cache.h): what it stores equals the teacher's top-k
// computed directly, and damaged, foreign or mismatched caches are refused.
#include "torch_catch.h"

#include <cmath>
#include <cstddef>
#include <fstream>
#include <random>

#include "core/files.h"
#include "data/token_shard.h"
#include "distill/teacher.h"
#include "distill/teacher_cache.h"
#include "distill/top_k.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "train/token_windows.h"

using namespace edgedistill;
using namespace edgedistill::distill;
namespace fs = std::filesystem;

namespace {

constexpr int kVocab = 40;
constexpr int64_t kSeqLen = 8;
constexpr int64_t kWindows = 12;
// Extra tokens beyond the last whole window (inputs + its target): not covered.
constexpr int64_t kShardTokens = kWindows * kSeqLen + 5;
const std::string kTokenizerHash(64, 'b');

// Float16 keeps 11 significant bits: rounding to nearest is off by at most 2^-11 relative.
constexpr double kF16RelativeRounding = 1.0 / 2048;
// The cache's forward passes run in batches of another size than the reference's single pass;
// float32 GEMMs may then round differently, by a few ulps of log-probabilities of magnitude ~5.
constexpr double kBatchingNoise = 1e-5;

// A tiny random llama teacher saved as a checkpoint, with peaked (init_std 0.3) distributions so
// that the top-k order has no near ties.
fs::path write_teacher(const fs::path& dir, const std::string& tokenizer_hash, uint64_t seed) {
  torch::manual_seed(seed);
  model::CheckpointMeta meta;
  auto& c = meta.config.llama;
  c.vocab_size = kVocab;
  c.dim = 64;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.ffn_dim = 64;
  c.max_seq_len = 16;
  c.init_std = 0.3;
  meta.tokenizer_hash = tokenizer_hash;
  auto net = model::build_model(meta.config);
  model::save_model(dir, *net, meta);
  return dir;
}

fs::path write_shard(const fs::path& path, int64_t count, const std::string& tokenizer_hash) {
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (auto& token : tokens) token = static_cast<int32_t>(rng() % kVocab);
  data::write_token_shard(path, tokens, kVocab, tokenizer_hash, nlohmann::json::object());
  return path;
}

// A teacher and a shard in a temporary directory, and a cache written from them.
struct CacheFixture {
  test::TempDir dir;
  Teacher teacher =
      load_teacher(write_teacher(dir.path() / "teacher", kTokenizerHash, 21), torch::kCPU);
  data::TokenShard shard{write_shard(dir.path() / "train.bin", kShardTokens, kTokenizerHash)};

  fs::path write(int64_t k, const std::string& name = "cache") {
    write_teacher_cache(teacher, shard, shard.path().string(), kSeqLen, k, /*batch_size=*/5,
                        torch::kCPU, dir.path() / name);
    return dir.path() / name;
  }

  // The teacher's top-k of the given windows, computed in one forward pass: [rows * kSeqLen].
  TopKDistribution reference(const std::vector<int64_t>& windows, int64_t k) const {
    torch::NoGradGuard no_grad;
    const auto inputs =
        train::evaluation_windows(shard, kSeqLen, 0, kWindows).narrow(1, 0, kSeqLen);
    const auto logits = teacher.llama().forward(inputs).logits;  // [kWindows, kSeqLen, V]
    const auto chosen = logits.index_select(0, torch::tensor(windows, torch::kInt64));
    return top_k_distribution(chosen.reshape({-1, kVocab}), k);
  }
};

// A copy of a cache directory to damage.
fs::path copy_cache(const fs::path& cache, const fs::path& to) {
  fs::copy(cache, to, fs::copy_options::recursive);
  return to;
}

}  // namespace

TEST_CASE("a teacher cache returns the teacher's own top-k for the windows it covers") {
  CacheFixture f;
  const int64_t k = 8;
  const fs::path dir = f.write(k);
  const TeacherCache cache(dir);
  const auto& info = cache.info();
  CHECK(info.k == k);
  CHECK(info.vocab_size == kVocab);
  CHECK(info.seq_len == kSeqLen);
  CHECK(info.windows == kWindows);  // (kShardTokens - 1) / kSeqLen
  CHECK(info.positions == kWindows * kSeqLen);
  CHECK(info.id_dtype == "uint16");
  CHECK(info.logprob_dtype == "float16");
  CHECK(info.tail_dtype == "float32");
  CHECK(info.teacher_weights_sha256 == f.teacher.weights_sha256);
  CHECK(info.tokenizer_hash == kTokenizerHash);
  CHECK(info.source_tokenizer_hash == kTokenizerHash);
  CHECK(info.source_tokens == kShardTokens);
  CHECK(info.source_shard == f.shard.path().string());
  CHECK(fs::equivalent(info.teacher_dir, f.teacher.dir));
  CHECK(info.file_bytes == fs::file_size(dir / kTeacherCacheBinName));

  // Windows in any order, the first and the last included.
  const std::vector<int64_t> windows = {2, 0, kWindows - 1};
  std::vector<int64_t> starts;
  for (int64_t w : windows) starts.push_back(w * kSeqLen);
  const auto got = cache.lookup(starts, kSeqLen);
  const auto expected = f.reference(windows, k);
  REQUIRE(got.ids.sizes() == torch::IntArrayRef({3 * kSeqLen, k}));
  REQUIRE(got.logprobs.sizes() == torch::IntArrayRef({3 * kSeqLen, k}));
  REQUIRE(got.tail.sizes() == torch::IntArrayRef({3 * kSeqLen}));
  CHECK(got.vocab_size == kVocab);
  CHECK(got.ids.scalar_type() == torch::kInt64);
  CHECK(got.logprobs.scalar_type() == torch::kFloat32);
  CHECK(torch::equal(got.ids, expected.ids));
  const auto logprob_error = (got.logprobs - expected.logprobs).abs();
  const auto logprob_limit = expected.logprobs.abs() * kF16RelativeRounding + kBatchingNoise;
  CHECK((logprob_error <= logprob_limit).all().item<bool>());
  // The tail is stored as float32: only the batching noise, relative to a mass <= 1.
  CHECK((got.tail - expected.tail).abs().max().item<double>() <= kBatchingNoise);
  CHECK(got.tail.min().item<double>() > 0.0);
}

TEST_CASE("a teacher cache with k = V has a zero tail and every id in each row") {
  CacheFixture f;
  const TeacherCache cache(f.write(kVocab));
  const auto got = cache.lookup({kSeqLen}, kSeqLen);
  CHECK(got.tail.abs().max().item<double>() == 0.0);
  const auto sorted = std::get<0>(got.ids.sort(1));
  CHECK(torch::equal(sorted, torch::arange(kVocab).expand({kSeqLen, kVocab})));
  // The probabilities then sum to 1 up to float16 rounding: a relative error e in log p changes
  // p by p |log p| e, and sum p |log p| (the entropy) is at most log V.
  const auto total = got.logprobs.exp().sum(1);
  const double limit = std::log(static_cast<double>(kVocab)) * kF16RelativeRounding + 1e-6;
  CHECK(((total - 1).abs() <= limit).all().item<bool>());
}

TEST_CASE("writing a teacher cache refuses bad k, another tokenizer and foreign directories") {
  CacheFixture f;
  auto write = [&](const data::TokenShard& shard, int64_t k, const fs::path& out) {
    write_teacher_cache(f.teacher, shard, shard.path().string(), kSeqLen, k, 4, torch::kCPU, out);
  };
  CHECK_THROWS_AS(write(f.shard, 0, f.dir.path() / "c"), InputError);
  CHECK_THROWS_WITH(write(f.shard, kVocab + 1, f.dir.path() / "c"),
                    Catch::Contains("outside [1, 40]"));
  const std::string other_hash(64, 'c');
  const data::TokenShard other(write_shard(f.dir.path() / "other.bin", kShardTokens, other_hash));
  CHECK_THROWS_WITH(write(other, 4, f.dir.path() / "c"),
                    Catch::Contains("cccccccccccc") && Catch::Contains("bbbbbbbbbbbb"));
  CHECK_FALSE(fs::exists(f.dir.path() / "c"));
  // A directory of other files is not replaced.
  core::write_file_atomic(f.dir.path() / "mine" / "notes.txt", "keep me\n");
  CHECK_THROWS_WITH(write(f.shard, 4, f.dir.path() / "mine"), Catch::Contains("new or empty"));
  CHECK(fs::exists(f.dir.path() / "mine" / "notes.txt"));
  // A cache is replaced whole, and no staging directory is left beside it.
  f.write(4);
  f.write(6);
  CHECK(TeacherCache(f.dir.path() / "cache").info().k == 6);
  for (const auto& entry : fs::directory_iterator(f.dir.path())) {
    CHECK(entry.path().filename().string().find("staging") == std::string::npos);
  }
}

TEST_CASE("a truncated, foreign, newer or mixed teacher cache is refused with a FileError") {
  CacheFixture f;
  const fs::path good = f.write(4);
  const fs::path tmp = f.dir.path();

  const fs::path truncated = copy_cache(good, tmp / "truncated");
  fs::resize_file(truncated / kTeacherCacheBinName,
                  fs::file_size(truncated / kTeacherCacheBinName) - 3);
  CHECK_THROWS_AS(TeacherCache(truncated), FileError);
  CHECK_THROWS_WITH(TeacherCache(truncated), Catch::Contains("is truncated") &&
                                                 Catch::Contains("topk.bin") &&
                                                 Catch::Contains("edgedistill teacher-cache"));

  const fs::path header_only = copy_cache(good, tmp / "header-only");
  fs::resize_file(header_only / kTeacherCacheBinName, 40);
  CHECK_THROWS_WITH(TeacherCache(header_only), Catch::Contains("is truncated"));

  const fs::path foreign = copy_cache(good, tmp / "foreign");
  core::write_file_atomic(foreign / kTeacherCacheBinName, std::string(500, 'x'));
  CHECK_THROWS_AS(TeacherCache(foreign), FileError);
  CHECK_THROWS_WITH(TeacherCache(foreign), Catch::Contains("not an edgedistill teacher cache"));

  // A token shard renamed to topk.bin is foreign too.
  const fs::path shard_copy = copy_cache(good, tmp / "shard");
  fs::copy_file(f.shard.path(), shard_copy / kTeacherCacheBinName,
                fs::copy_options::overwrite_existing);
  CHECK_THROWS_WITH(TeacherCache(shard_copy), Catch::Contains("not an edgedistill teacher cache"));

  const fs::path newer = copy_cache(good, tmp / "newer");
  {
    std::fstream file(newer / kTeacherCacheBinName,
                      std::ios::in | std::ios::out | std::ios::binary);
    const uint32_t version = kTeacherCacheVersion + 1;
    file.seekp(offsetof(TeacherCacheHeader, version));
    file.write(reinterpret_cast<const char*>(&version), sizeof version);
  }
  CHECK_THROWS_WITH(TeacherCache(newer), Catch::Contains("upgrade edgedistill"));

  // The sidecar of another cache beside this binary.
  const fs::path mixed = copy_cache(good, tmp / "mixed");
  auto sidecar = core::read_json_file(mixed / kTeacherCacheJsonName, "sidecar");
  sidecar["k"] = 5;
  core::write_json_atomic(mixed / kTeacherCacheJsonName, sidecar);
  CHECK_THROWS_AS(TeacherCache(mixed), FileError);
  CHECK_THROWS_WITH(TeacherCache(mixed), Catch::Contains("disagree on k"));

  const fs::path no_sidecar = copy_cache(good, tmp / "no-sidecar");
  fs::remove(no_sidecar / kTeacherCacheJsonName);
  CHECK_THROWS_AS(TeacherCache(no_sidecar), FileError);
  CHECK_THROWS_AS(TeacherCache(tmp / "missing"), FileError);
}

TEST_CASE("a teacher cache's require_match names the field that differs from the run") {
  CacheFixture f;
  const TeacherCache cache(f.write(4));
  const std::string weights = f.teacher.weights_sha256;
  CHECK_NOTHROW(cache.require_match(weights, kTokenizerHash, kSeqLen, kShardTokens));
  const std::string other(64, 'd');
  CHECK_THROWS_AS(cache.require_match(other, kTokenizerHash, kSeqLen, kShardTokens), InputError);
  CHECK_THROWS_WITH(cache.require_match(other, kTokenizerHash, kSeqLen, kShardTokens),
                    Catch::Contains("other teacher weights") && Catch::Contains("--teacher"));
  CHECK_THROWS_WITH(cache.require_match(weights, other, kSeqLen, kShardTokens),
                    Catch::Contains("tokenizer dddddddddddd"));
  CHECK_THROWS_WITH(cache.require_match(weights, kTokenizerHash, 2 * kSeqLen, kShardTokens),
                    Catch::Contains("seq_len 8") && Catch::Contains("--seq-len 16"));
  CHECK_THROWS_WITH(cache.require_match(weights, kTokenizerHash, kSeqLen, kShardTokens + 1),
                    Catch::Contains("source shard of 101 tokens"));
}

TEST_CASE("lookup refuses windows the cache does not cover") {
  CacheFixture f;
  const TeacherCache cache(f.write(4));
  CHECK_THROWS_AS(cache.lookup({3}, kSeqLen), InputError);
  CHECK_THROWS_WITH(cache.lookup({0, kSeqLen + 3}, kSeqLen), Catch::Contains("offset 0"));
  CHECK_THROWS_WITH(cache.lookup({-kSeqLen}, kSeqLen), Catch::Contains("offset 0"));
  CHECK_THROWS_WITH(cache.lookup({kWindows * kSeqLen}, kSeqLen), Catch::Contains("beyond"));
  CHECK_THROWS_WITH(cache.lookup({0}, 2 * kSeqLen), Catch::Contains("seq_len 8"));
  CHECK(cache.lookup({}, kSeqLen).rows() == 0);
}

TEST_CASE("a teacher cache stores at most 200 bytes per token at k = 32") {
  // uint16 ids and float16 log-probabilities: 4 bytes per kept token, plus the float32 tail.
  CHECK(teacher_cache_record_bytes(32, 4096) == 132);
  CHECK(teacher_cache_record_bytes(32, 65536) == 132);
  // Beyond 65,536 pieces the ids are uint32: 6 bytes per kept token.
  CHECK(teacher_cache_record_bytes(32, 65537) == 196);
  CHECK(teacher_cache_record_bytes(32, 65537) <= 200);
  // A written cache is the 128-byte header plus one record per position.
  CacheFixture f;
  const TeacherCache cache(f.write(32));
  const auto& info = cache.info();
  CHECK(info.record_bytes == 132);
  CHECK(info.file_bytes == sizeof(TeacherCacheHeader) + 132 * info.positions);
  CHECK(info.bytes_per_token == Approx(132.0 + 128.0 / static_cast<double>(info.positions)));
  CHECK(info.bytes_per_token <= 200);
}
