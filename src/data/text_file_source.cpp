#include "data/text_file_source.h"

#include "core/error.h"
#include "core/files.h"
#include "data/tokenizer.h"

namespace edgedistill::data {
namespace {

bool is_blank_line(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

std::vector<Document> split_text_documents(std::string_view text, const std::string& unit,
                                           const std::string& name) {
  ED_CHECK(unit == "paragraph" || unit == "line", "unit=", unit);
  std::vector<Document> documents;
  std::string paragraph;
  size_t paragraph_line = 0;
  auto flush_paragraph = [&] {
    std::string normalized = normalize_document_text(paragraph);
    if (!normalized.empty()) {
      documents.push_back({str("text_file:", name, ":", paragraph_line), std::move(normalized)});
    }
    paragraph.clear();
  };
  size_t start = 0, line_number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = end + 1;
    ++line_number;
    if (unit == "line") {
      if (is_blank_line(line)) continue;
      documents.push_back({str("text_file:", name, ":", line_number), std::string(line)});
      continue;
    }
    if (is_blank_line(line)) {
      flush_paragraph();
      continue;
    }
    if (paragraph.empty()) {
      paragraph_line = line_number;
    } else {
      paragraph += "\n";
    }
    paragraph += line;
  }
  flush_paragraph();
  return documents;
}

std::vector<Document> read_text_file_documents(const std::filesystem::path& path,
                                               const std::string& unit) {
  const std::string text = core::read_file(path, "text_file source");
  size_t bad_offset = 0;
  if (!is_valid_utf8(text, &bad_offset)) {
    throw InputError(str("text_file source '", path.string(), "' is not valid UTF-8 (byte offset ",
                         bad_offset, "); convert it, e.g. with iconv -t UTF-8"));
  }
  return split_text_documents(text, unit, path.filename().string());
}

}  // namespace edgedistill::data
