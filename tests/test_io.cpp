// io layer: the safetensors reader/writer and the f16/bf16 conversions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "io/half.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace edgedistill;
using io::Dtype;
namespace fs = std::filesystem;

namespace {

std::string le64(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

// A safetensors file assembled by hand: length prefix, header text, data buffer.
std::string file_bytes(std::string_view header, std::string_view data) {
  return le64(header.size()) + std::string(header) + std::string(data);
}

void write_bytes(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Opening `path` must throw FileError; returns its message, which must name the file.
std::string rejection_message(const fs::path& path) {
  try {
    io::SafetensorsFile file(path);
  } catch (const FileError& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains(path.string()));
    CHECK(message.find('\n') == std::string::npos);  // one line
    return message;
  }
  FAIL("opening " << path << " did not throw FileError");
  return {};
}

// Writes `bytes`, opens them, and requires a FileError whose message holds every fragment.
void require_rejected(const fs::path& path, std::string_view bytes,
                      std::initializer_list<std::string_view> fragments) {
  write_bytes(path, bytes);
  const std::string message = rejection_message(path);
  for (std::string_view fragment : fragments) {
    CHECK_THAT(message, Catch::Contains(std::string(fragment)));
  }
}

std::vector<uint8_t> pattern_bytes(size_t count, uint8_t seed) {
  std::vector<uint8_t> bytes(count);
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<uint8_t>(seed + 37 * i);
  return bytes;
}

struct TestTensor {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
};

// Tensors covering every dtype, a 0-d scalar, empty tensors, and odd byte counts that leave
// later tensors misaligned in the buffer.
const std::vector<TestTensor>& varied_tensors() {
  static const std::vector<TestTensor> tensors = {
      {"model.embed.weight", Dtype::F32, {2, 3}},
      {"layer \"0\"/é/norm", Dtype::F16, {5}},
      {"scalar.f64", Dtype::F64, {}},
      {"bf16", Dtype::BF16, {1, 1, 3}},
      {"i64", Dtype::I64, {2, 2}},
      {"empty", Dtype::I32, {0, 4}},
      {"i8", Dtype::I8, {3}},
      {"u8.scalar", Dtype::U8, {}},
      {"bool", Dtype::BOOL, {4}},
      {"i16", Dtype::I16, {3}},
      {"u16.empty", Dtype::U16, {3, 0}},
      {"u32", Dtype::U32, {2}},
      {"u64", Dtype::U64, {1}},
  };
  return tensors;
}

size_t expected_nbytes(const TestTensor& tensor) {
  size_t count = 1;
  for (int64_t dim : tensor.shape) count *= static_cast<size_t>(dim);
  return count * io::dtype_size(tensor.dtype);
}

io::SafetensorsWriter varied_writer() {
  io::SafetensorsWriter writer;
  uint8_t seed = 1;
  for (const TestTensor& tensor : varied_tensors()) {
    const std::vector<uint8_t> bytes = pattern_bytes(expected_nbytes(tensor), seed++);
    writer.add(tensor.name, tensor.dtype, tensor.shape, bytes.data(), bytes.size());
  }
  writer.set_metadata("format", "pt");
  writer.set_metadata("note", "tab\there, quote \" and ünïcode");
  return writer;
}

uint64_t header_length_of(const std::string& file) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value |= static_cast<uint64_t>(static_cast<uint8_t>(file[i])) << (8 * i);
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// safetensors

TEST_CASE("dtype names, sizes and parsing agree") {
  const std::vector<std::pair<Dtype, size_t>> sizes = {
      {Dtype::F64, 8}, {Dtype::F32, 4}, {Dtype::F16, 2}, {Dtype::BF16, 2}, {Dtype::I64, 8},
      {Dtype::I32, 4}, {Dtype::I16, 2}, {Dtype::I8, 1},  {Dtype::U64, 8},  {Dtype::U32, 4},
      {Dtype::U16, 2}, {Dtype::U8, 1},  {Dtype::BOOL, 1}};
  for (const auto& [dtype, size] : sizes) {
    CHECK(io::dtype_size(dtype) == size);
    CHECK(io::parse_dtype(io::dtype_name(dtype)) == dtype);
  }
  CHECK(io::dtype_name(Dtype::BF16) == "BF16");
  CHECK_FALSE(io::parse_dtype("F8_E4M3").has_value());
  CHECK_FALSE(io::parse_dtype("f32").has_value());
  CHECK_FALSE(io::parse_dtype("").has_value());
}

TEST_CASE("safetensors round trip keeps dtypes, shapes, bytes and metadata") {
  test::TempDir dir;
  const fs::path path = dir.path() / "nested" / "weights.safetensors";
  varied_writer().write(path);

  const io::SafetensorsFile file(path);
  const auto& tensors = varied_tensors();
  REQUIRE(file.tensors().size() == tensors.size());
  uint8_t seed = 1;
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO("tensor " << tensors[i].name);
    const io::TensorView& view = file.tensors()[i];  // file order is the order added
    CHECK(view.name == tensors[i].name);
    CHECK(view.dtype == tensors[i].dtype);
    CHECK(view.shape == tensors[i].shape);
    REQUIRE(view.nbytes == expected_nbytes(tensors[i]));
    CHECK(static_cast<size_t>(view.numel()) * io::dtype_size(view.dtype) == view.nbytes);
    const std::vector<uint8_t> expected = pattern_bytes(view.nbytes, seed++);
    CHECK(std::equal(expected.begin(), expected.end(), view.data));
    CHECK(file.find(view.name) == &view);
    CHECK(&file.at(view.name) == &view);
  }
  CHECK(file.at("scalar.f64").numel() == 1);
  CHECK(file.at("empty").numel() == 0);
  CHECK(file.at("u16.empty").nbytes == 0);
  CHECK(file.find("absent") == nullptr);
  CHECK(file.metadata() == std::map<std::string, std::string>{
                               {"format", "pt"}, {"note", "tab\there, quote \" and ünïcode"}});
  CHECK(file.path() == path);
}

TEST_CASE("safetensors writer is deterministic and matches the hand-written layout") {
  test::TempDir dir;
  SECTION("same adds give byte-identical files") {
    varied_writer().write(dir.path() / "a.safetensors");
    varied_writer().write(dir.path() / "b.safetensors");
    CHECK(read_bytes(dir.path() / "a.safetensors") == read_bytes(dir.path() / "b.safetensors"));
  }
  SECTION("golden bytes") {
    // Written out by hand from the format description: compact JSON, metadata first, padded
    // with 3 spaces so 8 + 88 is a multiple of 8, then 1.0f and -2.0f little-endian.
    const float values[] = {1.0f, -2.0f};
    io::SafetensorsWriter writer;
    writer.add("w", Dtype::F32, {2}, values, sizeof values);
    writer.set_metadata("format", "pt");
    writer.write(dir.path() / "golden.safetensors");
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})"
        "   ";
    const std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
    CHECK(read_bytes(dir.path() / "golden.safetensors") == file_bytes(header, data));
  }
  SECTION("no tensors and no metadata") {
    io::SafetensorsWriter().write(dir.path() / "empty.safetensors");
    CHECK(read_bytes(dir.path() / "empty.safetensors") == file_bytes("{}      ", ""));
    const io::SafetensorsFile file(dir.path() / "empty.safetensors");
    CHECK(file.tensors().empty());
    CHECK(file.metadata().empty());
  }
}

