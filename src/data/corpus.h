// The corpus: documents from the configured sources, each with a stable human-readable id.
//
// A document's text never holds a blank line (runs of newlines become one newline, and it has no
// leading or trailing newline), so a corpus file can hold documents separated by one blank line
// and be split back exactly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace edgedistill::data {

namespace fs = std::filesystem;

struct DataConfig;
struct SourceConfig;

struct Document {
  std::string id;    // "kjv:Genesis 1:1-8", "wordnet:noun:00001740", "text_file:notes.txt:12"
  std::string text;  // UTF-8, no blank lines, no leading or trailing newline
};

// Line ends become "\n" (from "\r\n" or "\r"), runs of newlines become one, leading and trailing
// newlines go. Other whitespace is kept: it is part of the text the tokenizer must reproduce.
std::string normalize_document_text(std::string_view text);

// The documents of one source, in the source's order. Errors name the source and the fix (e.g.
// the Debian package to install).
std::vector<Document> read_source_documents(const SourceConfig& source);

// The documents of all sources of a text config, concatenated in order, truncated to
// max_documents when that is set. Documents whose text is empty after normalization are dropped.
// Shows a progress line per source.
std::vector<Document> build_corpus(const DataConfig& config);

// Writes the texts separated by one blank line ("a\n\nb\n"), atomically.
void write_corpus_file(const fs::path& path, const std::vector<const Document*>& documents);

// Splits a corpus file written by write_corpus_file back into texts.
std::vector<std::string> read_corpus_file(const fs::path& path);

// The non-empty lines of the documents: what a SentencePiece trainer reads as sentences.
int64_t count_nonempty_lines(const std::vector<std::string>& documents);

}  // namespace edgedistill::data
