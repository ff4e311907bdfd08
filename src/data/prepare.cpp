#include "data/prepare.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/threads.h"
#include "core/version.h"
#include "data/corpus.h"
#include "data/data_tool.h"
#include "data/idx.h"
#include "data/sentencepiece_backend.h"
#include "data/split.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace edgedistill::data {
namespace {

using ordered_json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void write_ordered_json(const fs::path& path, const ordered_json& value) {
  core::write_file_atomic(path, value.dump(2) + "\n");
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "host";
  return name;
}

// Staging directories are ".<target name>.staging-<host>-<pid>-<n>" beside the target.
std::string staging_prefix(const fs::path& target) {
  return str(".", target.filename().string(), ".staging-", host_name(), "-");
}

// Removes staging directories that runs on this host left behind when they were killed (their
// process no longer exists). Those of live processes (concurrent preparers) are left alone.
void remove_abandoned_staging(const fs::path& target) {
  const fs::path parent = target.parent_path();
  const std::string prefix = staging_prefix(target);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    core::debug("removing the abandoned staging directory ", entry.path().string());
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

// A directory being built; removed on destruction unless it was moved into place.
class StagingDirectory {
 public:
  explicit StagingDirectory(const fs::path& target) {
    core::create_directories(target.parent_path(), "data directory");
    remove_abandoned_staging(target);
    static std::atomic<int> counter{0};
    path_ = target.parent_path() / str(staging_prefix(target), ::getpid(), "-", counter++);
    std::error_code ignored;
    fs::remove_all(path_, ignored);
    core::create_directories(path_, "staging directory");
  }
  ~StagingDirectory() {
    if (path_.empty()) return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;

  const fs::path& path() const { return path_; }
  // The directory was renamed into place: nothing to remove.
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

// Encoded documents of one split: <s> tokens </s> per document, in split order.
struct EncodedSplit {
  std::vector<int32_t> tokens;
  int64_t documents = 0;
  int64_t bytes = 0;
};

// Encodes the documents on all cores and checks that each decodes back to its text (the shards
// must hold the corpus exactly). Throws InputError naming a document that does not round-trip
// with a tokenizer that should keep every text; for one that normalizes, counts the documents
// whose text it changes into `changed_documents`.
std::vector<std::vector<int32_t>> encode_documents(const Tokenizer& tokenizer,
                                                   const std::vector<Document>& corpus,
                                                   int64_t& changed_documents) {
  std::vector<std::vector<int32_t>> encoded(corpus.size());
  std::atomic<int64_t> changed{0};
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  // Small batches keep the cores busy to the end; large enough that the counter is not contended.
  constexpr size_t kBatch = 64;
  auto work = [&] {
    try {
      while (true) {
        const size_t start = next.fetch_add(kBatch);
        if (start >= corpus.size()) return;
        const size_t end = std::min(corpus.size(), start + kBatch);
        for (size_t i = start; i < end; ++i) {
          encoded[i] = tokenizer.encode(corpus[i].text);
          // A tokenizer that keeps every text must give it back exactly; one that normalizes
          // (NFC, NFKC, extra spaces) or loses characters is only counted.
          if (tokenizer.decode(encoded[i]) != corpus[i].text) {
            if (tokenizer.round_trips()) {
              throw InputError(
                  str("document ", corpus[i].id, " does not decode back to its text with the ",
                      tokenizer.description(), "; report this with the document's text"));
            }
            changed.fetch_add(1);
          }
        }
        done.fetch_add(static_cast<int64_t>(end - start));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next.store(corpus.size());
    }
  };
  const int threads = core::available_cores();
  core::Progress progress("encoding", static_cast<int64_t>(corpus.size()), "documents");
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) workers.emplace_back(work);
  // This thread only draws the progress line.
  while (done.load() < static_cast<int64_t>(corpus.size())) {
    {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (failure) break;
    }
    progress.update(done.load());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& worker : workers) worker.join();
  if (failure) std::rethrow_exception(failure);
  progress.finish(done.load());
  changed_documents = changed.load();
  return encoded;
}

// Documents framed as their tokenizer's family frames texts: BOS (when it starts sequences with
// one), the tokens, EOS (when it has one).
EncodedSplit assemble_split(const std::vector<int64_t>& indices,
                            const std::vector<Document>& corpus,
                            const std::vector<std::vector<int32_t>>& encoded,
                            const Tokenizer& tokenizer) {
  EncodedSplit split;
  const int32_t bos = tokenizer.frames_with_bos() ? tokenizer.bos_id() : -1;
  const int32_t eos = tokenizer.eos_id();
  size_t total = 0;
  for (const int64_t i : indices) total += encoded[static_cast<size_t>(i)].size() + 2;
  split.tokens.reserve(total);
  for (const int64_t i : indices) {
    const auto& ids = encoded[static_cast<size_t>(i)];
    if (bos >= 0) split.tokens.push_back(bos);
    split.tokens.insert(split.tokens.end(), ids.begin(), ids.end());
    if (eos >= 0) split.tokens.push_back(eos);
    split.bytes += static_cast<int64_t>(corpus[static_cast<size_t>(i)].text.size());
  }
  split.documents = static_cast<int64_t>(indices.size());
  return split;
}

// Documents per source kind ("kjv", "wordnet", "text_file"), from the id prefixes.
ordered_json count_sources(const std::vector<Document>& corpus,
                           const std::vector<int64_t>* indices = nullptr) {
  std::map<std::string, int64_t> counts;
  auto count = [&](const Document& document) {
    counts[document.id.substr(0, document.id.find(':'))]++;
  };
  if (indices == nullptr) {
    for (const auto& document : corpus) count(document);
  } else {
    for (const int64_t i : *indices) count(corpus[static_cast<size_t>(i)]);
  }
  ordered_json out = ordered_json::object();
  for (const auto& [kind, n] : counts) out[kind] = n;
  return out;
}

ordered_json data_json_header(const DataConfig& config, const std::string& kind) {
  return ordered_json{
      {"format", kDataFormat},
      {"version", kDataFormatVersion},
      {"kind", kind},
      {"name", config.name},
      {"config_hash", data_config_hash(config)},
      {"edgedistill_version", kVersion},
      {"config", core::to_json(config)},
  };
}

void build_text_data(const DataConfig& config, const fs::path& dir) {
  const auto start = Clock::now();
  const std::vector<Document> corpus = build_corpus(config);
  if (corpus.empty()) {
    throw InputError(
        str("data '", config.name, "': the sources gave no documents; check the sources section"));
  }
  const DocumentSplit split = split_documents(static_cast<int64_t>(corpus.size()), config.split);
  if (split.train.empty()) {
    throw InputError(str("data '", config.name, "': ", corpus.size(),
                         " documents leave none for training; add documents or lower split.valid "
                         "and split.test"));
  }
  const fs::path corpus_dir = dir / "corpus";
  core::create_directories(corpus_dir, "corpus directory");
  ordered_json split_ids = ordered_json::object();
  for (const auto& name : kSplitNames) {
    std::vector<const Document*> documents;
    ordered_json ids = ordered_json::array();
    for (const int64_t i : split.named(name)) {
      documents.push_back(&corpus[static_cast<size_t>(i)]);
      ids.push_back(corpus[static_cast<size_t>(i)].id);
    }
    write_corpus_file(corpus_dir / (name + ".txt"), documents);
    split_ids[name] = std::move(ids);
  }
  write_ordered_json(corpus_dir / "split.json", split_ids);
  const double extract_s = seconds_since(start);

  const auto tokenizer_start = Clock::now();
  std::vector<std::string> training_texts;
  training_texts.reserve(split.train.size());
  for (const int64_t i : split.train) training_texts.push_back(corpus[static_cast<size_t>(i)].text);
  const std::unique_ptr<Tokenizer> tokenizer =
      config.tokenizer.from.empty() ? train_tokenizer(config.tokenizer, training_texts)
                                    : open_tokenizer(config.tokenizer.from);
  training_texts = {};
  if (!config.tokenizer.from.empty()) {
    core::info("data '", config.name, "': ", tokenizer->description());
  }
  // What we train must export as a GGUF "llama" vocabulary; a pretrained tokenizer keeps its own
  // layout (tok::Vocab::gguf_model says how it exports).
  if (tokenizer->kind() != "pretrained") check_llama_vocab(*tokenizer);
  save_tokenizer(*tokenizer, dir / "tokenizer");
  const double tokenizer_s = seconds_since(tokenizer_start);

  const auto encode_start = Clock::now();
  int64_t changed_documents = 0;
  const auto encoded = encode_documents(*tokenizer, corpus, changed_documents);
  if (changed_documents > 0) {
    core::info("data '", config.name, "': the tokenizer normalizes the text of ",
               core::format_count(changed_documents), " of ",
               core::format_count(static_cast<int64_t>(corpus.size())),
               " documents (its decoded ids differ from the source text)");
  }
  ordered_json splits = ordered_json::object();
  for (const auto& name : kSplitNames) {
    const EncodedSplit tokens = assemble_split(split.named(name), corpus, encoded, *tokenizer);
    const ordered_json sources = count_sources(corpus, &split.named(name));
    write_token_shard(dir / "shards" / (name + ".bin"), tokens.tokens, tokenizer->vocab_size(),
                      tokenizer->hash(),
                      nlohmann::json{{"split", name},
                                     {"documents", tokens.documents},
                                     {"bytes", tokens.bytes},
                                     {"data", config.name},
                                     {"config_hash", data_config_hash(config)},
                                     {"sources", sources}});
    splits[name] = ordered_json{{"documents", tokens.documents},
                                {"bytes", tokens.bytes},
                                {"tokens", static_cast<int64_t>(tokens.tokens.size())}};
  }
  const double encode_s = seconds_since(encode_start);

  ordered_json info = data_json_header(config, "text");
  info["tokenizer"] =
      ordered_json{{"kind", tokenizer->kind()},
                   {"vocab_size", tokenizer->vocab_size()},
                   {"hash", tokenizer->hash()},
                   {"description", tokenizer->description()},
                   {"bos_id", tokenizer->frames_with_bos() ? tokenizer->bos_id() : -1},
                   {"eos_id", tokenizer->eos_id()},
                   {"normalized_documents", changed_documents}};
  info["documents"] = static_cast<int64_t>(corpus.size());
  info["sources"] = count_sources(corpus);
  info["splits"] = splits;
  info["seconds"] =
      ordered_json{{"corpus", extract_s}, {"tokenizer", tokenizer_s}, {"encode", encode_s}};
  // data.json last: its presence marks a complete directory.
  write_ordered_json(dir / kDataJsonName, info);

  const auto& train = splits["train"];
  core::info("data '", config.name, "': ", core::format_count(static_cast<int64_t>(corpus.size())),
             " documents (train ", core::format_count(train["documents"].get<int64_t>()),
             ", valid ", core::format_count(splits["valid"]["documents"].get<int64_t>()), ", test ",
             core::format_count(splits["test"]["documents"].get<int64_t>()), "); ",
             tokenizer->kind(), " tokenizer of ", core::format_count(tokenizer->vocab_size()),
             " pieces; train ", core::format_count(train["tokens"].get<int64_t>()), " tokens (",
             core::format_bytes(train["bytes"].get<uint64_t>()), ")");
}

void build_image_data(const DataConfig& config, const fs::path& dir) {
  const ImageSplits splits = load_image_splits(config);
  ordered_json files = ordered_json::object();
  for (const char* name : {kIdxTrainImages, kIdxTrainLabels, kIdxTestImages, kIdxTestLabels}) {
    files[name] = core::sha256_file_hex(config.images.dir / name);
  }
  ordered_json info = data_json_header(config, "images");
  info["images"] = ordered_json{
      {"format", config.images.format},  {"dir", config.images.dir.string()},
      {"rows", splits.train.rows},       {"cols", splits.train.cols},
      {"classes", splits.train.classes}, {"valid_seed", config.images.seed},
      {"files_sha256", files},
  };
  info["splits"] = ordered_json{{"train", ordered_json{{"images", splits.train.count}}},
                                {"valid", ordered_json{{"images", splits.valid.count}}},
                                {"test", ordered_json{{"images", splits.test.count}}}};
  write_ordered_json(dir / kDataJsonName, info);
  core::info("data '", config.name, "': images ", splits.train.rows, "x", splits.train.cols, ", ",
             splits.train.classes, " classes; train ", core::format_count(splits.train.count),
             ", valid ", core::format_count(splits.valid.count), ", test ",
             core::format_count(splits.test.count));
}

void build_data(const DataConfig& config, const fs::path& dir) {
  if (needs_sentencepiece(config) && sentencepiece_backend() == nullptr) {
    // This program loads LibTorch and cannot load libsentencepiece: edgedistill-data builds the
    // directory instead (sentencepiece_backend.h).
    prepare_data_in_tool(config, dir);
    return;
  }
  if (config.kind == "images") {
    build_image_data(config, dir);
  } else {
    build_text_data(config, dir);
  }
}

}  // namespace

void prepare_data(const DataConfig& config, const fs::path& out_dir) {
  const fs::path target = fs::absolute(out_dir).lexically_normal();
  // The old directory is replaced as a whole: refuse to do that to one we did not make.
  std::error_code ec;
  if (fs::exists(target, ec) && !fs::is_regular_file(target / kDataJsonName, ec) &&
      !(fs::is_directory(target, ec) && fs::is_empty(target, ec))) {
    throw InputError(str("'", target.string(),
                         "' exists and is not a prepared data directory (it has no ", kDataJsonName,
                         "); choose a new or empty output directory"));
  }
  StagingDirectory staging(target);
  build_data(config, staging.path());
  core::replace_directory(staging.path(), target);
  staging.release();
}

fs::path default_cache_root() {
  if (const char* dir = std::getenv("EDGEDISTILL_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    return fs::path(dir);
  }
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir != nullptr && *dir != '\0') {
    return fs::path(dir) / "edgedistill";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / ".cache" / "edgedistill";
  }
  throw InputError("cannot find a cache directory: set EDGEDISTILL_CACHE_DIR (or HOME)");
}

fs::path prepared_data_dir(const DataConfig& config, const fs::path& cache_root) {
  return cache_root / "data" / str(config.name, "-", data_config_hash(config).substr(0, 16));
}

bool is_prepared(const fs::path& dir, const std::string& config_hash) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kDataJsonName, ec)) return false;
  try {
    const nlohmann::json info = core::read_json_file(dir / kDataJsonName, "data description");
    return info.value("format", std::string()) == kDataFormat &&
           info.value("version", 0) == kDataFormatVersion &&
           info.value("config_hash", std::string()) == config_hash;
  } catch (const FileError&) {
    return false;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

fs::path ensure_prepared(const DataConfig& config, const fs::path& cache_root) {
  fs::path target = fs::absolute(prepared_data_dir(config, cache_root)).lexically_normal();
  const std::string hash = data_config_hash(config);
  if (is_prepared(target, hash)) {
    core::info("data '", config.name, "': reusing the prepared data in ", target.string());
    return target;
  }
  core::info("data '", config.name, "': preparing into ", target.string());
  StagingDirectory staging(target);
  build_data(config, staging.path());
  // rename(2) onto an existing non-empty directory fails: a directory another process moved into
  // place meanwhile is kept rather than swapped under its readers.
  if (::rename(staging.path().c_str(), target.c_str()) == 0) {
    staging.release();
    return target;
  }
  if (is_prepared(target, hash)) {
    core::info("data '", config.name, "': another process prepared ", target.string(),
               " meanwhile; keeping it");
    return target;
  }
  // A stale or damaged directory of the same name: replace it.
  core::replace_directory(staging.path(), target);
  staging.release();
  return target;
}

}  // namespace edgedistill::data