TEST_CASE("safetensors data starts 8-byte aligned whatever the header length") {
  test::TempDir dir;
  const fs::path path = dir.path() / "aligned.safetensors";
  const uint8_t byte = 7;
  // Name lengths 1..16 walk the JSON length through every residue modulo 8.
  for (size_t name_length = 1; name_length <= 16; ++name_length) {
    io::SafetensorsWriter writer;
    writer.add(std::string(name_length, 'n'), Dtype::U8, {1}, &byte, 1);
    writer.write(path);
    const std::string file = read_bytes(path);
    const uint64_t header_length = header_length_of(file);
    INFO("name length " << name_length);
    CHECK((8 + header_length) % 8 == 0);
    const std::string header = file.substr(8, header_length);
    const size_t last_brace = header.rfind('}');
    CHECK(header.find_first_not_of(' ', last_brace + 1) == std::string::npos);  // spaces only
    CHECK(nlohmann::json::parse(header).is_object());
    CHECK(io::SafetensorsFile(path).at(std::string(name_length, 'n')).data[0] == byte);
  }
}

TEST_CASE("a hand-built safetensors file is read correctly") {
  // Assembled here byte by byte, independently of the writer: header keys out of offset order,
  // metadata last, space padding, a 0-d scalar and an empty tensor sharing an offset.
  const std::string header = R"({"b":{"dtype":"I16","shape":[2],"data_offsets":[4,8]},)"
                             R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                             R"("z":{"dtype":"BF16","shape":[2,0],"data_offsets":[8,8]},)"
                             R"("__metadata__":{"k":"v"}})"
                             "        ";
  // a = 0.5f (0x3F000000), b = {-2, 300} as little-endian int16.
  const std::string data("\x00\x00\x00\x3f\xfe\xff\x2c\x01", 8);
  test::TempDir dir;
  const fs::path path = dir.path() / "hand.safetensors";
  write_bytes(path, file_bytes(header, data));

  const io::SafetensorsFile file(path);
  REQUIRE(file.tensors().size() == 3);
  CHECK(file.tensors()[0].name == "a");  // ordered by offset, not by header position
  CHECK(file.tensors()[1].name == "b");
  CHECK(file.tensors()[2].name == "z");

  const io::TensorView& a = file.at("a");
  CHECK(a.dtype == Dtype::F32);
  CHECK(a.shape.empty());
  CHECK(a.numel() == 1);
  float a_value = 0;
  REQUIRE(a.nbytes == sizeof a_value);
  std::memcpy(&a_value, a.data, sizeof a_value);
  CHECK(a_value == 0.5f);

  const io::TensorView& b = file.at("b");
  CHECK(b.shape == std::vector<int64_t>{2});
  int16_t b_values[2] = {};
  REQUIRE(b.nbytes == sizeof b_values);
  std::memcpy(b_values, b.data, sizeof b_values);
  CHECK(b_values[0] == -2);
  CHECK(b_values[1] == 300);

  CHECK(file.at("z").nbytes == 0);
  CHECK(file.at("z").shape == std::vector<int64_t>{2, 0});
  CHECK(file.metadata() == std::map<std::string, std::string>{{"k", "v"}});
}

