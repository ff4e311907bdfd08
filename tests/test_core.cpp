// Core utilities: hashing, the portable RNG, atomic files, formatting.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "test_util.h"

using namespace edgedistill;

TEST_CASE("sha256 matches the FIPS 180-2 test vectors") {
  // FIPS 180-2 appendix B: "abc", the two-block message, and one million 'a'.
  CHECK(core::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(core::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(core::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  core::Sha256 million;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) million.update(chunk);
  CHECK(core::to_hex(million.finish()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 gives the same digest however the input is split") {
  std::string text;
  for (int i = 0; i < 300; ++i) text += static_cast<char>(i * 7 + 3);
  const std::string whole = core::sha256_hex(text);
  for (size_t split : {size_t{0}, size_t{1}, size_t{55}, size_t{56}, size_t{63}, size_t{64},
                       size_t{65}, size_t{128}, size_t{299}}) {
    core::Sha256 hash;
    hash.update(text.substr(0, split));
    hash.update(text.substr(split));
    CHECK(core::to_hex(hash.finish()) == whole);
  }
  core::Sha256::Digest parsed{};
  REQUIRE(core::from_hex(whole, parsed));
  CHECK(core::to_hex(parsed) == whole);
  CHECK_FALSE(core::from_hex("xyz", parsed));
}

TEST_CASE("Rng is reproducible and unbiased enough for shuffles") {
  core::Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    CHECK(x == b.next());
    (void)c.next();
  }
  CHECK(core::Rng(42).next() != core::Rng(43).next());
  // below(n) hits every value, and a shuffle is a permutation.
  core::Rng rng(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 10000; ++i) counts[rng.below(10)]++;
  for (int count : counts) CHECK((count > 850 && count < 1150));  // 1000 +- ~5 sigma
  std::vector<int> items(100);
  for (int i = 0; i < 100; ++i) items[i] = i;
  rng.shuffle(items);
  CHECK(std::set<int>(items.begin(), items.end()).size() == 100);
  CHECK(items != std::vector<int>(items.size()));
  CHECK(core::derive_seed(1, 2) != core::derive_seed(1, 3));
  CHECK(core::derive_seed(1, 2) == core::derive_seed(1, 2));
}

TEST_CASE("AtomicFile leaves nothing behind until commit") {
  test::TempDir dir;
  const auto path = dir.path() / "out.bin";
  {
    core::AtomicFile file(path);
    file.write("partial");
    CHECK_FALSE(std::filesystem::exists(path));
    // Destroyed without commit: the temporary is removed and no output appears.
  }
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(std::filesystem::is_empty(dir.path()));

  core::write_file_atomic(path, "first");
  core::write_file_atomic(path, "second");
  CHECK(core::read_file(path, "test file") == "second");
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("file errors name the file and the problem") {
  test::TempDir dir;
  CHECK_THROWS_WITH(core::read_file(dir.path() / "missing.txt", "token shard"),
                    Catch::Contains("token shard") && Catch::Contains("missing.txt") &&
                        Catch::Contains("does not exist"));
  core::write_file_atomic(dir.path() / "bad.json", "{\"a\": 1,\n  \"b\": }");
  CHECK_THROWS_WITH(core::read_json_file(dir.path() / "bad.json", "model config"),
                    Catch::Contains("model config") && Catch::Contains("line 2"));
  CHECK_THROWS_AS(core::MappedFile(dir.path() / "missing.bin", "shard"), FileError);
}

TEST_CASE("MappedFile maps the bytes written") {
  test::TempDir dir;
  core::write_file_atomic(dir.path() / "m.bin", std::string("\x01\x02\x03", 3));
  core::MappedFile mapped(dir.path() / "m.bin", "test file");
  REQUIRE(mapped.size() == 3);
  CHECK(mapped.data()[2] == 3);
  core::write_file_atomic(dir.path() / "empty.bin", "");
  core::MappedFile empty(dir.path() / "empty.bin", "test file");
  CHECK(empty.size() == 0);
}

TEST_CASE("replace_directory swaps a whole directory") {
  test::TempDir dir;
  core::create_directories(dir.path() / "staging", "test");
  core::write_file_atomic(dir.path() / "staging" / "a", "new");
  core::create_directories(dir.path() / "target", "test");
  core::write_file_atomic(dir.path() / "target" / "a", "old");
  core::replace_directory(dir.path() / "staging", dir.path() / "target");
  CHECK(core::read_file(dir.path() / "target" / "a", "test") == "new");
  CHECK_FALSE(std::filesystem::exists(dir.path() / "staging"));
}

TEST_CASE("formatting helpers") {
  CHECK(core::format_count(1234567) == "1,234,567");
  CHECK(core::format_count(-1000) == "-1,000");
  CHECK(core::format_count(999) == "999");
  CHECK(core::format_duration(5.25) == "5.2s");
  CHECK(core::format_duration(185) == "3m05s");
  CHECK(core::format_duration(3720) == "1h02m");
  CHECK(core::format_bytes(4300000) == "4.3 MB");
  CHECK(core::format_bytes(512) == "512 B");
}

TEST_CASE("ED_CHECK throws an internal error naming the condition") {
  auto fails = [] { ED_CHECK(1 + 1 == 3, "arithmetic ", 42); };
  CHECK_THROWS_AS(fails(), InternalError);
  CHECK_THROWS_WITH(fails(), Catch::Contains("1 + 1 == 3") && Catch::Contains("arithmetic 42"));
}

TEST_CASE("EDGEDISTILL_ISA forces a supported instruction set and rejects others") {
  {
    test::ScopedEnv isa("EDGEDISTILL_ISA", "scalar");
    CHECK(core::selected_isa() == "scalar");
  }
  {
    test::ScopedEnv isa("EDGEDISTILL_ISA", "sse9");
    CHECK_THROWS_WITH(core::selected_isa(),
                      Catch::Contains("sse9") && Catch::Contains("scalar, avx2"));
  }
  // An ISA this CPU lacks is refused with what it does support.
  const auto& cpu = core::cpu_features();
  if (const char* missing = !cpu.avx512f ? "avx512" : !cpu.neon ? "neon" : nullptr) {
    test::ScopedEnv isa("EDGEDISTILL_ISA", missing);
    CHECK_THROWS_AS(core::selected_isa(), InputError);
  }
  CHECK_FALSE(core::describe_cpu_features().empty());
}
