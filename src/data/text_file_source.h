// A UTF-8 text file as a source: one document per paragraph (separated by blank lines, i.e.
// lines empty or holding only spaces and tabs) or per line.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "data/corpus.h"

namespace edgedistill::data {

// Documents of `text`; ids are "text_file:<name>:<first line number>". Empty units are skipped.
std::vector<Document> split_text_documents(std::string_view text, const std::string& unit,
                                           const std::string& name);

// Reads the file (which must be valid UTF-8) and splits it as above.
std::vector<Document> read_text_file_documents(const std::filesystem::path& path,
                                               const std::string& unit);

}  // namespace edgedistill::data