TEST_CASE("truncated safetensors files are rejected at every cut") {
  test::TempDir dir;
  const fs::path whole_path = dir.path() / "whole.safetensors";
  varied_writer().write(whole_path);
  const std::string whole = read_bytes(whole_path);
  const size_t data_start = 8 + header_length_of(whole);
  REQUIRE(data_start < whole.size());

  const fs::path path = dir.path() / "cut.safetensors";
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}}) {
    INFO("cut at " << cut);
    require_rejected(path, whole.substr(0, cut), {"shorter than the 8-byte", "truncated"});
  }
  for (size_t cut : {size_t{8}, size_t{9}, size_t{40}, data_start / 2, data_start - 1}) {
    INFO("cut at " << cut << " (inside the header)");
    require_rejected(path, whole.substr(0, cut), {"header length field says", "truncated"});
  }
  for (size_t cut :
       {data_start, data_start + 1, (data_start + whole.size()) / 2, whole.size() - 1}) {
    INFO("cut at " << cut << " (inside the data)");
    require_rejected(path, whole.substr(0, cut), {"past the end of the data buffer", "truncated"});
  }
}

TEST_CASE("safetensors header problems are rejected with a clear message") {
  test::TempDir dir;
  const fs::path path = dir.path() / "bad.safetensors";

  SECTION("header length larger than the file") {
    require_rejected(
        path, le64(1000) + "{}",
        {"header length field says 1000 bytes but only 2 bytes follow", "not a safetensors file"});
  }
  SECTION("header larger than the format's limit") {
    // A sparse file just long enough to hold the oversized header: the limit is checked before
    // anything is parsed.
    const uint64_t too_long = io::kSafetensorsMaxHeaderBytes + 1;
    write_bytes(path, le64(too_long) + "{");
    fs::resize_file(path, 8 + too_long);
    const std::string message = rejection_message(path);
    CHECK_THAT(message, Catch::Contains("more than the format's limit of 100000000"));
  }
  SECTION("header not starting with '{'") {
    require_rejected(path, file_bytes("[1, 2]  ", ""), {"does not start with '{'"});
    require_rejected(path, file_bytes(" {}     ", ""), {"does not start with '{'"});
    require_rejected(path, file_bytes("", ""), {"does not start with '{'"});
  }
  SECTION("malformed JSON") {
    require_rejected(path, file_bytes(R"({"w":{"dtype":"F32",)", ""), {"not valid JSON"});
    require_rejected(path, file_bytes(R"({"w":1} trailing)", ""), {"not valid JSON"});
    require_rejected(path, file_bytes("{\"\xff\":1}", ""), {"not valid JSON"});  // not UTF-8
    // nlohmann would stop at the NUL and ignore what follows.
    require_rejected(path, file_bytes(std::string("{}\0\0", 4), ""), {"NUL byte at offset 2"});
    require_rejected(path, file_bytes(std::string("{}\0{\"x\"", 6), ""), {"NUL byte"});
  }
  SECTION("duplicate keys") {
    // nlohmann's DOM silently keeps the last of duplicate keys; the reader must not.
    const std::string entry = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
    require_rejected(path, file_bytes(R"({"w":)" + entry + R"(,"w":)" + entry + "}", "x"),
                     {"names 'w' twice", "duplicate"});
    require_rejected(
        path,
        file_bytes(R"({"w":{"dtype":"F32","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
        {"'w' has the key 'dtype' twice"});
    require_rejected(path, file_bytes(R"({"__metadata__":{"a":"1","a":"2"}})", ""),
                     {"'__metadata__' has the key 'a' twice"});
  }
  SECTION("metadata that is not a string-to-string map") {
    require_rejected(path, file_bytes(R"({"__metadata__":[1]})", ""),
                     {"\"__metadata__\" must be an object", "found array"});
    require_rejected(path, file_bytes(R"({"__metadata__":{"epoch":3}})", ""),
                     {"value for 'epoch' must be a string, found number 3"});
  }
  SECTION("metadata null counts as absent, as in the reference reader") {
    write_bytes(path, file_bytes(R"({"__metadata__":null})", ""));
    CHECK(io::SafetensorsFile(path).metadata().empty());
  }
}

TEST_CASE("safetensors tensor entries are validated") {
  test::TempDir dir;
  const fs::path path = dir.path() / "bad.safetensors";
  // One F32 tensor 'w' with the given fields, over a buffer of `buffer_bytes` bytes.
  const auto one_tensor = [](const std::string& fields, size_t buffer_bytes) {
    return file_bytes(R"({"w":{)" + fields + "}}", std::string(buffer_bytes, '\x01'));
  };

  SECTION("entry is not an object") {
    require_rejected(path, file_bytes(R"({"w":5})", ""),
                     {"tensor 'w'", "expected an object", "found number 5"});
  }
  SECTION("missing field") {
    require_rejected(path, one_tensor(R"("dtype":"F32","shape":[1])", 4),
                     {"tensor 'w'", "\"data_offsets\" is missing", "re-export"});
  }
  SECTION("unknown dtype") {
    require_rejected(path, one_tensor(R"("dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1])", 1),
                     {"tensor 'w'", "'F8_E4M3'", "expected one of F64, F32"});
    require_rejected(path, one_tensor(R"("dtype":4,"shape":[1],"data_offsets":[0,4])", 4),
                     {"\"dtype\" must be a string", "found number 4"});
  }
  SECTION("shape not an array of non-negative integers") {
    for (const char* shape : {"[-1]", "[2.5]", "[1e2]", "3", "[\"2\"]", "[18446744073709551615]",
                              "[99999999999999999999]"}) {
      INFO("shape " << shape);
      require_rejected(
          path, one_tensor(str(R"("dtype":"F32","shape":)", shape, R"(,"data_offsets":[0,0])"), 0),
          {"tensor 'w'", "\"shape\" must be an array of non-negative integers"});
    }
  }
  SECTION("element count or byte count that overflows") {
    require_rejected(
        path,
        one_tensor(R"("dtype":"U8","shape":[4294967296,4294967296,4,0],"data_offsets":[0,0])", 0),
        {"tensor 'w'", "more elements than fit in a signed 64-bit count"});
    require_rejected(
        path, one_tensor(R"("dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0])", 0),
        {"tensor 'w'", "more bytes than this machine can address"});
  }
  SECTION("data_offsets malformed") {
    for (const char* offsets : {"[0]", "[0,4,8]", "[-4,0]", "[0,4.0]", "{}", "[\"0\",\"4\"]"}) {
      INFO("data_offsets " << offsets);
      require_rejected(path,
                       one_tensor(str(R"("dtype":"F32","shape":[1],"data_offsets":)", offsets), 4),
                       {"tensor 'w'", "\"data_offsets\" must be two non-negative integers"});
    }
    require_rejected(path, one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[4,0])", 4),
                     {"tensor 'w'", "[4, 0]", "expected begin <= end"});
  }
  SECTION("byte count that does not match the shape") {
    require_rejected(path, one_tensor(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])", 8),
                     {"tensor 'w'", "needs 12 bytes (3 x 4)", "hold 8", "re-export"});
  }
  SECTION("offsets outside the buffer") {
    require_rejected(path, one_tensor(R"("dtype":"F32","shape":[2],"data_offsets":[8,16])", 8),
                     {"tensor 'w'", "past the end of the data buffer, which holds 8 bytes"});
    require_rejected(path,
                     one_tensor(R"("dtype":"U8","shape":[0],)"
                                R"("data_offsets":[18446744073709551615,18446744073709551615])",
                                0),
                     {"tensor 'w'", "past the end"});
  }
  SECTION("overlapping tensors") {
    require_rejected(path,
                     file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                std::string(12, '\0')),
                     {"'a' (bytes [0, 8))", "'b' (bytes [4, 12))", "overlap"});
    // Two names for the very same bytes (the aliasing duplicate keys would otherwise allow).
    require_rejected(path,
                     file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                                std::string(4, '\0')),
                     {"overlap"});
  }
  SECTION("holes in the buffer") {
    require_rejected(
        path,
        file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   std::string(12, '\0')),
        {"bytes [4, 8) of the data buffer belong to no tensor", "between 'a' and 'b'"});
    require_rejected(path, one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])", 8),
                     {"bytes [0, 4) of the data buffer belong to no tensor", "before 'w'"});
    require_rejected(
        path, one_tensor(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])", 8),
        {"the last 4 bytes of the 8-byte data buffer belong to no tensor", "after 'w'"});
    require_rejected(path, file_bytes("{}", "xy"), {"the last 2 bytes"});
  }
}

