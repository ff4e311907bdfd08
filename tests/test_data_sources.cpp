// Corpus sources (KJV, WordNet, text files) and IDX image sets, read from the installed Debian
// packages bible-kjv, wordnet-base and dataset-fashion-mnist.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>

#include "core/config.h"
#include "core/files.h"
#include "core/sha256.h"
#include "data/corpus.h"
#include "data/data_config.h"
#include "data/idx.h"
#include "data/kjv_source.h"
#include "data/text_file_source.h"
#include "data/wordnet_source.h"
#include "test_util.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

const fs::path kFashionMnist = "/usr/share/datasets/fashion-mnist";

// The KJV verses, read once for all test cases (the `bible` program takes a moment).
const std::vector<data::KjvVerse>& kjv_verses() {
  static const std::vector<data::KjvVerse> verses = data::read_kjv_verses();
  return verses;
}

void write_gzip(const fs::path& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

std::string be_u32(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

// FNV-1a (64-bit) over one image and its label: identifies images for the partition check.
uint64_t image_fingerprint(const data::ImageSet& set, int64_t i) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  auto mix = [&](uint8_t byte) { hash = (hash ^ byte) * 0x100000001b3ULL; };
  const uint8_t* pixels = set.image(i);
  for (int64_t k = 0; k < set.rows * set.cols; ++k) mix(pixels[k]);
  mix(set.labels[static_cast<size_t>(i)]);
  return hash;
}

std::vector<uint64_t> sorted_fingerprints(const std::vector<const data::ImageSet*>& sets) {
  std::vector<uint64_t> out;
  for (const auto* set : sets) {
    for (int64_t i = 0; i < set->count; ++i) out.push_back(image_fingerprint(*set, i));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// KJV

TEST_CASE("the kjv source reads all 31,102 verses of the King James Bible") {
  const auto& verses = kjv_verses();
  REQUIRE(verses.size() == 31102);
  CHECK(verses.front().book == "Genesis");
  CHECK(verses.front().chapter == 1);
  CHECK(verses.front().verse == 1);
  CHECK(verses.front().text == "In the beginning God created the heaven and the earth.");
  CHECK(verses.back().book == "Revelation");
  CHECK(verses.back().chapter == 22);
  CHECK(verses.back().verse == 21);
  CHECK(verses.back().text == "The grace of our Lord Jesus Christ be with you all. Amen.");
  // Psalm 119 is the longest chapter (176 verses); John 11:35 the shortest verse.
  const auto psalm_119 = std::count_if(verses.begin(), verses.end(), [](const auto& v) {
    return v.book == "Psalms" && v.chapter == 119;
  });
  CHECK(psalm_119 == 176);
  const auto john_11_35 = std::find_if(verses.begin(), verses.end(), [](const auto& v) {
    return v.book == "John" && v.chapter == 11 && v.verse == 35;
  });
  REQUIRE(john_11_35 != verses.end());
  CHECK(john_11_35->text == "Jesus wept.");
}

TEST_CASE("kjv documents group consecutive verses within one chapter") {
  const auto documents = data::group_kjv_verses(kjv_verses(), 8);
  // 4,409 = sum over the 1,189 chapters of ceil(verses / 8), counted from the `bible` output
  // with awk.
  CHECK(documents.size() == 4409);
  CHECK(documents[0].id == "kjv:Genesis 1:1-8");
  CHECK(documents[0].text.rfind(
            "In the beginning God created the heaven and the earth.\nAnd the earth was without "
            "form",
            0) == 0);
  CHECK(std::count(documents[0].text.begin(), documents[0].text.end(), '\n') == 7);
  CHECK(documents[3].id == "kjv:Genesis 1:25-31");  // Genesis 1 has 31 verses
  CHECK(documents[4].id == "kjv:Genesis 2:1-8");
  CHECK(documents.back().id == "kjv:Revelation 22:17-21");
  for (const auto& document : documents) {
    REQUIRE(document.text.find("\n\n") == std::string::npos);
    REQUIRE(!document.text.empty());
  }
  const auto single = data::group_kjv_verses(kjv_verses(), 1);
  CHECK(single.size() == 31102);
  CHECK(single[0].id == "kjv:Genesis 1:1");
}

TEST_CASE("the kjv listing parser joins wrapped lines and refuses foreign output") {
  const std::string listing =
      "\nGenesis 1\n\n  1 In the beginning God created the\nheaven and the earth.\n"
      "  2 And the earth was without form.\n\n1 Samuel 3\n\n  10 And the LORD came.\n";
  const auto verses = data::parse_kjv_listing(listing);
  REQUIRE(verses.size() == 3);
  CHECK(verses[0].text == "In the beginning God created the heaven and the earth.");
  CHECK(verses[1].verse == 2);
  CHECK(verses[2].book == "1 Samuel");
  CHECK(verses[2].chapter == 3);
  CHECK(verses[2].verse == 10);
  CHECK_THROWS_AS(data::parse_kjv_listing("Bad Book: 'xyz1:1'\n"), InputError);
  CHECK_THROWS_WITH(data::parse_kjv_listing("  1 a verse with no chapter\n"),
                    Catch::Contains("before any chapter header"));
}

TEST_CASE("the kjv source says which package to install when `bible` is missing") {
  test::TempDir empty;
  test::ScopedEnv path("PATH", empty.path().c_str());
  CHECK_THROWS_AS(data::read_kjv_verses(), InputError);
  CHECK_THROWS_WITH(data::read_kjv_verses(), Catch::Contains("`bible` program") &&
                                                 Catch::Contains("bible-kjv") &&
                                                 Catch::Contains("scripts/setup.sh"));
}

// ---------------------------------------------------------------------------------------------
// WordNet

TEST_CASE("the wordnet source makes one document per synset") {
  const auto nouns = data::read_wordnet_documents({"noun"}, true);
  // 82,115 = lines of data.noun not starting with two spaces (the license header), by grep -v.
  CHECK(nouns.size() == 82115);
  CHECK(nouns[0].id == "wordnet:noun:00001740");
  CHECK(nouns[0].text ==
        "entity: that which is perceived or known or inferred to have its own distinct existence "
        "(living or nonliving)");
  CHECK(nouns[1].text.rfind("physical entity: an entity that has physical existence", 0) == 0);
  CHECK(nouns[2].text.rfind("abstraction, abstract entity: ", 0) == 0);
  const auto all = data::read_wordnet_documents({"noun", "verb", "adj", "adv"}, false);
  CHECK(all.size() == 82115 + 13767 + 18156 + 3621);  // each file counted the same way
  // Examples are dropped: no quote follows a "; " or ": " any more, and the quotes left are the
  // few inside definitions ("as in the expression \"on the job\"").
  size_t quoted = 0;
  for (const auto& document : all) {
    REQUIRE(document.text.find("; \"") == std::string::npos);
    REQUIRE(document.text.find(": \"") == std::string::npos);
    if (document.text.find('"') != std::string::npos) ++quoted;
  }
  CHECK(quoted < all.size() / 200);
  const auto with_examples = data::read_wordnet_documents({"noun", "verb", "adj", "adv"}, true);
  REQUIRE(with_examples.size() == all.size());
  const auto quoted_with_examples =
      std::count_if(with_examples.begin(), with_examples.end(),
                    [](const data::Document& d) { return d.text.find('"') != std::string::npos; });
  // 32,930 glosses hold a quote: grep -v '^  ' data.* | awk -F' \\| ' '{print $2}' | grep -c '"'
  CHECK(quoted_with_examples == 32930);
}

TEST_CASE("wordnet lines: lemmas, adjective markers and example sentences") {
  const std::string choke =
      "00002724 29 v 01 choke 0 002 @ 00001740 v 0000 + 14058252 n 0101 01 + 02 00 | breathe with "
      "great difficulty, as when experiencing a strong emotion; \"She choked with emotion when "
      "she spoke about her deceased husband\"  ";
  const auto with_examples = data::parse_wordnet_line(choke, "verb", true, "test");
  REQUIRE(with_examples);
  CHECK(with_examples->id == "wordnet:verb:00002724");
  CHECK(with_examples->text ==
        "choke: breathe with great difficulty, as when experiencing a strong emotion; \"She "
        "choked with emotion when she spoke about her deceased husband\"");
  const auto without = data::parse_wordnet_line(choke, "verb", false, "test");
  CHECK(without->text ==
        "choke: breathe with great difficulty, as when experiencing a strong "
        "emotion");

  const std::string galore =
      "00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "
      "\"abounding confidence\"; \"whiskey galore\"  ";
  CHECK(data::parse_wordnet_line(galore, "adj", true, "test")->text ==
        "abounding, galore: existing in abundance; \"abounding confidence\"; \"whiskey galore\"");
  // A "; " inside a quoted example does not split it.
  const std::string quoted =
      "00000001 00 n 01 word_form 0 000 | a gloss; \"one; two\"; another definition  ";
  CHECK(data::parse_wordnet_line(quoted, "noun", false, "test")->text ==
        "word form: a gloss; another definition");
  CHECK_FALSE(data::parse_wordnet_line("  1 This software and database is being provided", "noun",
                                       true, "test"));
  CHECK_THROWS_WITH(data::parse_wordnet_line("00000001 00 n zz word 0 000 | gloss", "noun", true,
                                             "'data.noun' line 30"),
                    Catch::Contains("'data.noun' line 30") && Catch::Contains("bad word count"));
}

TEST_CASE("the wordnet source names the package when its files are missing") {
  test::TempDir empty;
  CHECK_THROWS_AS(data::read_wordnet_documents({"noun"}, true, empty.path()), InputError);
  CHECK_THROWS_WITH(data::read_wordnet_documents({"noun"}, true, empty.path()),
                    Catch::Contains("data.noun") && Catch::Contains("wordnet-base"));
}

// ---------------------------------------------------------------------------------------------
// Text files

TEST_CASE("a text file splits into paragraphs or lines") {
  const std::string text =
      "First paragraph\r\nstill first.\r\n\r\n \t \nSecond one.\n\n\n  Third, "
      "indented.\nLast line";
  const auto paragraphs = data::split_text_documents(text, "paragraph", "notes.txt");
  REQUIRE(paragraphs.size() == 3);
  CHECK(paragraphs[0].id == "text_file:notes.txt:1");
  CHECK(paragraphs[0].text == "First paragraph\nstill first.");
  CHECK(paragraphs[1].id == "text_file:notes.txt:5");
  CHECK(paragraphs[1].text == "Second one.");
  CHECK(paragraphs[2].id == "text_file:notes.txt:8");
  CHECK(paragraphs[2].text == "  Third, indented.\nLast line");
  const auto lines = data::split_text_documents(text, "line", "notes.txt");
  REQUIRE(lines.size() == 5);
  CHECK(lines[0].text == "First paragraph");
  CHECK(lines[2].id == "text_file:notes.txt:5");
  CHECK(lines[4].text == "Last line");
  CHECK(data::split_text_documents("", "paragraph", "x").empty());
}

TEST_CASE("a text file source must be UTF-8 and exist") {
  test::TempDir dir;
  core::write_file_atomic(dir.path() / "latin1.txt", "caf\xE9 au lait\n");
  CHECK_THROWS_AS(data::read_text_file_documents(dir.path() / "latin1.txt", "line"), InputError);
  CHECK_THROWS_WITH(data::read_text_file_documents(dir.path() / "latin1.txt", "line"),
                    Catch::Contains("not valid UTF-8 (byte offset 3)") && Catch::Contains("iconv"));
  CHECK_THROWS_WITH(data::read_text_file_documents(dir.path() / "none.txt", "line"),
                    Catch::Contains("none.txt") && Catch::Contains("does not exist"));
}

TEST_CASE("build_corpus concatenates sources, normalises and keeps the first max_documents") {
  test::TempDir dir;
  core::write_file_atomic(dir.path() / "a.txt", "one\n\ntwo\r\n\r\n\r\nthree\n");
  core::write_file_atomic(dir.path() / "b.txt", "four\nfive\n");
  data::DataConfig config;
  config.sources.resize(3);
  config.sources[0].kind = "text_file";
  config.sources[0].path = dir.path() / "a.txt";
  config.sources[1].kind = "text_file";
  config.sources[1].path = dir.path() / "b.txt";
  config.sources[1].unit = "line";
  config.sources[2] = config.sources[0];  // the same file again: ids get a suffix
  auto corpus = data::build_corpus(config);
  REQUIRE(corpus.size() == 8);
  CHECK(corpus[1].text == "two");
  CHECK(corpus[3].text == "four");
  CHECK(corpus[3].id == "text_file:b.txt:1");
  CHECK(corpus[5].id == "text_file:a.txt:1#2");
  config.max_documents = 4;
  corpus = data::build_corpus(config);
  CHECK(corpus.size() == 4);
}

// ---------------------------------------------------------------------------------------------
// IDX images

TEST_CASE("the IDX reader reads Fashion-MNIST") {
  const auto train = data::read_idx_dataset(kFashionMnist / data::kIdxTrainImages,
                                            kFashionMnist / data::kIdxTrainLabels);
  CHECK(train.count == 60000);
  CHECK(train.rows == 28);
  CHECK(train.cols == 28);
  CHECK(train.classes == 10);
  REQUIRE(train.pixels.size() == 60000u * 28 * 28);
  REQUIRE(train.labels.size() == 60000u);
  // sha256 of the pixel bytes, from
  //   zcat train-images-idx3-ubyte.gz | tail -c +17 | sha256sum
  CHECK(core::sha256_hex(std::string(train.pixels.begin(), train.pixels.end())) ==
        "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012");
  // zcat train-labels-idx1-ubyte.gz | tail -c +9 | sha256sum
  CHECK(core::sha256_hex(std::string(train.labels.begin(), train.labels.end())) ==
        "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7");
  std::map<int, int> per_class;
  for (const uint8_t label : train.labels) per_class[label]++;
  CHECK(per_class.size() == 10);
  for (const auto& [label, n] : per_class) CHECK(n == 6000);  // Fashion-MNIST is balanced
  CHECK(train.labels[0] == 9);  // the first label byte is 09 (od -tx1)

  const auto test = data::read_idx_dataset(kFashionMnist / data::kIdxTestImages,
                                           kFashionMnist / data::kIdxTestLabels);
  CHECK(test.count == 10000);
  // zcat t10k-images-idx3-ubyte.gz | tail -c +17 | sha256sum
  CHECK(core::sha256_hex(std::string(test.pixels.begin(), test.pixels.end())) ==
        "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a");
}

TEST_CASE("the IDX reader refuses truncated, foreign and mismatched files") {
  test::TempDir dir;
  const std::string labels = core::read_file(kFashionMnist / data::kIdxTestLabels, "test");
  // A gzip stream cut in half.
  core::write_file_atomic(dir.path() / "cut.gz", labels.substr(0, labels.size() / 2));
  CHECK_THROWS_AS(data::read_gzip_file(dir.path() / "cut.gz"), FileError);
  CHECK_THROWS_WITH(data::read_gzip_file(dir.path() / "cut.gz"),
                    Catch::Contains("truncated or corrupt"));

  // Well-formed gzip holding a short IDX file: 3 images of 2x2 promised, 2 present.
  const std::string header = be_u32(data::kIdxImagesMagic) + be_u32(3) + be_u32(2) + be_u32(2);
  write_gzip(dir.path() / "short-images.gz", header + std::string(8, '\1'));
  write_gzip(dir.path() / "labels.gz",
             be_u32(data::kIdxLabelsMagic) + be_u32(3) + std::string("\0\1\2", 3));
  CHECK_THROWS_WITH(
      data::read_idx_dataset(dir.path() / "short-images.gz", dir.path() / "labels.gz"),
      Catch::Contains("is truncated") && Catch::Contains("3 items of 4 bytes") &&
          Catch::Contains("12 data bytes), found 8"));

  write_gzip(dir.path() / "images.gz", header + std::string(12, '\1'));
  const auto tiny = data::read_idx_dataset(dir.path() / "images.gz", dir.path() / "labels.gz");
  CHECK(tiny.count == 3);
  CHECK(tiny.classes == 3);

  // The labels file in place of the images file: wrong magic.
  CHECK_THROWS_AS(data::read_idx_dataset(dir.path() / "labels.gz", dir.path() / "labels.gz"),
                  FileError);
  CHECK_THROWS_WITH(data::read_idx_dataset(dir.path() / "labels.gz", dir.path() / "labels.gz"),
                    Catch::Contains("is not an IDX images file: expected magic 0x803, found "
                                    "0x801"));
  write_gzip(dir.path() / "two-labels.gz",
             be_u32(data::kIdxLabelsMagic) + be_u32(2) + std::string("\0\1", 2));
  CHECK_THROWS_WITH(data::read_idx_dataset(dir.path() / "images.gz", dir.path() / "two-labels.gz"),
                    Catch::Contains("has 2 labels") && Catch::Contains("has 3 images"));
}

TEST_CASE("image splits hold out a seeded validation set from the training file") {
  const auto config = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "fashion-mnist.json", {"images.valid_count=5000"});
  const auto splits = data::load_image_splits(config);
  CHECK(splits.train.count == 55000);
  CHECK(splits.valid.count == 5000);
  CHECK(splits.test.count == 10000);
  CHECK(splits.valid.rows == 28);
  CHECK(splits.valid.classes == 10);
  CHECK(splits.train.pixels.size() == 55000u * 784);
  // train and valid partition the training file (as multisets of images with their labels).
  const auto file = data::read_idx_dataset(kFashionMnist / data::kIdxTrainImages,
                                           kFashionMnist / data::kIdxTrainLabels);
  CHECK(sorted_fingerprints({&splits.train, &splits.valid}) == sorted_fingerprints({&file}));
  // The same seed gives the same split; another seed another.
  const auto again = data::load_image_splits(config);
  CHECK(again.valid.pixels == splits.valid.pixels);
  const auto reseeded = data::load_image_splits(core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "fashion-mnist.json", {"images.seed=99"}));
  CHECK(reseeded.valid.count == 5000);
  CHECK(reseeded.valid.pixels != splits.valid.pixels);

  auto missing = config;
  missing.images.dir = "/nonexistent/fashion";
  CHECK_THROWS_AS(data::load_image_splits(missing), InputError);
  CHECK_THROWS_WITH(data::load_image_splits(missing),
                    Catch::Contains("dataset-fashion-mnist") && Catch::Contains("images.dir"));
  auto too_many = config;
  too_many.images.valid_count = 60000;
  CHECK_THROWS_WITH(data::load_image_splits(too_many),
                    Catch::Contains("images.valid_count is 60000"));
}
