// The `data` section: which corpus to build (or which image set to read), how to split it, and
// which tokenizer to train. Declared once with the core config visitor (core/config.h), so the
// JSON files in configs/data/, `--set data.key=value` and `edgedistill config --keys` all come
// from the declarations below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"

namespace edgedistill::data {

namespace fs = std::filesystem;

// Bumped whenever the prepared layout or the way documents, splits or tokens are produced changes:
// it is part of the cache key (data_config_hash), so old caches are rebuilt, not misread.
inline constexpr int kDataFormatVersion = 1;

// One text source. The keys beside `kind` depend on it.
struct SourceConfig {
  std::string kind = "kjv";
  int verses_per_doc = 8;                                        // kjv
  std::vector<std::string> parts{"noun", "verb", "adj", "adv"};  // wordnet
  bool examples = true;                                          // wordnet
  fs::path path;                                                 // text_file
  std::string unit = "paragraph";                                // text_file

  template <class V>
  void visit(V& v) {
    v.choice("kind", kind, {"kjv", "wordnet", "text_file"},
             "kjv: the King James Bible (package bible-kjv); wordnet: WordNet glosses (package "
             "wordnet-base); text_file: a UTF-8 text file");
    if (kind == "kjv") {
      v.field("verses_per_doc", verses_per_doc, "consecutive verses of one chapter per document");
    }
    if (kind == "wordnet") {
      v.field("parts", parts, "parts of speech to read: any of noun, verb, adj, adv");
      v.field("examples", examples, "keep the quoted example sentences of each gloss");
    }
    if (kind == "text_file") {
      v.field("path", path, "the UTF-8 text file (relative to the config file)");
      v.choice("unit", unit, {"paragraph", "line"},
               "paragraph: documents are separated by blank lines; line: one document per line");
    }
  }
  void validate(const std::string& at) const;
};

// A seeded shuffle of whole documents into valid, test and the rest (train).
struct SplitConfig {
  double valid = 0.05;  // fraction of documents
  double test = 0.05;   // fraction of documents
  int64_t seed = 1234;

  template <class V>
  void visit(V& v) {
    v.field("valid", valid, "fraction of documents held out for validation");
    v.field("test", test, "fraction of documents held out for testing");
    v.field("seed", seed, "seed of the document shuffle");
  }
  void validate(const std::string& at) const;
};

struct TokenizerConfig {
  std::string kind = "sentencepiece";
  std::string model_type = "bpe";
  int vocab_size = 4096;
  double character_coverage = 1.0;
  int64_t max_sentences = 2000000;
  int64_t seed = 1234;
  fs::path from;

  template <class V>
  void visit(V& v) {
    v.field("from", from,
            "use this tokenizer instead of training one: prepared data, a tokenizer directory, a "
            "checkpoint or run, a Hugging Face model folder, a tokenizer.json, a tokenizer.model "
            "or a GGUF file (so a student sees its teacher's token ids); the other keys are then "
            "ignored");
    v.choice("kind", kind, {"sentencepiece", "byte"},
             "sentencepiece: trained on the train split (GGUF 'llama' vocabulary); byte: 256 "
             "byte tokens plus <unk>, <s>, </s>");
    if (kind == "sentencepiece") {
      v.choice("model_type", model_type, {"bpe", "unigram"}, "SentencePiece model type");
      v.field("vocab_size", vocab_size,
              "pieces in the vocabulary, including <unk>, <s>, </s> and the 256 byte pieces");
      v.field("character_coverage", character_coverage,
              "fraction of characters covered by character pieces; the rest fall back to bytes");
      v.field("max_sentences", max_sentences,
              "training lines sampled at most (SentencePiece input_sentence_size)");
      v.field("seed", seed, "seed of SentencePiece's sampling");
    }
  }
  void validate(const std::string& at) const;
};

struct ImagesConfig {
  std::string format = "idx";
  fs::path dir = "/usr/share/datasets/fashion-mnist";
  int valid_count = 5000;
  int64_t seed = 1234;

  template <class V>
  void visit(V& v) {
    v.choice("format", format, {"idx"},
             "idx: gzip IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
             "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz");
    v.field("dir", dir, "directory holding the IDX files");
    v.field("valid_count", valid_count, "training images held out for validation");
    v.field("seed", seed, "seed of the choice of validation images");
  }
  void validate(const std::string& at) const;
};

struct DataConfig {
  std::string name = "kjv";
  std::string kind = "text";
  std::vector<SourceConfig> sources{SourceConfig{}};
  SplitConfig split;
  TokenizerConfig tokenizer;
  int64_t max_documents = 0;
  ImagesConfig images;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "dataset name (names the cache directory)");
    v.choice("kind", kind, {"text", "images"}, "text: corpus and tokenizer; images: an image set");
    if (kind == "text") {
      v.field("sources", sources, "text sources, concatenated in this order");
      v.field("split", split, "document split");
      v.field("tokenizer", tokenizer, "tokenizer");
      v.field("max_documents", max_documents,
              "keep only the first N documents before splitting (0: all)");
    }
    if (kind == "images") v.field("images", images, "image set");
  }
  void validate(const std::string& at) const;
};

// SHA-256 (hex) of the canonical JSON of the config and kDataFormatVersion: the cache key of the
// prepared data. A change in either gives another hash.
std::string data_config_hash(const DataConfig& config);

}  // namespace edgedistill::data
