#include "data/wordnet_source.h"

#include <algorithm>

#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"

namespace edgedistill::data {
namespace {

// Splits on spaces, skipping empty fields.
std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (start < text.size()) {
    while (start < text.size() && text[start] == ' ') ++start;
    if (start >= text.size()) break;
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    fields.push_back(text.substr(start, end - start));
    start = end;
  }
  return fields;
}

std::string_view trim_spaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

// A lemma as a reader writes it: "physical_entity" -> "physical entity"; the adjective position
// markers of wndb(5) ("(a)", "(p)", "(ip)") are dropped.
std::string lemma_text(std::string_view word) {
  for (std::string_view marker : {"(a)", "(p)", "(ip)"}) {
    if (word.size() > marker.size() && word.substr(word.size() - marker.size()) == marker) {
      word.remove_suffix(marker.size());
      break;
    }
  }
  std::string text(word);
  std::replace(text.begin(), text.end(), '_', ' ');
  return text;
}

// The "; "-separated parts of a gloss. A "; " inside a quoted example does not split, unless the
// quotes are unbalanced (then every "; " splits).
std::vector<std::string_view> split_gloss(std::string_view gloss) {
  const bool balanced = std::count(gloss.begin(), gloss.end(), '"') % 2 == 0;
  std::vector<std::string_view> parts;
  bool in_quote = false;
  size_t start = 0;
  for (size_t i = 0; i < gloss.size(); ++i) {
    if (gloss[i] == '"') in_quote = !in_quote;
    if ((!in_quote || !balanced) && gloss[i] == ';' && i + 1 < gloss.size() &&
        gloss[i + 1] == ' ') {
      parts.push_back(gloss.substr(start, i - start));
      start = i + 2;
      ++i;
    }
  }
  parts.push_back(gloss.substr(start));
  return parts;
}

// A definition part without its example sentences: WordNet's examples are quoted and follow the
// definition after "; ", but some glosses join them with ":" or ";" and no space
// ("female of domestic cattle: \"`moo-cow' is a child's term\""). A quote is taken to start an
// example when only spaces separate it from the start of the part or from a ':' or ';'; a quote
// inside running text ("as in the expression \"on the job\"") is part of the definition.
std::string_view strip_examples(std::string_view part) {
  for (size_t i = 0; i < part.size(); ++i) {
    if (part[i] != '"') continue;
    size_t before = i;
    while (before > 0 && part[before - 1] == ' ') --before;
    if (before == 0 || part[before - 1] == ':' || part[before - 1] == ';') {
      std::string_view definition = part.substr(0, before);
      while (!definition.empty() &&
             (definition.back() == ' ' || definition.back() == ':' || definition.back() == ';')) {
        definition.remove_suffix(1);
      }
      return definition;
    }
  }
  return part;
}

}  // namespace

std::optional<Document> parse_wordnet_line(std::string_view line, const std::string& part,
                                           bool keep_examples, const std::string& origin) {
  if (line.empty() || line.front() == ' ') return std::nullopt;  // license header
  const size_t bar = line.find(" | ");
  const std::string_view head = bar == std::string_view::npos ? line : line.substr(0, bar);
  const std::string_view gloss =
      bar == std::string_view::npos ? std::string_view() : trim_spaces(line.substr(bar + 3));
  const std::vector<std::string_view> fields = split_fields(head);
  // offset lex_filenum ss_type w_cnt word lex_id ...
  if (fields.size() < 6 || fields[0].size() != 8) {
    throw InputError(str("WordNet file ", origin,
                         " has a malformed synset line (expected "
                         "\"offset lex_filenum ss_type w_cnt word lex_id "
                         "...\"); reinstall wordnet-base"));
  }
  size_t word_count = 0;
  try {
    word_count = std::stoul(std::string(fields[3]), nullptr, 16);
  } catch (const std::exception&) {
    word_count = 0;
  }
  if (word_count == 0 || fields.size() < 4 + 2 * word_count) {
    throw InputError(str("WordNet file ", origin, " has a synset line with a bad word count '",
                         fields[3], "'; reinstall wordnet-base"));
  }
  std::string text;
  for (size_t w = 0; w < word_count; ++w) {
    if (w > 0) text += ", ";
    text += lemma_text(fields[4 + 2 * w]);
  }
  std::string kept;
  if (keep_examples) {
    kept = gloss;
  } else {
    for (const std::string_view part : split_gloss(gloss)) {
      const std::string_view definition = trim_spaces(strip_examples(part));
      if (definition.empty()) continue;
      if (!kept.empty()) kept += "; ";
      kept += definition;
    }
  }
  if (!kept.empty()) text += ": " + kept;
  return Document{str("wordnet:", part, ":", fields[0]), std::move(text)};
}

std::vector<Document> read_wordnet_documents(const std::vector<std::string>& parts,
                                             bool keep_examples, const std::filesystem::path& dir) {
  std::vector<Document> documents;
  core::Progress progress("reading WordNet", static_cast<int64_t>(parts.size()), "files");
  int64_t files_done = 0;
  for (const auto& part : parts) {
    const std::filesystem::path file = dir / ("data." + part);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) {
      throw InputError(str("WordNet file '", file.string(),
                           "' does not exist; the wordnet source needs the Debian package "
                           "wordnet-base; run scripts/setup.sh"));
    }
    const std::string contents = core::read_file(file, "WordNet file");
    size_t start = 0, line_number = 0;
    while (start < contents.size()) {
      size_t end = contents.find('\n', start);
      if (end == std::string::npos) end = contents.size();
      ++line_number;
      auto document =
          parse_wordnet_line(std::string_view(contents).substr(start, end - start), part,
                             keep_examples, str("'", file.string(), "' line ", line_number));
      if (document) documents.push_back(std::move(*document));
      start = end + 1;
    }
    progress.update(++files_done, str(core::format_count(documents.size()), " synsets"));
  }
  progress.finish(files_done, str(core::format_count(documents.size()), " synsets"));
  return documents;
}

}  // namespace edgedistill::data
