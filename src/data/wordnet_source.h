// WordNet 3.0 glosses, from the Debian package wordnet-base (/usr/share/wordnet/data.<part>).
//
// One document per synset: "word1, word2: gloss". A data line (WordNet's wndb(5) format) is
//   offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] p_cnt ... | gloss
// and the gloss holds definitions and quoted example sentences separated by "; ".
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/corpus.h"

namespace edgedistill::data {

inline constexpr const char* kWordnetDir = "/usr/share/wordnet";

// The document of one data line; nullopt for the license header lines (they start with two
// spaces). `part` is noun, verb, adj or adv; `keep_examples` keeps the quoted example sentences.
// Throws InputError naming `origin` (file:line) for a malformed line.
std::optional<Document> parse_wordnet_line(std::string_view line, const std::string& part,
                                           bool keep_examples, const std::string& origin);

// All synsets of the given parts, in file order (part by part).
std::vector<Document> read_wordnet_documents(const std::vector<std::string>& parts,
                                             bool keep_examples,
                                             const std::filesystem::path& dir = kWordnetDir);

}  // namespace edgedistill::data
