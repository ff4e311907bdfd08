// The libsentencepiece backend (see sentencepiece_backend.h): only in programs without LibTorch.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/progress.h"
#include "data/corpus.h"
#include "data/data_config.h"
#include "data/sentencepiece_backend.h"

namespace edgedistill::data {
namespace {

// SentencePiece skips training lines longer than this (bytes); its default (4192) would silently
// drop long paragraphs of a text_file corpus.
constexpr int kMaxTrainingLineBytes = 1 << 16;

// SentencePiece's unigram trainer sums expected counts per thread, so its result depends on the
// thread count; a fixed count makes a tokenizer the same on every machine (the data cache key
// assumes it). Four threads keep KJV's BPE training near 1.5 s and WordNet's unigram under a
// minute on two cores.
constexpr int kTrainingThreads = 4;

// SentencePiece's log levels: 0 info, 1 warning, 2 error. Its info lines would interleave with our
// progress line, and every condition it warns about is checked (and reported) by us.
constexpr const char* kSentencePieceLogLevel = "2";

// Feeds the non-empty lines of the documents to the trainer and counts them for the progress line.
class DocumentLineIterator final : public sentencepiece::SentenceIterator {
 public:
  DocumentLineIterator(const std::vector<std::string>& documents, std::atomic<int64_t>& lines_fed)
      : documents_(documents), lines_fed_(lines_fed) {
    advance();
  }

  bool done() const override { return document_ >= documents_.size(); }
  void Next() override {
    lines_fed_.fetch_add(1, std::memory_order_relaxed);
    advance();
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  // Moves to the next non-empty line, across documents.
  void advance() {
    while (document_ < documents_.size()) {
      const std::string& text = documents_[document_];
      if (offset_ > text.size()) {
        ++document_;
        offset_ = 0;
        continue;
      }
      size_t end = text.find('\n', offset_);
      if (end == std::string::npos) end = text.size();
      line_.assign(text, offset_, end - offset_);
      offset_ = end + 1;
      if (!line_.empty()) return;
    }
    line_.clear();
  }

  const std::vector<std::string>& documents_;
  std::atomic<int64_t>& lines_fed_;
  size_t document_ = 0;
  size_t offset_ = 0;  // start of the next line in documents_[document_]
  std::string line_;
};

// SentencePiece's message without its source location and failed condition: it reports
// "./src/trainer_interface.cc(660) [(a) == (b)] Vocabulary size too high (20000). ...".
std::string sentencepiece_reason(const sentencepiece::util::Status& status) {
  std::string message = status.message();
  const size_t location_end = message.find("] ");
  if (location_end != std::string::npos && message.find(".cc(") < location_end) {
    const size_t condition_start = message.find(" [");
    const std::string condition =
        condition_start < location_end
            ? "failed check " +
                  message.substr(condition_start + 2, location_end - condition_start - 2)
            : "failed check";
    message.erase(0, location_end + 2);
    // Some checks carry no text of their own: the condition is all there is to say.
    if (message.find_first_not_of(" .") == std::string::npos) message = condition;
  }
  while (!message.empty() && (message.back() == '.' || message.back() == ' ')) message.pop_back();
  return message;
}

// Redraws a progress line from a second thread while SentencePiece trains (it has no callback):
// lines read so far, then the elapsed time while it merges or prunes pieces.
class TrainingHeartbeat {
 public:
  TrainingHeartbeat(core::Progress& progress, const std::atomic<int64_t>& lines_fed, int64_t total)
      : progress_(progress), lines_fed_(lines_fed), total_(total), thread_([this] { run(); }) {}
  ~TrainingHeartbeat() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stopping_; })) {
      const int64_t fed = lines_fed_.load(std::memory_order_relaxed);
      progress_.update(fed, fed >= total_ ? "building the vocabulary" : "reading lines");
    }
  }

  core::Progress& progress_;
  const std::atomic<int64_t>& lines_fed_;
  int64_t total_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

class LibraryEncoder final : public SentencePieceEncoder {
 public:
  LibraryEncoder(const std::string& model_bytes, const std::string& origin) {
    const auto status = processor_.LoadFromSerializedProto(model_bytes);
    if (!status.ok()) {
      throw FileError(
          str("SentencePiece model ", origin, " cannot be loaded (", sentencepiece_reason(status),
              "): it is corrupt or not a SentencePiece model; re-run `edgedistill data`"));
    }
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) {
      throw InputError(str("SentencePiece cannot encode the text: ", sentencepiece_reason(status)));
    }
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

class LibraryBackend final : public SentencePieceBackend {
 public:
  std::string train(const TokenizerConfig& config,
                    const std::vector<std::string>& documents) const override {
    ED_CHECK(config.kind == "sentencepiece", "kind=", config.kind);
    const int64_t total_lines = count_nonempty_lines(documents);
    if (total_lines == 0) {
      throw InputError(
          "the train split has no text to train a SentencePiece tokenizer on; add "
          "documents or lower split.valid and split.test");
    }
    const std::unordered_map<std::string, std::string> settings = {
        {"model_type", config.model_type},
        {"vocab_size", std::to_string(config.vocab_size)},
        // JSON prints the shortest text that reads back as the same double.
        {"character_coverage", nlohmann::json(config.character_coverage).dump()},
        {"input_sentence_size", std::to_string(config.max_sentences)},
        {"shuffle_input_sentence", "true"},
        {"max_sentence_length", std::to_string(kMaxTrainingLineBytes)},
        {"num_threads", std::to_string(kTrainingThreads)},
        // Special ids as llama.cpp expects them (shared/specs/gguf.md): unk 0, bos 1, eos 2, no
        // pad.
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        // Byte fallback: characters outside the vocabulary become <0xNN> pieces instead of <unk>,
        // so decode(encode(text)) == text for any UTF-8 text.
        {"byte_fallback", "true"},
        // No normalization (NFKC would change the text) and keep every space, for the same reason.
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"split_digits", "true"},
        {"minloglevel", kSentencePieceLogLevel},
    };
    // The seed and the log level are process-wide in SentencePiece: one training at a time.
    static std::mutex training_mutex;
    std::lock_guard<std::mutex> training_lock(training_mutex);
    sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned int>(config.seed));

    std::atomic<int64_t> lines_fed{0};
    DocumentLineIterator lines(documents, lines_fed);
    std::string model_bytes;
    core::Progress progress(str("training tokenizer (SentencePiece ", config.model_type, ", ",
                                core::format_count(config.vocab_size), " pieces)"),
                            total_lines, "lines");
    sentencepiece::util::Status status;
    {
      TrainingHeartbeat heartbeat(progress, lines_fed, total_lines);
      status = sentencepiece::SentencePieceTrainer::Train(settings, &lines, &model_bytes);
    }
    if (!status.ok()) {
      throw InputError(str("SentencePiece could not train a ", config.model_type, " vocabulary of ",
                           config.vocab_size, " pieces on ", core::format_count(total_lines),
                           " lines of the train split: ", sentencepiece_reason(status),
                           "; change tokenizer.vocab_size (or use more text)"));
    }
    progress.finish(lines_fed.load(), str(core::format_count(config.vocab_size), " pieces"));
    return model_bytes;
  }

  std::unique_ptr<SentencePieceEncoder> load_encoder(const std::string& model_bytes,
                                                     const std::string& origin) const override {
    return std::make_unique<LibraryEncoder>(model_bytes, origin);
  }
};

}  // namespace

const SentencePieceBackend& libsentencepiece_backend() {
  static const LibraryBackend backend;
  return backend;
}

}  // namespace edgedistill::data