TEST_CASE("foreign files are rejected as not safetensors") {
  test::TempDir dir;
  const fs::path path = dir.path() / "foreign.safetensors";
  // The PNG signature and the start of an IHDR chunk.
  const std::string png("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x01\x00\x00\x00\x01\x00",
                        24);
  require_rejected(path, png, {"not a safetensors file"});
  require_rejected(path, "hello, this is a text file and not a checkpoint\n",
                   {"not a safetensors file"});
  require_rejected(path, "", {"is 0 bytes long", "not a safetensors file"});
  core::Rng rng(2024);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng.next() & 0xFF);
  require_rejected(path, noise, {"not a safetensors file"});
  // A GGUF file starts with "GGUF" then a version: the length field reads as a huge number.
  require_rejected(path, std::string("GGUF\x03\x00\x00\x00", 8) + std::string(64, '\0'),
                   {"not a safetensors file"});

  const std::string missing = rejection_message(dir.path() / "missing.safetensors");
  CHECK_THAT(missing, Catch::Contains("does not exist"));
}

TEST_CASE("at() names the file and the missing tensor and lists close names") {
  test::TempDir dir;
  const fs::path path = dir.path() / "model.safetensors";
  io::SafetensorsWriter writer;
  const float value = 1.0f;
  for (const char* name : {"lm_head.weight", "model.layers.0.mlp.down.weight",
                           "model.layers.0.mlp.gate.weight", "model.norm.weight"}) {
    writer.add(name, Dtype::F32, {1}, &value, sizeof value);
  }
  writer.write(path);
  const io::SafetensorsFile file(path);
  try {
    (void)file.at("model.layers.0.mlp.up.weight");
    FAIL("at() did not throw");
  } catch (const FileError& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains(path.string()));
    CHECK_THAT(message, Catch::Contains("no tensor 'model.layers.0.mlp.up.weight'"));
    CHECK_THAT(message, Catch::Contains("holds 4 tensors"));
    // Closest first: the two sharing "model.layers.0.mlp."
    CHECK_THAT(message, Catch::Contains("'model.layers.0.mlp.down.weight', "
                                        "'model.layers.0.mlp.gate.weight', 'model.norm.weight'"));
  }
}

