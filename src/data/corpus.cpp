#include "data/corpus.h"

#include <unordered_map>

#include "core/error.h"
#include "core/files.h"
#include "data/data_config.h"
#include "data/kjv_source.h"
#include "data/text_file_source.h"
#include "data/wordnet_source.h"

namespace edgedistill::data {

std::string normalize_document_text(std::string_view text) {
  // Pass 1: every line end becomes "\n".
  std::string unified;
  unified.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r') {
      unified.push_back('\n');
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      unified.push_back(text[i]);
    }
  }
  // Pass 2: keep the lines holding more than spaces and tabs, joined by single newlines.
  std::string normalized;
  normalized.reserve(unified.size());
  size_t start = 0;
  while (start <= unified.size()) {
    size_t end = unified.find('\n', start);
    if (end == std::string::npos) end = unified.size();
    const std::string_view line = std::string_view(unified).substr(start, end - start);
    if (line.find_first_not_of(" \t") != std::string_view::npos) {
      if (!normalized.empty()) normalized.push_back('\n');
      normalized += line;
    }
    start = end + 1;
  }
  return normalized;
}

std::vector<Document> read_source_documents(const SourceConfig& source) {
  if (source.kind == "kjv") return group_kjv_verses(read_kjv_verses(), source.verses_per_doc);
  if (source.kind == "wordnet") return read_wordnet_documents(source.parts, source.examples);
  ED_CHECK(source.kind == "text_file", "source kind ", source.kind);
  return read_text_file_documents(source.path, source.unit);
}

std::vector<Document> build_corpus(const DataConfig& config) {
  ED_CHECK(config.kind == "text", "kind=", config.kind);
  std::vector<Document> corpus;
  std::unordered_map<std::string, int> id_uses;
  for (const auto& source : config.sources) {
    for (auto& document : read_source_documents(source)) {
      document.text = normalize_document_text(document.text);
      if (document.text.empty()) continue;
      // Two sources may yield the same id (the same file listed twice, two files of one name):
      // later uses get a suffix so ids stay unique.
      const int use = ++id_uses[document.id];
      if (use > 1) document.id += str("#", use);
      corpus.push_back(std::move(document));
      if (config.max_documents > 0 && static_cast<int64_t>(corpus.size()) >= config.max_documents) {
        return corpus;
      }
    }
  }
  return corpus;
}

void write_corpus_file(const fs::path& path, const std::vector<const Document*>& documents) {
  core::AtomicFile file(path);
  for (size_t i = 0; i < documents.size(); ++i) {
    if (i > 0) file.write("\n");  // the blank line between documents
    file.write(documents[i]->text);
    file.write("\n");
  }
  file.commit();
}

std::vector<std::string> read_corpus_file(const fs::path& path) {
  std::string text = core::read_file(path, "corpus file");
  std::vector<std::string> documents;
  if (text.empty()) return documents;
  if (text.back() == '\n') text.pop_back();
  size_t start = 0;
  while (true) {
    const size_t end = text.find("\n\n", start);
    documents.push_back(text.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) break;
    start = end + 2;
  }
  return documents;
}

int64_t count_nonempty_lines(const std::vector<std::string>& documents) {
  int64_t lines = 0;
  for (const auto& text : documents) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      if (end > start) ++lines;
      start = end + 1;
    }
  }
  return lines;
}

}  // namespace edgedistill::data
