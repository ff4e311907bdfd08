#include "data/kjv_source.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/progress.h"

namespace edgedistill::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kBibleProgram = "bible";
constexpr const char* kMissingBibleHint =
    "the kjv source needs the `bible` program from the Debian package bible-kjv; run "
    "scripts/setup.sh";

// The first executable `name` on $PATH, or an empty path.
fs::path find_on_path(const std::string& name) {
  const char* path_variable = std::getenv("PATH");
  if (path_variable == nullptr) return {};
  const std::string_view directories(path_variable);
  size_t start = 0;
  while (start <= directories.size()) {
    size_t end = directories.find(':', start);
    if (end == std::string_view::npos) end = directories.size();
    const std::string directory(directories.substr(start, end - start));
    fs::path candidate = fs::path(directory.empty() ? "." : directory) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

// Runs `program args...` without a shell and returns its standard output. Throws InputError when
// it cannot start or exits with a failure.
std::string run_and_capture(const fs::path& program, const std::vector<std::string>& args) {
  int pipe_ends[2];
  if (::pipe(pipe_ends) != 0) {
    throw InputError(str("cannot run '", program.string(), "': pipe: ", std::strerror(errno)));
  }
  std::vector<char*> argv;
  std::string program_text = program.string();
  argv.push_back(program_text.data());
  std::vector<std::string> arg_copies = args;
  for (auto& arg : arg_copies) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const pid_t child = ::fork();
  if (child < 0) {
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    throw InputError(str("cannot run '", program.string(), "': fork: ", std::strerror(errno)));
  }
  if (child == 0) {
    ::dup2(pipe_ends[1], STDOUT_FILENO);
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    ::execv(program_text.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipe_ends[1]);
  std::string output;
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(pipe_ends[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buffer, static_cast<size_t>(n));
  }
  ::close(pipe_ends[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? str("exit status ", WEXITSTATUS(status))
                                              : str("signal ", WTERMSIG(status));
    throw InputError(str("'", program.string(), "' failed (", how, "); ", kMissingBibleHint));
  }
  return output;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "Book N": a chapter header. Fills book and chapter.
bool parse_chapter_header(std::string_view line, std::string& book, int& chapter) {
  if (line.empty() || line.front() == ' ') return false;
  const size_t space = line.rfind(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == line.size()) return false;
  const std::string_view number = line.substr(space + 1);
  for (char c : number) {
    if (!is_digit(c)) return false;
  }
  book = std::string(line.substr(0, space));
  chapter = std::atoi(std::string(number).c_str());
  return chapter > 0;
}

// "  N text": a verse line. Fills number and text.
bool parse_verse_line(std::string_view line, int& number, std::string_view& text) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  if (i == 0) return false;
  const size_t digits_start = i;
  while (i < line.size() && is_digit(line[i])) ++i;
  if (i == digits_start || i >= line.size() || line[i] != ' ') return false;
  number = std::atoi(std::string(line.substr(digits_start, i - digits_start)).c_str());
  text = line.substr(i + 1);
  return number > 0;
}

std::string_view trim_trailing_spaces(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::vector<KjvVerse> parse_kjv_listing(std::string_view listing) {
  std::vector<KjvVerse> verses;
  std::string book;
  int chapter = 0;
  bool after_blank = true;  // a chapter header follows a blank line (or starts the listing)
  size_t line_number = 0;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string_view::npos) end = listing.size();
    const std::string_view line = trim_trailing_spaces(listing.substr(start, end - start));
    start = end + 1;
    ++line_number;
    if (line.empty()) {
      after_blank = true;
      continue;
    }
    int number = 0;
    std::string_view text;
    std::string header_book;
    int header_chapter = 0;
    if (parse_verse_line(line, number, text)) {
      if (chapter == 0) {
        throw InputError(
            str("the `bible` program's output has a verse before any chapter header (line ",
                line_number, "); reinstall bible-kjv"));
      }
      verses.push_back({book, chapter, number, std::string(text)});
    } else if (after_blank && parse_chapter_header(line, header_book, header_chapter)) {
      book = header_book;
      chapter = header_chapter;
    } else if (!verses.empty() && verses.back().chapter == chapter && verses.back().book == book) {
      // A wrapped continuation of the previous verse.
      verses.back().text += " ";
      verses.back().text += line;
    } else {
      throw InputError(str("the `bible` program's output has an unexpected line ", line_number,
                           " \"", line, "\"; reinstall bible-kjv"));
    }
    after_blank = false;
  }
  return verses;
}

std::vector<KjvVerse> read_kjv_verses() {
  const fs::path program = find_on_path(kBibleProgram);
  if (program.empty()) throw InputError(kMissingBibleHint);
  core::Progress progress("reading the KJV", kKjvVerses, "verses");
  // -l 4000: lines up to 4000 columns, so no verse (the longest is under 600 bytes) wraps.
  const std::string listing = run_and_capture(program, {"-l", "4000", "gen1:1-rev22:21"});
  std::vector<KjvVerse> verses = parse_kjv_listing(listing);

  int books = 0, chapters = 0;
  for (size_t i = 0; i < verses.size(); ++i) {
    const bool new_book = i == 0 || verses[i].book != verses[i - 1].book;
    const bool new_chapter = new_book || verses[i].chapter != verses[i - 1].chapter;
    books += new_book ? 1 : 0;
    chapters += new_chapter ? 1 : 0;
  }
  if (static_cast<int>(verses.size()) != kKjvVerses || books != kKjvBooks ||
      chapters != kKjvChapters) {
    throw InputError(str("the `bible` program printed ", core::format_count(verses.size()),
                         " verses in ", books, " books and ", chapters, " chapters; expected ",
                         core::format_count(kKjvVerses), " verses in ", kKjvBooks, " books and ",
                         core::format_count(kKjvChapters),
                         " chapters (the whole KJV); reinstall bible-kjv"));
  }
  progress.finish(static_cast<int64_t>(verses.size()));
  return verses;
}

std::vector<Document> group_kjv_verses(const std::vector<KjvVerse>& verses, int verses_per_doc) {
  ED_CHECK(verses_per_doc >= 1, "verses_per_doc=", verses_per_doc);
  std::vector<Document> documents;
  size_t i = 0;
  while (i < verses.size()) {
    const KjvVerse& first = verses[i];
    Document document;
    size_t end = i;
    while (end < verses.size() && end - i < static_cast<size_t>(verses_per_doc) &&
           verses[end].book == first.book && verses[end].chapter == first.chapter) {
      if (end > i) document.text += "\n";
      document.text += verses[end].text;
      ++end;
    }
    const KjvVerse& last = verses[end - 1];
    document.id =
        first.verse == last.verse
            ? str("kjv:", first.book, " ", first.chapter, ":", first.verse)
            : str("kjv:", first.book, " ", first.chapter, ":", first.verse, "-", last.verse);
    documents.push_back(std::move(document));
    i = end;
  }
  return documents;
}

}  // namespace edgedistill::data