TEST_CASE("SafetensorsWriter treats bad adds as bugs") {
  io::SafetensorsWriter writer;
  const float values[4] = {};
  writer.add("w", Dtype::F32, {2, 2}, values, sizeof values);
  CHECK_THROWS_AS(writer.add("short", Dtype::F32, {2, 2}, values, 12), InternalError);
  CHECK_THROWS_AS(writer.add("w", Dtype::F32, {2, 2}, values, sizeof values), InternalError);
  CHECK_THROWS_AS(writer.add("", Dtype::F32, {1}, values, 4), InternalError);
  CHECK_THROWS_AS(writer.add("__metadata__", Dtype::F32, {1}, values, 4), InternalError);
  CHECK_THROWS_AS(writer.add("negative", Dtype::F32, {-1}, values, 0), InternalError);
  CHECK_THROWS_AS(writer.add("null", Dtype::F32, {1}, nullptr, 4), InternalError);
  CHECK_THROWS_AS(writer.add("\xff", Dtype::U8, {1}, values, 1), InternalError);
  CHECK_THROWS_AS(writer.add("huge", Dtype::U8, {1LL << 62, 1LL << 62}, values, 0), InternalError);
  CHECK_THROWS_AS(writer.set_metadata("k", "\xc3"), InternalError);
}

