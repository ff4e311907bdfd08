// The King James Bible, from the `bible` program of the Debian package bible-kjv.
//
// `bible -l 4000 gen1:1-rev22:21` prints, per chapter, a header line "Book N" (after a blank line)
// and one line "  N verse text" per verse. The wide line width keeps verses on one line; a line
// that is neither is taken as a wrapped continuation of the previous verse.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "data/corpus.h"

namespace edgedistill::data {

// The KJV as the bible-kjv package prints it: 66 books, 1,189 chapters, 31,102 verses.
inline constexpr int kKjvBooks = 66;
inline constexpr int kKjvChapters = 1189;
inline constexpr int kKjvVerses = 31102;

struct KjvVerse {
  std::string book;  // "Genesis", "1 Samuel", "Song of Solomon"
  int chapter = 0;
  int verse = 0;
  std::string text;  // without the verse number
};

// Parses the `bible` program's output. Throws InputError when it is not in the expected form.
std::vector<KjvVerse> parse_kjv_listing(std::string_view listing);

// Runs the `bible` program and parses all of its verses; checks the exit status and that the
// whole KJV came out (66 books, 31,102 verses).
std::vector<KjvVerse> read_kjv_verses();

// Groups consecutive verses of one chapter, `verses_per_doc` at a time, into documents
// "kjv:Book C:V1-V2" whose text is the verses joined by "\n".
std::vector<Document> group_kjv_verses(const std::vector<KjvVerse>& verses, int verses_per_doc);

}  // namespace edgedistill::data