TEST_CASE("corrupted safetensors files open cleanly or throw FileError, never crash") {
  // Random bit flips, byte overwrites with JSON punctuation, truncations and extensions of a
  // valid file. Most edits hit the header, where the parser and the validation live.
  constexpr int kIterations = 2000;
  test::TempDir dir;
  const fs::path valid_path = dir.path() / "valid.safetensors";
  varied_writer().write(valid_path);
  const std::string valid = read_bytes(valid_path);
  const size_t data_start = 8 + header_length_of(valid);
  const std::string punctuation = "{}[]:,\"0123456789-. e";

  core::Rng rng(20240611);
  const fs::path path = dir.path() / "fuzzed.safetensors";
  int opened = 0, rejected = 0;
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng.below(4));
    for (int edit = 0; edit < edits && !bytes.empty(); ++edit) {
      // Three in four edits land in the length field or the header.
      const size_t region = rng.below(4) == 0 ? bytes.size() : std::min(bytes.size(), data_start);
      const size_t at = rng.below(region);
      switch (rng.below(5)) {
        case 0:
          bytes[at] = static_cast<char>(bytes[at] ^ (1 << rng.below(8)));
          break;
        case 1:
          bytes[at] = punctuation[rng.below(punctuation.size())];
          break;
        case 2:
          bytes[at] = static_cast<char>(rng.below(256));
          break;
        case 3:
          bytes.resize(at);
          break;
        default:
          bytes.append(1 + rng.below(16), static_cast<char>(rng.below(256)));
          break;
      }
    }
    write_bytes(path, bytes);
    try {
      const io::SafetensorsFile file(path);
      ++opened;
      // Everything the reader hands out must lie inside the file: touch every byte.
      size_t total = 0;
      unsigned checksum = 0;
      for (const io::TensorView& view : file.tensors()) {
        REQUIRE(static_cast<size_t>(view.numel()) * io::dtype_size(view.dtype) == view.nbytes);
        for (size_t i = 0; i < view.nbytes; ++i) checksum += view.data[i];
        total += view.nbytes;
      }
      REQUIRE(total <= bytes.size());
      (void)checksum;
    } catch (const FileError&) {
      ++rejected;
    }
  }
  CHECK(opened + rejected == kIterations);
  CHECK(opened > 0);  // data-only edits keep the file valid
  CHECK(rejected > kIterations / 2);
}

// ---------------------------------------------------------------------------------------------
// f16 and bf16

namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// The value of a finite f16 bit pattern, from the definition (IEEE 754 binary16: bias 15, 10
// fraction bits, subnormals scaled by 2^-24), independent of f16_to_float's bit manipulation.
double f16_value_by_definition(uint16_t half) {
  const int exponent = (half >> 10) & 0x1F;
  const int fraction = half & 0x3FF;
  const double magnitude =
      exponent == 0 ? std::ldexp(fraction, -24) : std::ldexp(1024 + fraction, exponent - 25);
  return (half & 0x8000) ? -magnitude : magnitude;
}

constexpr uint16_t kF16MaxFinite = 0x7BFF;  // 65504
constexpr uint16_t kF16Infinity = 0x7C00;

// Nearest f16 to a finite non-negative float by search over the table of all finite f16 values,
// ties to the even bit pattern; at or past 65520 (65504 + half its ulp) IEEE overflow gives inf.
uint16_t nearest_f16_by_search(float value, const std::vector<double>& f16_values) {
  const double x = value;
  if (x >= 65520.0) return kF16Infinity;
  // f16_values[h] is the value of pattern h, increasing in h.
  const auto above = std::upper_bound(f16_values.begin(), f16_values.end(), x);
  const auto low = static_cast<uint16_t>((above - f16_values.begin()) - 1);
  if (f16_values[low] == x || low == kF16MaxFinite) return low;
  const double below_gap = x - f16_values[low];
  const double above_gap = f16_values[low + 1] - x;
  if (below_gap < above_gap) return low;
  if (above_gap < below_gap) return static_cast<uint16_t>(low + 1);
  return (low & 1) ? static_cast<uint16_t>(low + 1) : low;
}

std::vector<double> finite_f16_values() {
  std::vector<double> values(kF16MaxFinite + 1);
  for (uint16_t h = 0; h <= kF16MaxFinite; ++h) values[h] = f16_value_by_definition(h);
  return values;
}

bool is_quiet_f16_nan(uint16_t half) {
  return (half & 0x7E00) == 0x7E00;
}

}  // namespace

TEST_CASE("float_to_f16 and f16_to_float on known values") {
  CHECK(io::float_to_f16(1.0f) == 0x3C00);
  CHECK(io::float_to_f16(-1.0f) == 0xBC00);
  CHECK(io::float_to_f16(0.5f) == 0x3800);
  CHECK(io::float_to_f16(-2.0f) == 0xC000);
  CHECK(io::float_to_f16(0.0f) == 0x0000);
  CHECK(io::float_to_f16(-0.0f) == 0x8000);
  CHECK(io::float_to_f16(65504.0f) == 0x7BFF);  // largest finite
  CHECK(io::float_to_f16(65519.0f) == 0x7BFF);  // below the midpoint to 2^16
  CHECK(io::float_to_f16(65520.0f) == 0x7C00);  // the midpoint rounds to even: infinity
  CHECK(io::float_to_f16(1e6f) == 0x7C00);
  CHECK(io::float_to_f16(-1e6f) == 0xFC00);
  CHECK(io::float_to_f16(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(io::float_to_f16(-std::numeric_limits<float>::infinity()) == 0xFC00);
  CHECK(io::float_to_f16(std::ldexp(1.0f, -14)) == 0x0400);     // smallest normal
  CHECK(io::float_to_f16(std::ldexp(1.0f, -24)) == 0x0001);     // smallest subnormal
  CHECK(io::float_to_f16(std::ldexp(1023.0f, -24)) == 0x03FF);  // largest subnormal
  CHECK(io::float_to_f16(std::ldexp(1.0f, -25)) == 0x0000);     // tie between 0 and 2^-24: even
  CHECK(io::float_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(io::float_to_f16(std::ldexp(3.0f, -25)) == 0x0002);     // tie between 1 and 2 units: even
  CHECK(io::float_to_f16(std::ldexp(5.0f, -25)) == 0x0002);     // tie between 2 and 3 units: even
  CHECK(io::float_to_f16(std::ldexp(2047.0f, -25)) == 0x0400);  // tie rounds up into the normals
  CHECK(io::float_to_f16(1e-10f) == 0x0000);
  CHECK(io::float_to_f16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(io::float_to_f16(0.1f) == 0x2E66);
  CHECK(io::float_to_f16(1.0f / 3.0f) == 0x3555);
  // Ties between neighbours 2^-10 apart near 1: to the even mantissa.
  CHECK(io::float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(io::float_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);
  CHECK(io::float_to_f16(2049.0f) == 0x6800);  // f16 step is 2 here: 2049 -> 2048 (even)
  CHECK(io::float_to_f16(2051.0f) == 0x6802);  // 2051 -> 2052 (even)
  CHECK(io::float_to_f16(2050.0f) == 0x6801);

  CHECK(io::f16_to_float(0x3C00) == 1.0f);
  CHECK(io::f16_to_float(0xC000) == -2.0f);
  CHECK(io::f16_to_float(0x7BFF) == 65504.0f);
  CHECK(io::f16_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(io::f16_to_float(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(io::f16_to_float(0x3555) == 0.333251953125f);
  CHECK(std::isinf(io::f16_to_float(0xFC00)));
  CHECK(std::signbit(io::f16_to_float(0x8000)));

  // NaN stays NaN, quiet, with its sign.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(is_quiet_f16_nan(io::float_to_f16(nan)));
  CHECK(is_quiet_f16_nan(io::float_to_f16(-nan)));
  CHECK((io::float_to_f16(-nan) & 0x8000) != 0);
  CHECK(is_quiet_f16_nan(io::float_to_f16(float_of(0x7F800001))));  // payload only in low bits
  CHECK(is_quiet_f16_nan(io::float_to_f16(float_of(0x7FA00000))));  // signalling NaN
  CHECK(std::isnan(io::f16_to_float(0x7E00)));
  CHECK(std::isnan(io::f16_to_float(0x7C01)));
}

TEST_CASE("every f16 bit pattern converts exactly and survives f16 -> float -> f16") {
  for (uint32_t pattern = 0; pattern <= 0xFFFF; ++pattern) {
    const auto half = static_cast<uint16_t>(pattern);
    const float value = io::f16_to_float(half);
    const bool is_nan = (half & 0x7C00) == 0x7C00 && (half & 0x03FF) != 0;
    if (is_nan) {
      REQUIRE(std::isnan(value));
      REQUIRE(std::signbit(value) == ((half & 0x8000) != 0));
      const uint16_t back = io::float_to_f16(value);
      REQUIRE(is_quiet_f16_nan(back));
      REQUIRE((back & 0x8000) == (half & 0x8000));
      REQUIRE((back | 0x0200) == (half | 0x0200));  // payload kept, quiet bit set
    } else if ((half & 0x7C00) == 0x7C00) {
      REQUIRE(std::isinf(value));
      REQUIRE(io::float_to_f16(value) == half);
    } else {
      REQUIRE(static_cast<double>(value) == f16_value_by_definition(half));
      REQUIRE(io::float_to_f16(value) == half);  // including -0 and the subnormals
    }
  }
}

TEST_CASE("float_to_f16 rounds to nearest even, checked against a search over all f16 values") {
  const std::vector<double> f16_values = finite_f16_values();
  SECTION("every midpoint between neighbours, and the floats just beside it") {
    for (uint16_t low = 0; low < kF16MaxFinite; ++low) {
      const auto high = static_cast<uint16_t>(low + 1);
      // Neighbours have at most 11 significant bits, so their midpoint is exact in a float.
      const float midpoint = static_cast<float>((f16_values[low] + f16_values[high]) / 2);
      REQUIRE(static_cast<double>(midpoint) == (f16_values[low] + f16_values[high]) / 2);
      const uint16_t even = (low & 1) ? high : low;
      REQUIRE(io::float_to_f16(midpoint) == even);
      REQUIRE(io::float_to_f16(-midpoint) == (even | 0x8000));
      REQUIRE(io::float_to_f16(std::nextafter(midpoint, 0.0f)) == low);
      REQUIRE(io::float_to_f16(std::nextafter(midpoint, 1e9f)) == high);
    }
  }
  SECTION("a sweep over float bit patterns") {
    // Every 509th positive finite float (prime stride, so all mantissa residues come up).
    constexpr uint32_t kStride = 509;
    for (uint32_t bits = 0; bits < 0x7F800000; bits += kStride) {
      const float value = float_of(bits);
      const uint16_t expected = nearest_f16_by_search(value, f16_values);
      if (io::float_to_f16(value) != expected) {
        FAIL("float bits 0x" << std::hex << bits << ": got 0x" << io::float_to_f16(value)
                             << ", expected 0x" << expected);
      }
      REQUIRE(io::float_to_f16(-value) == (expected | 0x8000));
    }
  }
}

TEST_CASE("float_to_bf16 and bf16_to_float") {
  SECTION("known values") {
    CHECK(io::float_to_bf16(1.0f) == 0x3F80);
    CHECK(io::float_to_bf16(-2.5f) == 0xC020);
    CHECK(io::float_to_bf16(3.14159265f) == 0x4049);  // 0x40490FDB: low half below the midpoint
    CHECK(io::float_to_bf16(0.0f) == 0x0000);
    CHECK(io::float_to_bf16(-0.0f) == 0x8000);
    CHECK(io::float_to_bf16(float_of(0x3F808000)) == 0x3F80);  // tie, even stays
    CHECK(io::float_to_bf16(float_of(0x3F818000)) == 0x3F82);  // tie, odd rounds up to even
    CHECK(io::float_to_bf16(float_of(0x3F808001)) == 0x3F81);  // just above the tie
    CHECK(io::float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to inf
    CHECK(io::float_to_bf16(float_of(0x7F7F7FFF)) == 0x7F7F);  // just below: largest finite
    CHECK(io::float_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
    CHECK(io::float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
    CHECK(io::float_to_bf16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(io::float_to_bf16(float_of(0x00018000)) == 0x0002);  // subnormal tie to even
    CHECK(io::bf16_to_float(0x3F80) == 1.0f);
    CHECK(io::bf16_to_float(0xC020) == -2.5f);
    CHECK(std::isinf(io::bf16_to_float(0xFF80)));
  }
  SECTION("NaN becomes a quiet NaN with its sign") {
    CHECK(io::float_to_bf16(float_of(0x7F800001)) == 0x7FC0);  // signalling, low payload
    CHECK(io::float_to_bf16(float_of(0xFFC00000)) == 0xFFC0);
    CHECK(io::float_to_bf16(float_of(0x7FFFFFFF)) == 0x7FFF);  // never rounds over to inf
    CHECK(std::isnan(io::bf16_to_float(io::float_to_bf16(std::nanf("")))));
  }
  SECTION("every bf16 pattern survives bf16 -> float -> bf16") {
    for (uint32_t pattern = 0; pattern <= 0xFFFF; ++pattern) {
      const auto bf16 = static_cast<uint16_t>(pattern);
      const float value = io::bf16_to_float(bf16);
      REQUIRE(bits_of(value) == pattern << 16);
      if (std::isnan(value)) {
        REQUIRE(io::float_to_bf16(value) == (bf16 | 0x0040));
      } else {
        REQUIRE(io::float_to_bf16(value) == bf16);
      }
    }
  }
  SECTION("a sweep over float bit patterns against nearest-by-distance") {
    // The two bf16 values around x are x truncated and that plus one bf16 ulp (2^128 in place
    // of infinity, as IEEE overflow rounding treats it); pick the nearer in double, ties to even.
    constexpr uint32_t kStride = 509;
    for (uint32_t bits = 0; bits < 0x7F800000; bits += kStride) {
      const float value = float_of(bits);
      const uint32_t low = bits >> 16;
      const double low_value = io::bf16_to_float(static_cast<uint16_t>(low));
      const double high_value =
          low == 0x7F7F ? std::ldexp(1.0, 128) : io::bf16_to_float(static_cast<uint16_t>(low + 1));
      const double below_gap = static_cast<double>(value) - low_value;
      const double above_gap = high_value - static_cast<double>(value);
      const uint32_t expected = below_gap < above_gap   ? low
                                : above_gap < below_gap ? low + 1
                                : (low & 1)             ? low + 1
                                                        : low;
      REQUIRE(io::float_to_bf16(value) == expected);
      REQUIRE(io::float_to_bf16(-value) == (expected | 0x8000));
    }
  }
}
