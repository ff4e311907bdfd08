// io layer: GGUF tensor types, the reference quantizers, and the GGUF reader and writer
// (ggml's format; docs/quantization.md and docs/runtime.md).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "io/gguf.h"
#include "io/gguf_parse.h"
#include "io/gguf_quants.h"
#include "io/half.h"
#include "random_values.h"
#include "test_util.h"

using namespace edgedistill;
using io::GgmlType;
using io::GgufValue;
using io::GgufValueType;
using test::unit_normal;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Tolerances

// f16 keeps 11 significant bits: rounding to nearest moves a normal value by at most 2^-11 of
// its magnitude, and a subnormal one by at most half the smallest subnormal, 2^-25.
constexpr double kF16RelativeError = 0x1p-11;
constexpr double kF16AbsoluteErrorFloor = 0x1p-25;
// Errors in steps of the stored (f16) d. Codes round x / d to the nearest grid point: half a step
// of the unrounded d. Rounding d to f16 (relative error <= 2^-11) moves a decoded value by at most
// |q| * d * 2^-11, and turns half an unrounded step into at most 0.5 + 2^-12 stored ones: hence
// (largest |q| + 1) * 2^-11 on top of the half step.
constexpr double kQ8MaxErrorSteps = 0.5 + (127 + 1) * 0x1p-11;
constexpr double kQ4_0MaxErrorSteps = 0.5 + (8 + 1) * 0x1p-11;
// Q4_0 elements opposite the largest one round to code 16 when x / d >= 7.5 and are clipped to 15
// (decoded as 7 * d): up to one whole step there.
constexpr double kQ4_0ClippedMaxErrorSteps = 1.0 + (8 + 1) * 0x1p-11;
// Q4_1 codes are 0..15; f16 rounding of m adds |m| * 2^-11 on its own.
constexpr double kQ4_1MaxErrorSteps = 0.5 + (15 + 1) * 0x1p-11;
// Rounding to a grid of step d leaves an error uniform in [-d/2, d/2], so the RMSE predicted from
// each block's own step is step / sqrt(12). The elements that set the scale decode exactly (Q8_0:
// 1 of 32, Q4_1: 2 of 32, Q4_0: 1, but its clipped elements add error), so on the 16384
// unit-normal values below the measured ratios to the prediction are 0.98 (Q8_0), 0.99 (Q4_0) and
// 0.96 (Q4_1); the limit leaves a 10 % margin above 1, and a ratio under 0.8 would mean the
// quantizer or the prediction is wrong.
constexpr double kRmseOverGridPredictionMax = 1.10;
constexpr double kRmseOverGridPredictionMin = 0.80;

// ---------------------------------------------------------------------------------------------
// Helpers

template <class Block>
std::vector<uint8_t> block_bytes(const Block& block) {
  std::vector<uint8_t> bytes(sizeof block);
  std::memcpy(bytes.data(), &block, sizeof block);
  return bytes;
}

std::string le32(uint32_t value) {
  std::string bytes;
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

std::string le64(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

std::string gguf_string(std::string_view text) {
  return le64(text.size()) + std::string(text);
}

std::string f32_bytes(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return le32(bits);
}

// A key/value record: key, value type id (any number, to build bad files), value bytes.
std::string kv_record(std::string_view key, uint32_t type_id, const std::string& value) {
  return gguf_string(key) + le32(type_id) + value;
}

std::string kv_record(std::string_view key, GgufValueType type, const std::string& value) {
  return kv_record(key, static_cast<uint32_t>(type), value);
}

// A tensor-info record: name, n_dims (= dims.size()), dims, ggml type id, offset.
std::string tensor_record(std::string_view name, const std::vector<uint64_t>& dims,
                          uint32_t type_id, uint64_t offset) {
  std::string record = gguf_string(name) + le32(static_cast<uint32_t>(dims.size()));
  for (const uint64_t dim : dims) record += le64(dim);
  return record + le32(type_id) + le64(offset);
}

std::string pattern(size_t count, uint8_t seed) {
  std::string bytes(count, '\0');
  for (size_t i = 0; i < count; ++i) bytes[i] = static_cast<char>(seed + 29 * i);
  return bytes;
}

// A GGUF file assembled by hand from the spec's layout, so each field can be broken on its own.
struct HandFile {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count;  // overrides the number of `tensors`
  std::optional<uint64_t> kv_count;      // overrides the number of `kvs`
  std::vector<std::string> kvs;          // whole key/value records
  std::vector<std::string> tensors;      // whole tensor-info records
  uint64_t alignment = 32;               // for the zero padding before the data section
  std::string data;                      // the data section

  std::string bytes() const {
    std::string out = magic + le32(version) + le64(tensor_count.value_or(tensors.size())) +
                      le64(kv_count.value_or(kvs.size()));
    for (const std::string& record : kvs) out += record;
    for (const std::string& record : tensors) out += record;
    if (!tensors.empty()) out.append((alignment - out.size() % alignment) % alignment, '\0');
    return out + data;
  }
};

// Two keys and three tensors: 'a' f32 {8} (32 bytes at 0), 'b' q4_0 {32, 2} (36 bytes at 32,
// padded to 64), 'c' f16 {4} (8 bytes at 96, padded to 32).
HandFile valid_hand_file() {
  HandFile file;
  file.kvs = {kv_record("general.architecture", GgufValueType::string, gguf_string("llama")),
              kv_record("test.scale", GgufValueType::float32, f32_bytes(0.5f))};
  file.tensors = {tensor_record("a", {8}, 0, 0), tensor_record("b", {32, 2}, 2, 32),
                  tensor_record("c", {4}, 1, 96)};
  file.data = pattern(32, 1) + pattern(36, 2) + std::string(28, '\0') + pattern(8, 3) +
              std::string(24, '\0');
  return file;
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

// Parses `bytes` from an exactly-sized heap copy: under AddressSanitizer a read one byte past the
// end is reported (a memory map hides it inside its last page).
io::GgufLayout parse_exact_copy(const std::string& bytes) {
  const std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  return io::parse_gguf("in-memory.gguf", copy.empty() ? nullptr : copy.data(), copy.size());
}

// Requires `action` to throw FileError; returns its message.
template <class Action>
std::string file_error_of(Action&& action) {
  try {
    action();
  } catch (const FileError& e) {
    return e.what();
  }
  FAIL("no FileError was thrown");
  return {};
}

// The file must be refused, from disk and from memory, with a one-line message naming the file,
// holding every fragment, and ending with a fix.
void require_rejected(const fs::path& path, const std::string& bytes,
                      std::initializer_list<std::string_view> fragments) {
  write_bytes(path, bytes);
  const std::string message = file_error_of([&] { io::GgufReader reader(path); });
  INFO("message: " << message);
  CHECK_THAT(message, Catch::Contains(path.string()));
  CHECK(message.find('\n') == std::string::npos);
  const bool has_hint =
      message.find("re-export it with `edgedistill export`") != std::string::npos ||
      message.find("the file is truncated or not a GGUF file") != std::string::npos;
  CHECK(has_hint);
  for (std::string_view fragment : fragments) {
    CHECK_THAT(message, Catch::Contains(std::string(fragment)));
  }
  const std::string in_memory = file_error_of([&] { parse_exact_copy(bytes); });
  CHECK(in_memory.substr(in_memory.find("': ")) == message.substr(message.find("': ")));
}

GgufValue integer_value(GgufValueType type, uint64_t integer) {
  GgufValue value;
  value.type = type;
  value.integer = integer;
  return value;
}

GgufValue f64_value(double number) {
  GgufValue value;
  value.type = GgufValueType::float64;
  value.number = number;
  return value;
}

uint64_t as_u64(int64_t value) {
  return static_cast<uint64_t>(value);  // how GgufValue holds signed integers
}

// ---------------------------------------------------------------------------------------------
// The spec's reference formulas written out plainly, for comparing on many random blocks. Each
// computes the codes first and then packs them as the spec states (byte j: element j in the low
// nibble, element j + 16 in the high one).

io::Q8_0Block spec_q8_0(const float* x) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d == 0 ? 0.0f : 1 / d;
  io::Q8_0Block block{};
  block.d = io::float_to_f16(d);
  for (int j = 0; j < 32; ++j) block.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  return block;
}

io::Q4_0Block spec_q4_0(const float* x) {
  int largest = 0;  // the first element of largest magnitude
  for (int j = 1; j < 32; ++j) {
    if (std::fabs(x[j]) > std::fabs(x[largest])) largest = j;
  }
  const float d = x[largest] / -8;
  const float id = d == 0 ? 0.0f : 1 / d;
  int codes[32];
  for (int j = 0; j < 32; ++j)
    codes[j] = std::min(15, static_cast<int>(std::trunc(x[j] * id + 8.5f)));
  io::Q4_0Block block{};
  block.d = io::float_to_f16(d);
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(codes[j] + 16 * codes[j + 16]);
  return block;
}

io::Q4_1Block spec_q4_1(const float* x) {
  const float min = *std::min_element(x, x + 32);
  const float max = *std::max_element(x, x + 32);
  const float d = (max - min) / 15;
  const float id = d == 0 ? 0.0f : 1 / d;
  int codes[32];
  for (int j = 0; j < 32; ++j) {
    codes[j] = std::min(15, static_cast<int>(std::trunc((x[j] - min) * id + 0.5f)));
  }
  io::Q4_1Block block{};
  block.d = io::float_to_f16(d);
  block.m = io::float_to_f16(min);
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(codes[j] + 16 * codes[j + 16]);
  return block;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Types

TEST_CASE("ggml type traits match the format table") {
  struct Expected {
    GgmlType type;
    uint32_t id;
    const char* name;
    int block_elems, block_bytes;
    bool quantized;
    uint32_t file_type;
  };
  // ggml's ggml_type ids and block sizes, and llama.cpp's general.file_type numbers.
  const Expected table[] = {
      {GgmlType::f32, 0, "f32", 1, 4, false, 0},
      {GgmlType::f16, 1, "f16", 1, 2, false, 1},
      {GgmlType::q4_0, 2, "q4_0", 32, 18, true, 2},
      {GgmlType::q4_1, 3, "q4_1", 32, 20, true, 3},
      {GgmlType::q8_0, 8, "q8_0", 32, 34, true, 7},
      // Q5_0: f16 + 4 bytes of fifth bits + 16 of nibbles; Q5_1 adds the f16 minimum
      // (general.file_type MOSTLY_Q5_0 8, MOSTLY_Q5_1 9).
      {GgmlType::q5_0, 6, "q5_0", 32, 22, true, 8},
      {GgmlType::q5_1, 7, "q5_1", 32, 24, true, 9},
      // K-quants: 256-element super-blocks; ggml's block_q4_K is 2 f16 + 12 + 128 bytes, q5_K
      // adds 32 bytes of high bits, q6_K is 128 + 64 + 16 + f16, q8_K f32 + 256 + 16 int16.
      // file_type: llama.cpp's MOSTLY_Q4_K_M 15, MOSTLY_Q5_K_M 17, MOSTLY_Q6_K 18.
      {GgmlType::q4_k, 12, "q4_k", 256, 144, true, 15},
      {GgmlType::q5_k, 13, "q5_k", 256, 176, true, 17},
      {GgmlType::q6_k, 14, "q6_k", 256, 210, true, 18},
      {GgmlType::q8_k, 15, "q8_k", 256, 292, true, 0},
  };
  for (const Expected& expected : table) {
    INFO(expected.name);
    const io::GgmlTypeTraits& traits = io::ggml_type_traits(expected.type);
    CHECK(static_cast<uint32_t>(traits.type) == expected.id);
    CHECK(traits.name == expected.name);
    CHECK(traits.block_elems == expected.block_elems);
    CHECK(traits.block_bytes == expected.block_bytes);
    CHECK(traits.quantized == expected.quantized);
    CHECK(traits.file_type == expected.file_type);
    REQUIRE(io::find_ggml_type(expected.id).has_value());
    CHECK(io::find_ggml_type(expected.id)->type == expected.type);
    CHECK(io::parse_ggml_type(expected.name) == expected.type);
  }
  CHECK(io::known_ggml_types().size() == std::size(table));
  for (const uint32_t unknown : {4u, 5u, 9u, 10u, 11u, 16u, 30u, 1000u}) {
    CHECK_FALSE(io::find_ggml_type(unknown).has_value());
  }
  CHECK_FALSE(io::parse_ggml_type("Q4_0").has_value());
  CHECK_FALSE(io::parse_ggml_type("Q4_K").has_value());
  CHECK_FALSE(io::parse_ggml_type("q4_k_m").has_value());  // a mix, not a tensor type

  CHECK(io::ggml_row_bytes(GgmlType::f32, 5) == 20);
  CHECK(io::ggml_row_bytes(GgmlType::f16, 5) == 10);
  CHECK(io::ggml_row_bytes(GgmlType::q4_0, 64) == 36);
  CHECK(io::ggml_row_bytes(GgmlType::q4_1, 96) == 60);
  CHECK(io::ggml_row_bytes(GgmlType::q8_0, 32) == 34);
  CHECK_THROWS_AS(io::ggml_row_bytes(GgmlType::q8_0, 48), InternalError);
  CHECK(io::ggml_row_bytes(GgmlType::q4_k, 512) == 288);
  CHECK(io::ggml_row_bytes(GgmlType::q6_k, 256) == 210);
  CHECK_THROWS_AS(io::ggml_row_bytes(GgmlType::q5_k, 128), InternalError);  // not a super-block
  CHECK_FALSE(io::ggml_nbytes(GgmlType::q4_k, {288, 2}).has_value());

  CHECK(io::ggml_nbytes(GgmlType::q4_1, {64, 3, 2}) == 2 * 20 * 3 * 2);
  CHECK(io::ggml_nbytes(GgmlType::f16, {7}) == 14);
  CHECK_FALSE(io::ggml_nbytes(GgmlType::q4_0, {48, 2}).has_value());             // not whole blocks
  CHECK_FALSE(io::ggml_nbytes(GgmlType::f32, {uint64_t{1} << 62}).has_value());  // 2^64 bytes
  CHECK_FALSE(io::ggml_nbytes(GgmlType::f32, {}).has_value());
}

// ---------------------------------------------------------------------------------------------
// Reference quantizers on blocks computed by hand

TEST_CASE("Q8_0 codes on hand-computed blocks") {
  SECTION("d = 1: codes are x rounded half away from zero") {
    // amax = 127 gives d = 127 / 127 = 1 exactly (f16 0x3C00) and 1 / d = 1, so each code is
    // roundf(x), written out by hand (2.5 -> 3, -2.5 -> -3, -0.4 -> 0).
    const float x[32] = {127,   -127,    0,      0.4f,    0.6f,     -0.4f,   -0.6f, 2.5f,
                         -2.5f, 3.5f,    -3.5f,  100.49f, -100.51f, 1,       -1,    64,
                         -50,   -42.75f, -35.5f, -28.25f, -21,      -13.75f, -6.5f, 0.75f,
                         8,     15.25f,  22.5f,  29.75f,  37,       44.25f,  51.5f, 58.75f};
    const int8_t codes[32] = {127, -127, 0, 0,  1,  0,   -1,  3,   -3,  4,   -4,
                              100, -101, 1, -1, 64, -50, -43, -36, -28, -21, -14,
                              -7,  1,    8, 15, 23, 30,  37,  44,  52,  59};
    io::Q8_0Block block;
    io::quantize_row_q8_0(x, 32, &block);
    CHECK(block.d == 0x3C00);
    for (int j = 0; j < 32; ++j) {
      INFO("element " << j);
      CHECK(block.qs[j] == codes[j]);
    }
    float y[32];
    io::dequantize_row_q8_0(&block, 32, y);
    for (int j = 0; j < 32; ++j) CHECK(y[j] == static_cast<float>(codes[j]));
  }
  SECTION("d = 1/127, stored as f16") {
    // Codes from Python: round-half-away(x * 127) in double; no x * 127 lies within 0.02 of a
    // half-integer, so float arithmetic cannot change them. f16(1/127) = 2^-7 * (1 + 8/1024):
    // exponent field 8, mantissa 8 -> 0x2008 (worked by hand).
    const float x[32] = {0.095f,  -0.874f, -0.881f, -0.588f, 0.361f,  -0.145f, -0.372f, -1.0f,
                         -0.094f, -0.4f,   0.589f,  0.398f,  -0.512f, 0.149f,  0.05f,   0.75f,
                         0.459f,  -0.424f, 0.96f,   -0.764f, -0.164f, 0.514f,  -0.696f, -0.022f,
                         -0.922f, 0.336f,  0.529f,  0.146f,  0.751f,  -0.373f, 0.391f,  0.189f};
    const int8_t codes[32] = {12,  -111, -112, -75, 46, -18, -47, -127, -12, -51, 75,
                              51,  -65,  19,   6,   95, 58,  -54, 122,  -97, -21, 65,
                              -88, -3,   -117, 43,  67, 19,  95,  -47,  50,  24};
    io::Q8_0Block block;
    io::quantize_row_q8_0(x, 32, &block);
    CHECK(block.d == 0x2008);
    for (int j = 0; j < 32; ++j) {
      INFO("element " << j);
      CHECK(block.qs[j] == codes[j]);
    }
  }
  SECTION("an all-zero block has d = 0 and zero codes") {
    const float x[32] = {};
    io::Q8_0Block block;
    io::quantize_row_q8_0(x, 32, &block);
    CHECK(block_bytes(block) == std::vector<uint8_t>(34, 0));
    float y[32];
    io::dequantize_row_q8_0(&block, 32, y);
    for (const float value : y) CHECK(value == 0.0f);
  }
}

TEST_CASE("Q4_0 codes, nibble order and sign rule on hand-computed blocks") {
  // The largest magnitude is x[3] = -8, so d = -8 / -8 = 1 (f16 0x3C00), 1 / d = 1 and each code
  // is min(15, trunc(x + 8.5)), worked by hand beside each value.
  const float x[32] = {
      0,     -0.4f, -0.6f, -8,   7,    7.4f,  7.6f,   0.5f,   // 8 8 7 0 15 15 15(16) 9
      -0.5f, 3.2f,  -3.7f, 1,    -1,   5.49f, -7.49f, 2,      // 8 11 4 9 7 13 1 10
      -7,    -6,    -5,    -4,   -3,   -2,    -1.2f,  0.2f,   // 1 2 3 4 5 6 7 8
      1.3f,  2.4f,  3.5f,  4.6f, 5.7f, 6.8f,  6.0f,   -7.9f,  // 9 10 12 13 14 15 14 0
  };
  const int codes[32] = {8, 8, 7, 0, 15, 15, 15, 9, 8, 11, 4,  9,  7,  13, 1,  10,
                         1, 2, 3, 4, 5,  6,  7,  8, 9, 10, 12, 13, 14, 15, 14, 0};
  // Byte j = code[j] | code[j + 16] << 4.
  const uint8_t qs[16] = {0x18, 0x28, 0x37, 0x40, 0x5F, 0x6F, 0x7F, 0x89,
                          0x98, 0xAB, 0xC4, 0xD9, 0xE7, 0xFD, 0xE1, 0x0A};

  SECTION("largest magnitude negative: d > 0") {
    io::Q4_0Block block;
    io::quantize_row_q4_0(x, 32, &block);
    CHECK(block.d == 0x3C00);
    for (int j = 0; j < 16; ++j) {
      INFO("byte " << j);
      CHECK(static_cast<int>(block.qs[j]) == static_cast<int>(qs[j]));
    }
    float y[32];
    io::dequantize_row_q4_0(&block, 32, y);
    for (int j = 0; j < 32; ++j) {
      INFO("element " << j);
      CHECK(y[j] == static_cast<float>(codes[j] - 8));
    }
  }
  SECTION("largest magnitude positive: d < 0, the same codes") {
    // Negating the block negates max and d (f16 0xBC00); x * (1 / d) is unchanged.
    float negated[32];
    for (int j = 0; j < 32; ++j) negated[j] = -x[j];
    io::Q4_0Block block;
    io::quantize_row_q4_0(negated, 32, &block);
    CHECK(block.d == 0xBC00);
    CHECK(std::equal(std::begin(qs), std::end(qs), std::begin(block.qs)));
  }
  SECTION("equal magnitudes: the first element sets the sign") {
    // x[0] = 4, x[1] = -4: max = 4, d = -0.5 (f16 0xB800), 1 / d = -2; codes trunc(-8 + 8.5) = 0,
    // min(15, trunc(8 + 8.5)) = 15, and 8 for the zeros. Swapped, d = +0.5 (0x3800).
    float tie[32] = {4, -4};
    io::Q4_0Block block;
    io::quantize_row_q4_0(tie, 32, &block);
    CHECK(block.d == 0xB800);
    CHECK(static_cast<int>(block.qs[0]) == 0x80);
    CHECK(static_cast<int>(block.qs[1]) == 0x8F);
    for (int j = 2; j < 16; ++j) CHECK(static_cast<int>(block.qs[j]) == 0x88);
    std::swap(tie[0], tie[1]);
    io::quantize_row_q4_0(tie, 32, &block);
    CHECK(block.d == 0x3800);
    CHECK(static_cast<int>(block.qs[0]) == 0x80);
    CHECK(static_cast<int>(block.qs[1]) == 0x8F);
  }
  SECTION("an all-zero block: d = -0 and every code 8") {
    // max = 0, d = 0 / -8 = -0.0f (f16 0x8000, as llama.cpp stores it), 1 / d -> 0, and
    // trunc(0 + 8.5) = 8 in both nibbles.
    const float zeros[32] = {};
    io::Q4_0Block block;
    io::quantize_row_q4_0(zeros, 32, &block);
    CHECK(block.d == 0x8000);
    for (const uint8_t byte : block.qs) CHECK(static_cast<int>(byte) == 0x88);
    float y[32];
    io::dequantize_row_q4_0(&block, 32, y);
    for (const float value : y) CHECK(value == 0.0f);
  }
}

TEST_CASE("Q4_1 codes and nibble order on hand-computed blocks") {
  SECTION("min -1, max 14: d = 1, m = -1") {
    // d = (14 - -1) / 15 = 1 (f16 0x3C00), m = -1 (0xBC00); code = min(15, trunc(x + 1 + 0.5)),
    // worked by hand beside each value.
    const float x[32] = {
        0,     0.4f, 0.6f,  13.4f,  13.6f, -1,   6.5f,  7,      // 1 1 2 14 15 0 8 8
        2.2f,  3.9f, 9.49f, 10.51f, 12,    5,    4.45f, 11,     // 3 5 10 12 13 6 5 12
        1,     2,    3,     4,      14,    8.2f, 0.1f,  -0.9f,  // 2 3 4 5 15 9 1 0
        13.9f, 9,    6,     7.7f,   3.3f,  5.5f, 10,    12.6f,  // 15 10 7 9 4 7 11 14
    };
    const int codes[32] = {1, 1, 2, 14, 15, 0, 8, 8, 3,  5,  10, 12, 13, 6, 5,  12,
                           2, 3, 4, 5,  15, 9, 1, 0, 15, 10, 7,  9,  4,  7, 11, 14};
    const uint8_t qs[16] = {0x21, 0x31, 0x42, 0x5E, 0xFF, 0x90, 0x18, 0x08,
                            0xF3, 0xA5, 0x7A, 0x9C, 0x4D, 0x76, 0xB5, 0xEC};
    io::Q4_1Block block;
    io::quantize_row_q4_1(x, 32, &block);
    CHECK(block.d == 0x3C00);
    CHECK(block.m == 0xBC00);
    for (int j = 0; j < 16; ++j) {
      INFO("byte " << j);
      CHECK(static_cast<int>(block.qs[j]) == static_cast<int>(qs[j]));
    }
    float y[32];
    io::dequantize_row_q4_1(&block, 32, y);
    for (int j = 0; j < 32; ++j) {
      INFO("element " << j);
      CHECK(y[j] == static_cast<float>(codes[j] - 1));
    }
  }
  SECTION("an all-zero block is all zero bytes") {
    // min = max = 0: d = 0, m = 0, codes trunc(0 + 0.5) = 0.
    const float zeros[32] = {};
    io::Q4_1Block block;
    io::quantize_row_q4_1(zeros, 32, &block);
    CHECK(block_bytes(block) == std::vector<uint8_t>(20, 0));
  }
  SECTION("a constant block decodes exactly through m") {
    std::vector<float> x(32, 3.0f);
    io::Q4_1Block block;
    io::quantize_row_q4_1(x.data(), 32, &block);
    CHECK(block.d == 0);
    CHECK(block.m == 0x4200);  // 3.0 = 2^1 * 1.5: exponent field 16, mantissa 512
    float y[32];
    io::dequantize_row_q4_1(&block, 32, y);
    for (const float value : y) CHECK(value == 3.0f);
  }
}

TEST_CASE("quantizers match the spec's formulas written out plainly on random blocks") {
  // 512 blocks at scales from 1e-3 to 1e3, some with a large outlier, some one-signed.
  const std::vector<float> normal = unit_normal(512 * 32, 11);
  for (int b = 0; b < 512; ++b) {
    std::vector<float> x(normal.begin() + b * 32, normal.begin() + (b + 1) * 32);
    const float scale = std::pow(10.0f, static_cast<float>(b % 7) - 3.0f);
    for (float& value : x) value *= scale;
    if (b % 5 == 1) x[b % 32] *= 20.0f;
    if (b % 9 == 2) {
      for (float& value : x) value = std::fabs(value);
    }
    INFO("block " << b);
    io::Q8_0Block q8;
    io::quantize_row_q8_0(x.data(), 32, &q8);
    CHECK(block_bytes(q8) == block_bytes(spec_q8_0(x.data())));
    io::Q4_0Block q40;
    io::quantize_row_q4_0(x.data(), 32, &q40);
    CHECK(block_bytes(q40) == block_bytes(spec_q4_0(x.data())));
    io::Q4_1Block q41;
    io::quantize_row_q4_1(x.data(), 32, &q41);
    CHECK(block_bytes(q41) == block_bytes(spec_q4_1(x.data())));
  }
}

TEST_CASE("rows that are not whole blocks are refused as a bug") {
  std::vector<float> x(48, 1.0f);
  io::Q8_0Block blocks[2];
  CHECK_THROWS_AS(io::quantize_row_q8_0(x.data(), 48, blocks), InternalError);
  CHECK_THROWS_AS(io::quantize_rows(GgmlType::q4_0, x.data(), 1, 48), InternalError);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(io::quantize_row_q8_0(x.data(), 32, blocks), InternalError);
}

// ---------------------------------------------------------------------------------------------
// Round-trip error on random data

TEST_CASE("dequantize(quantize(x)) stays within each type's error bound") {
  constexpr int64_t kRows = 64;
  constexpr int64_t kCols = 256;
  const std::vector<float> x = unit_normal(kRows * kCols, 2024);
  std::vector<float> y(x.size());

  SECTION("f32 is exact") {
    const std::vector<uint8_t> bytes = io::quantize_rows(GgmlType::f32, x.data(), kRows, kCols);
    REQUIRE(bytes.size() == x.size() * 4);
    io::dequantize_rows(GgmlType::f32, bytes.data(), kRows, kCols, y.data());
    CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  }
  SECTION("f16 rounds to nearest") {
    const std::vector<uint8_t> bytes = io::quantize_rows(GgmlType::f16, x.data(), kRows, kCols);
    REQUIRE(bytes.size() == x.size() * 2);
    io::dequantize_rows(GgmlType::f16, bytes.data(), kRows, kCols, y.data());
    for (size_t i = 0; i < x.size(); ++i) {
      const double bound = std::max(std::fabs(x[i]) * kF16RelativeError, kF16AbsoluteErrorFloor);
      REQUIRE(std::fabs(y[i] - x[i]) <= bound);
      uint16_t stored;
      std::memcpy(&stored, bytes.data() + 2 * i, 2);
      REQUIRE(stored == io::float_to_f16(x[i]));
    }
    // A second pass through f16 changes nothing.
    const std::vector<uint8_t> again = io::quantize_rows(GgmlType::f16, y.data(), kRows, kCols);
    CHECK(again == bytes);
  }
  SECTION("q8_0, q4_0, q4_1") {
    for (const GgmlType type : {GgmlType::q8_0, GgmlType::q4_0, GgmlType::q4_1}) {
      INFO(io::ggml_type_traits(type).name);
      const std::vector<uint8_t> bytes = io::quantize_rows(type, x.data(), kRows, kCols);
      REQUIRE(bytes.size() == kRows * io::ggml_row_bytes(type, kCols));
      io::dequantize_rows(type, bytes.data(), kRows, kCols, y.data());

      double squared_error = 0;
      double predicted_squared_error = 0;  // sum of step^2 / 12
      const size_t block_bytes = static_cast<size_t>(io::ggml_type_traits(type).block_bytes);
      for (size_t b = 0; b < x.size() / 32; ++b) {
        uint16_t d_bits;
        std::memcpy(&d_bits, bytes.data() + b * block_bytes, 2);  // d leads every block
        const float d = io::f16_to_float(d_bits);
        const double step = std::fabs(d);
        double allowance = 0;  // f16 rounding of Q4_1's m
        if (type == GgmlType::q4_1) {
          uint16_t m_bits;
          std::memcpy(&m_bits, bytes.data() + b * block_bytes + 2, 2);
          allowance = std::fabs(io::f16_to_float(m_bits)) * kF16RelativeError;
        }
        for (size_t j = b * 32; j < (b + 1) * 32; ++j) {
          double max_steps = kQ8MaxErrorSteps;
          if (type == GgmlType::q4_0) {
            const bool clipped = y[j] == 7 * d;  // code 15 (exact: 7 * an f16 fits in a float)
            max_steps = clipped ? kQ4_0ClippedMaxErrorSteps : kQ4_0MaxErrorSteps;
          }
          if (type == GgmlType::q4_1) max_steps = kQ4_1MaxErrorSteps;
          const double error = std::fabs(static_cast<double>(y[j]) - x[j]);
          INFO("block " << b << " element " << j << ": x " << x[j] << " y " << y[j] << " step "
                        << step);
          REQUIRE(error <= max_steps * step + allowance);
          squared_error += error * error;
        }
        predicted_squared_error += 32 * step * step / 12;
      }
      const double ratio = std::sqrt(squared_error / predicted_squared_error);
      INFO("RMSE / (step / sqrt(12)) = " << ratio);
      CHECK(ratio <= kRmseOverGridPredictionMax);
      CHECK(ratio >= kRmseOverGridPredictionMin);
    }
  }
}

TEST_CASE("quantize_rows lays rows back to back, as the row functions do") {
  constexpr int64_t kRows = 3;
  constexpr int64_t kCols = 64;
  const std::vector<float> x = unit_normal(kRows * kCols, 5);
  const std::vector<uint8_t> q8 = io::quantize_rows(GgmlType::q8_0, x.data(), kRows, kCols);
  const std::vector<uint8_t> q40 = io::quantize_rows(GgmlType::q4_0, x.data(), kRows, kCols);
  const std::vector<uint8_t> q41 = io::quantize_rows(GgmlType::q4_1, x.data(), kRows, kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    io::Q8_0Block b8[2];
    io::Q4_0Block b40[2];
    io::Q4_1Block b41[2];
    io::quantize_row_q8_0(x.data() + r * kCols, kCols, b8);
    io::quantize_row_q4_0(x.data() + r * kCols, kCols, b40);
    io::quantize_row_q4_1(x.data() + r * kCols, kCols, b41);
    CHECK(std::memcmp(q8.data() + r * sizeof b8, b8, sizeof b8) == 0);
    CHECK(std::memcmp(q40.data() + r * sizeof b40, b40, sizeof b40) == 0);
    CHECK(std::memcmp(q41.data() + r * sizeof b41, b41, sizeof b41) == 0);
  }
  CHECK(io::quantize_rows(GgmlType::q4_0, x.data(), 0, kCols).empty());
}

// ---------------------------------------------------------------------------------------------
// Writer and reader

namespace {

// Every value type, arrays of strings / f32 / i32 (and an empty one), and one tensor per type.
io::GgufWriter varied_writer(std::optional<uint32_t> alignment) {
  io::GgufWriter writer;
  if (alignment) writer.set("general.alignment", GgufValue::u32(*alignment));
  writer.set("general.architecture", GgufValue::string("llama"));
  writer.set("test.u8", integer_value(GgufValueType::uint8, 200));
  writer.set("test.i8", integer_value(GgufValueType::int8, as_u64(-100)));
  writer.set("test.u16", integer_value(GgufValueType::uint16, 60000));
  writer.set("test.i16", integer_value(GgufValueType::int16, as_u64(-30000)));
  writer.set("test.u32", GgufValue::u32(4000000000u));
  writer.set("test.i32", GgufValue::i32(-2000000000));
  writer.set("test.f32", GgufValue::f32(-0.15625f));
  writer.set("test.true", GgufValue::boolean(true));
  writer.set("test.false", GgufValue::boolean(false));
  writer.set("test.u64", GgufValue::u64((uint64_t{1} << 40) + 3));
  writer.set("test.i64", integer_value(GgufValueType::int64, as_u64(-(int64_t{1} << 40))));
  writer.set("test.f64", f64_value(-1.25e-300));  // beyond float's range: stored as 8 bytes
  writer.set("test.text", GgufValue::string("\xE2\x96\x81piece \xC3\xBC"));
  writer.set("test.empty_text", GgufValue::string(""));
  writer.set("tokenizer.ggml.tokens", GgufValue::strings({"<unk>", "<s>", "\xE2\x96\x81the", ""}));
  writer.set("tokenizer.ggml.scores", GgufValue::f32_array({0.0f, -1.5f, 3.25e-7f, -1e30f}));
  writer.set("tokenizer.ggml.token_type", GgufValue::i32_array({2, 3, 1, -7}));
  GgufValue empty_array;
  empty_array.type = GgufValueType::array;
  empty_array.element_type = GgufValueType::uint8;
  writer.set("test.empty_array", empty_array);
  GgufValue u64_array;
  u64_array.type = GgufValueType::array;
  u64_array.element_type = GgufValueType::uint64;
  u64_array.elements = {GgufValue::u64(1), GgufValue::u64(~uint64_t{0})};
  writer.set("test.u64_array", u64_array);

  const std::vector<float> values = unit_normal(64 * 3, 3);
  const auto add = [&](const std::string& name, GgmlType type, std::vector<uint64_t> dims) {
    const uint64_t cols = dims[0];
    uint64_t rows = 1;
    for (size_t i = 1; i < dims.size(); ++i) rows *= dims[i];
    writer.add_tensor(name, type, dims,
                      io::quantize_rows(type, values.data(), static_cast<int64_t>(rows),
                                        static_cast<int64_t>(cols)));
  };
  add("f32.vector", GgmlType::f32, {5});                 // 20 bytes: padded
  add("f16.matrix", GgmlType::f16, {7, 3});              // 42 bytes
  add("q4_0.matrix", GgmlType::q4_0, {64, 3});           // 108 bytes
  add("q4_1.cube", GgmlType::q4_1, {32, 2, 2});          // 80 bytes
  add("q8_0.four_dims", GgmlType::q8_0, {32, 1, 1, 2});  // 68 bytes
  add(std::string(63, 'n'), GgmlType::f32, {1});         // the longest name allowed
  return writer;
}

}  // namespace

TEST_CASE("GGUF write then read keeps metadata, tensors and alignment") {
  test::TempDir dir;
  for (const std::optional<uint32_t> custom :
       {std::optional<uint32_t>(), std::optional(64u), std::optional(1u)}) {
    const uint32_t alignment = custom.value_or(32);
    INFO("alignment " << alignment);
    const fs::path path = dir.path() / "nested" / "model.gguf";
    const io::GgufWriter writer = varied_writer(custom);
    writer.write(path);
    const io::GgufReader reader(path);
    // Written through a temporary name and renamed: nothing else is left in the directory.
    CHECK(std::distance(fs::directory_iterator(path.parent_path()), fs::directory_iterator()) == 1);
    // The bytes depend only on what was added.
    varied_writer(custom).write(dir.path() / "again.gguf");
    CHECK(read_bytes(dir.path() / "again.gguf") == read_bytes(path));

    CHECK(reader.version() == 3);
    CHECK(reader.alignment() == alignment);
    CHECK(reader.path() == path);
    REQUIRE(reader.metadata().size() == writer.metadata().size());
    for (size_t i = 0; i < writer.metadata().size(); ++i) {
      INFO("key " << writer.metadata()[i].first);
      CHECK(reader.metadata()[i].first == writer.metadata()[i].first);
      CHECK(reader.metadata()[i].second == writer.metadata()[i].second);
    }
    CHECK(reader.find("test.i8")->integer == as_u64(-100));  // sign-extended
    CHECK(reader.find("test.f64")->number == -1.25e-300);

    CHECK(reader.data_offset() % alignment == 0);
    uint64_t expected_offset = 0;
    REQUIRE(reader.tensors().size() == 6);
    const std::vector<float> values = unit_normal(64 * 3, 3);
    for (const io::GgufTensor& tensor : reader.tensors()) {
      INFO("tensor " << tensor.name);
      CHECK(tensor.offset == expected_offset);
      CHECK(tensor.offset % alignment == 0);
      CHECK(tensor.nbytes == io::ggml_nbytes(tensor.type, tensor.dims));
      const std::vector<uint8_t> expected =
          io::quantize_rows(tensor.type, values.data(), static_cast<int64_t>(tensor.rows()),
                            static_cast<int64_t>(tensor.dims[0]));
      REQUIRE(expected.size() == tensor.nbytes);
      CHECK(std::equal(expected.begin(), expected.end(), tensor.data));
      expected_offset += (tensor.nbytes + alignment - 1) / alignment * alignment;
    }
    CHECK(reader.tensors()[1].type == GgmlType::f16);
    CHECK(reader.tensors()[3].dims == std::vector<uint64_t>{32, 2, 2});
    CHECK(reader.tensors()[3].elements() == 128);
    CHECK(reader.tensors()[3].rows() == 4);
    CHECK(reader.file_bytes() == reader.data_offset() + expected_offset);

    // The bytes in the file, independently of the reader's pointers.
    const std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() == reader.file_bytes());
    for (const io::GgufTensor& tensor : reader.tensors()) {
      const uint64_t begin = reader.data_offset() + tensor.offset;
      CHECK(std::memcmp(bytes.data() + begin, tensor.data, tensor.nbytes) == 0);
      const uint64_t padded = (tensor.nbytes + alignment - 1) / alignment * alignment;
      CHECK(std::all_of(bytes.begin() + begin + tensor.nbytes, bytes.begin() + begin + padded,
                        [](char c) { return c == 0; }));
    }

    // Typed getters.
    CHECK(reader.get_u32("test.u32") == 4000000000u);
    CHECK(reader.get_f32("test.f32") == -0.15625f);
    CHECK(reader.get_bool("test.true"));
    CHECK_FALSE(reader.get_bool("test.false"));
    CHECK(reader.get_string("general.architecture") == "llama");
    CHECK(reader.require_array("tokenizer.ggml.tokens", GgufValueType::string).elements.size() ==
          4);
    CHECK(reader.require_array("tokenizer.ggml.token_type", GgufValueType::int32)
              .elements[3]
              .integer == as_u64(-7));
    CHECK(&reader.require_tensor("q4_0.matrix", {64, 3}) == reader.find_tensor("q4_0.matrix"));
    CHECK(reader.find_tensor("absent") == nullptr);
    CHECK(reader.find("absent") == nullptr);
  }
}

TEST_CASE("GGUF writer output matches the layout written out by hand") {
  // From the spec: header, one UINT32 key, one f32 tensor info, zeros to 32, the data padded to 32.
  test::TempDir dir;
  io::GgufWriter writer;
  writer.set("a", GgufValue::u32(7));
  const std::string data = f32_bytes(1.0f) + f32_bytes(-2.0f);
  writer.add_tensor("t", GgmlType::f32, {2}, std::vector<uint8_t>(data.begin(), data.end()));
  writer.write(dir.path() / "golden.gguf");

  std::string expected = "GGUF" + le32(3) + le64(1) + le64(1);           // 24 bytes
  expected += gguf_string("a") + le32(4) + le32(7);                      // 17: 41
  expected += gguf_string("t") + le32(1) + le64(2) + le32(0) + le64(0);  // 33: 74
  expected += std::string(96 - 74, '\0');
  expected += std::string("\x00\x00\x80\x3F\x00\x00\x00\xC0", 8);  // 1.0f, -2.0f
  expected += std::string(24, '\0');
  CHECK(read_bytes(dir.path() / "golden.gguf") == expected);

  SECTION("a file without tensors ends after its metadata") {
    io::GgufWriter empty;
    empty.set("general.name", GgufValue::string("x"));
    empty.write(dir.path() / "empty.gguf");
    const std::string bytes = read_bytes(dir.path() / "empty.gguf");
    CHECK(bytes == "GGUF" + le32(3) + le64(0) + le64(1) + gguf_string("general.name") + le32(8) +
                       gguf_string("x"));
    const io::GgufReader reader(dir.path() / "empty.gguf");
    CHECK(reader.tensors().empty());
    CHECK(reader.get_string("general.name") == "x");
  }
}

TEST_CASE("GGUF writer refuses what the format cannot hold") {
  io::GgufWriter writer;
  writer.set("k", GgufValue::u32(1));
  CHECK_THROWS_AS(writer.set("k", GgufValue::u32(2)), InternalError);
  CHECK_THROWS_AS(writer.set("", GgufValue::u32(2)), InternalError);
  CHECK_THROWS_AS(writer.set("general.alignment", GgufValue::u32(48)), InternalError);
  CHECK_THROWS_AS(writer.set("general.alignment", GgufValue::u64(64)), InternalError);
  CHECK_THROWS_AS(writer.set("byte", integer_value(GgufValueType::uint8, 256)), InternalError);
  GgufValue nested;
  nested.type = GgufValueType::array;
  nested.element_type = GgufValueType::array;
  CHECK_THROWS_AS(writer.set("nested", nested), InternalError);
  GgufValue mixed = GgufValue::strings({"a"});
  mixed.elements.push_back(GgufValue::u32(1));
  CHECK_THROWS_AS(writer.set("mixed", mixed), InternalError);

  const std::vector<uint8_t> bytes18(18);
  writer.add_tensor("q", GgmlType::q4_0, {32}, bytes18);
  CHECK_THROWS_AS(writer.add_tensor("q", GgmlType::q4_0, {32}, bytes18), InternalError);
  CHECK_THROWS_AS(writer.add_tensor("short", GgmlType::q4_0, {32}, std::vector<uint8_t>(17)),
                  InternalError);
  CHECK_THROWS_AS(writer.add_tensor("rows", GgmlType::q4_0, {16, 2}, bytes18), InternalError);
  CHECK_THROWS_AS(writer.add_tensor(std::string(64, 'n'), GgmlType::q4_0, {32}, bytes18),
                  InternalError);
  CHECK_THROWS_AS(writer.add_tensor("zero", GgmlType::f32, {0}, {}), InternalError);
  CHECK_THROWS_AS(
      writer.add_tensor("five", GgmlType::f32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)),
      InternalError);
}

TEST_CASE("the hand-assembled GGUF file is valid") {
  // The base of the malformed-file table below, checked to load first.
  test::TempDir dir;
  const fs::path path = dir.path() / "hand.gguf";
  write_bytes(path, valid_hand_file().bytes());
  const io::GgufReader reader(path);
  // Header 24 bytes, key/values 45 + 26, tensor infos 33 + 41 + 33: 202, padded to 224.
  CHECK(reader.data_offset() == 224);
  REQUIRE(reader.tensors().size() == 3);
  CHECK(reader.tensors()[1].name == "b");
  CHECK(reader.tensors()[1].type == GgmlType::q4_0);
  CHECK(reader.tensors()[1].nbytes == 36);
  CHECK(reader.tensors()[2].offset == 96);
  CHECK(reader.get_f32("test.scale") == 0.5f);
  const std::string expected = pattern(36, 2);
  CHECK(std::memcmp(reader.tensors()[1].data, expected.data(), 36) == 0);

  SECTION("general.alignment 64 with offsets 0, 64, 128") {
    HandFile file = valid_hand_file();
    file.kvs.push_back(kv_record("general.alignment", GgufValueType::uint32, le32(64)));
    file.alignment = 64;
    file.tensors = {tensor_record("a", {8}, 0, 0), tensor_record("b", {32, 2}, 2, 64),
                    tensor_record("c", {4}, 1, 128)};
    file.data = pattern(32, 1) + std::string(32, '\0') + pattern(36, 2) + std::string(28, '\0') +
                pattern(8, 3);
    write_bytes(path, file.bytes());
    const io::GgufReader aligned(path);
    CHECK(aligned.alignment() == 64);
    CHECK(aligned.data_offset() % 64 == 0);
    CHECK(aligned.tensors()[2].offset == 128);
  }
}

TEST_CASE("a GGUF file cut at any byte is refused; only its final padding may be missing") {
  // Every prefix, from disk (the message must say the file is truncated) and from an exactly-sized
  // heap buffer (AddressSanitizer reports any read past its end). A prefix that keeps every
  // tensor's data and drops only trailing padding loads, as in llama.cpp's memory-mapped loader.
  test::TempDir dir;
  const fs::path path = dir.path() / "cut.gguf";
  const std::string bytes = valid_hand_file().bytes();
  const size_t data_end = 224 + 96 + 8;  // tensor 'c' ends here; 24 zero bytes follow
  REQUIRE(bytes.size() == data_end + 24);
  for (size_t length = 0; length <= bytes.size(); ++length) {
    INFO("prefix of " << length << " bytes");
    const std::string prefix = bytes.substr(0, length);
    write_bytes(path, prefix);
    if (length >= data_end) {
      CHECK(io::GgufReader(path).tensors().size() == 3);
      CHECK(parse_exact_copy(prefix).tensors.size() == 3);
      continue;
    }
    const std::string message = file_error_of([&] { io::GgufReader reader(path); });
    CHECK_THAT(message, Catch::Contains(path.string()));
    CHECK_THAT(message, Catch::Contains("the file is truncated or not a GGUF file"));
    CHECK_THROWS_AS(parse_exact_copy(prefix), FileError);
  }
}

TEST_CASE("malformed GGUF files are refused with a message naming the field") {
  test::TempDir dir;
  const fs::path path = dir.path() / "bad.gguf";
  const auto with = [](auto&& change) {
    HandFile file = valid_hand_file();
    change(file);
    return file.bytes();
  };
  const uint64_t huge = uint64_t{1} << 40;

  SECTION("header") {
    require_rejected(path, "GG", {"2 bytes long", "magic"});
    require_rejected(path, with([](HandFile& f) { f.magic = "GGML"; }),
                     {"magic bytes are 47 47 4D 4C", "expected 47 47 55 46"});
    require_rejected(path, with([](HandFile& f) { f.version = 1; }),
                     {"header: version 1", "reads version 3 only"});
    require_rejected(path, with([](HandFile& f) { f.version = 2; }),
                     {"header: version 2", "reads version 3 only"});
    require_rejected(path, with([](HandFile& f) { f.version = 4; }),
                     {"header: version 4 is newer", "version 3 only", "upgrade edgedistill"});
    require_rejected(path, with([](HandFile& f) { f.version = 0x03000000; }),
                     {"byte-swapped", "version 3 only"});
    require_rejected(path, with([](HandFile& f) { f.version = 0; }),
                     {"version 0", "version 3 only"});
    require_rejected(path, with([](HandFile& f) { f.tensor_count = uint64_t{1} << 60; }),
                     {"tensor_count 1152921504606846976", "at least 32 bytes"});
    require_rejected(path, with([](HandFile& f) { f.kv_count = ~uint64_t{0}; }),
                     {"kv_count 18446744073709551615", "at least 14 bytes"});
    // Each count fits alone (15 x 14 and 8 x 32 bytes); together they do not: 328 bytes follow
    // the header.
    require_rejected(path, with([](HandFile& f) {
                       f.kv_count = 15;
                       f.tensor_count = 8;
                     }),
                     {"kv_count 15 and tensor_count 8", "only 328 bytes"});
  }

  SECTION("key/value records") {
    require_rejected(
        path, with([&](HandFile& f) {
          f.kvs[0] = kv_record("general.architecture", GgufValueType::string, le64(huge) + "llama");
        }),
        {"key 'general.architecture'", "string length 1099511627776", "past the end of the file"});
    require_rejected(path, with([&](HandFile& f) { f.kvs[0] = le64(huge) + "key"; }),
                     {"key record 0", "key string length 1099511627776"});
    require_rejected(path, with([&](HandFile& f) {
                       f.kvs.push_back(kv_record("tokenizer.ggml.scores", GgufValueType::array,
                                                 le32(6) + le64(huge) + f32_bytes(1)));
                     }),
                     {"key 'tokenizer.ggml.scores'", "ARRAY of 1099511627776 FLOAT32 elements"});
    require_rejected(path, with([&](HandFile& f) {
                       f.kvs.push_back(kv_record("tokenizer.ggml.tokens", GgufValueType::array,
                                                 le32(8) + le64(uint64_t{1} << 61)));
                     }),
                     {"key 'tokenizer.ggml.tokens'", "STRING elements"});
    require_rejected(
        path, with([&](HandFile& f) {
          f.kvs.push_back(kv_record("tokenizer.ggml.tokens", GgufValueType::array,
                                    le32(8) + le64(2) + gguf_string("a") + le64(huge)));
        }),
        {"key 'tokenizer.ggml.tokens' element 1", "string length 1099511627776"});
    require_rejected(path,
                     with([](HandFile& f) { f.kvs.push_back(kv_record("test.x", 13u, le32(0))); }),
                     {"key 'test.x'", "value type 13 is not a GGUF value type"});
    require_rejected(
        path, with([](HandFile& f) {
          f.kvs.push_back(kv_record("test.x", GgufValueType::array, le32(13) + le64(0)));
        }),
        {"key 'test.x'", "ARRAY element type 13"});
    require_rejected(
        path, with([](HandFile& f) {
          f.kvs.push_back(kv_record("test.nested", GgufValueType::array, le32(9) + le64(0)));
        }),
        {"key 'test.nested'", "ARRAY of ARRAY"});
    require_rejected(path, with([](HandFile& f) {
                       f.kvs.push_back(kv_record("test.scale", GgufValueType::uint32, le32(1)));
                     }),
                     {"key 'test.scale' appears twice", "records 1 and 2"});
    require_rejected(path, with([](HandFile& f) {
                       f.kvs.push_back(kv_record("", GgufValueType::uint32, le32(1)));
                     }),
                     {"key record 2", "empty"});
    require_rejected(path, with([](HandFile& f) {
                       f.kvs.push_back(kv_record("test.flag", GgufValueType::boolean, "\x02"));
                     }),
                     {"key 'test.flag'", "BOOL value is 2"});
    require_rejected(
        path, with([](HandFile& f) {
          f.kvs.push_back(kv_record("general.alignment", GgufValueType::uint64, le64(32)));
        }),
        {"key 'general.alignment' is UINT64", "expected UINT32"});
    require_rejected(
        path, with([](HandFile& f) {
          f.kvs.push_back(kv_record("general.alignment", GgufValueType::uint32, le32(48)));
        }),
        {"key 'general.alignment' is 48", "not a power of two"});
    require_rejected(
        path, with([](HandFile& f) {
          f.kvs.push_back(kv_record("general.alignment", GgufValueType::uint32, le32(0)));
        }),
        {"key 'general.alignment' is 0", "not a power of two"});
  }

  SECTION("tensor infos") {
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[1] = tensor_record("b", {32, 2}, 10, 32);  // Q2_K
                     }),
                     {"tensor 1 'b'", "ggml type 10 (Q2_K) is not one this edgedistill reads",
                      "q8_0 = 8", "q6_k = 14", "llama-quantize --allow-requantize"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[1] = tensor_record("b", {48, 2}, 2, 32);
                     }),
                     {"tensor 1 'b'", "dims[0] (the row length) is 48", "q4_0 block size 32"});
    require_rejected(path, with([](HandFile& f) { f.tensors[0] = tensor_record("a", {}, 0, 0); }),
                     {"tensor 0 'a'", "n_dims is 0", "expected 1 to 4"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[0] = tensor_record("a", {8, 1, 1, 1, 1}, 0, 0);
                     }),
                     {"tensor 0 'a'", "n_dims is 5"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[0] = tensor_record("a", {8, 0}, 0, 0);
                     }),
                     {"tensor 0 'a'", "dims[1] is 0"});
    require_rejected(
        path, with([](HandFile& f) {
          f.tensors[0] = tensor_record("a", {8, uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0);
        }),
        {"tensor 0 'a'", "more than 2^63 - 1 elements"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[0] = tensor_record("a", {uint64_t{1} << 62}, 0, 0);
                     }),
                     {"tensor 0 'a'", "need more than 2^64 - 1 bytes"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[2] = tensor_record("c", {uint64_t{1} << 40}, 0, 96);
                     }),
                     {"tensor 2 'c'", "past the end of the file"});
    require_rejected(path, with([](HandFile& f) { f.tensors[0] = tensor_record("a", {8}, 0, 32); }),
                     {"tensor 0 'a'", "gap of 32 bytes at the start", "expected offset 0"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[1] = tensor_record("b", {32, 2}, 2, 0);
                     }),
                     {"tensor 1 'b': offset 0 overlaps tensor 0 'a'", "expected offset 32"});
    require_rejected(path, with([](HandFile& f) { f.tensors[2] = tensor_record("c", {4}, 1, 64); }),
                     {"tensor 2 'c': offset 64 overlaps tensor 1 'b'", "expected offset 96"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[1] = tensor_record("b", {32, 2}, 2, 33);
                     }),
                     {"tensor 1 'b': offset 33 is not aligned to 32"});
    require_rejected(path,
                     with([](HandFile& f) { f.tensors[2] = tensor_record("c", {4}, 1, 128); }),
                     {"tensor 2 'c': offset 128 leaves a gap of 32 bytes", "expected offset 96"});
    require_rejected(
        path, with([](HandFile& f) {
          f.tensors[2] = tensor_record("c", {64}, 1, 96);  // 128 bytes, 32 present
        }),
        {"tensor 2 'c'", "128 bytes of data at byte 320", "past the end of the file at byte 352"});
    require_rejected(path, with([](HandFile& f) { f.tensors[2] = tensor_record("a", {4}, 1, 96); }),
                     {"tensor 2 'a'", "also used by tensor 0"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[2] = tensor_record(std::string(64, 'n'), {4}, 1, 96);
                     }),
                     {"tensor 2", "64 bytes", "at most 63"});
    require_rejected(
        path, with([](HandFile& f) {  // 32-aligned offsets under alignment 64
          f.kvs.push_back(kv_record("general.alignment", GgufValueType::uint32, le32(64)));
          f.alignment = 64;
        }),
        {"tensor 1 'b': offset 32 is not aligned to 64"});
    require_rejected(path, with([](HandFile& f) {
                       f.tensors[1] = tensor_record("bad\nname", {32, 2}, 12, 32);
                     }),
                     {"tensor 1 'bad\\x0Aname'"});  // control bytes escaped: one line
  }
}

TEST_CASE("typed getters name the key or tensor, the type found and the type expected") {
  test::TempDir dir;
  const fs::path path = dir.path() / "model.gguf";
  varied_writer(std::nullopt).write(path);
  const io::GgufReader reader(path);
  const auto message_of = [&](auto&& action) {
    const std::string message = file_error_of(action);
    CHECK_THAT(message, Catch::Contains(path.string()));
    CHECK_THAT(message, Catch::Contains("re-export it with `edgedistill export`"));
    return message;
  };

  CHECK_THAT(message_of([&] { reader.get_u32("test.f32"); }),
             Catch::Contains("key 'test.f32' is FLOAT32; expected UINT32"));
  CHECK_THAT(message_of([&] { reader.get_f32("test.u32"); }),
             Catch::Contains("key 'test.u32' is UINT32; expected FLOAT32"));
  CHECK_THAT(message_of([&] { reader.get_bool("test.u8"); }),
             Catch::Contains("key 'test.u8' is UINT8; expected BOOL"));
  CHECK_THAT(message_of([&] { reader.get_string("general.name"); }),
             Catch::Contains("key 'general.name' is missing; expected a STRING value"));
  CHECK_THAT(message_of([&] { reader.get_u32("tokenizer.ggml.tokens"); }),
             Catch::Contains("key 'tokenizer.ggml.tokens' is ARRAY of STRING; expected UINT32"));
  CHECK_THAT(
      message_of([&] { reader.require_array("tokenizer.ggml.tokens", GgufValueType::int32); }),
      Catch::Contains("is ARRAY of STRING; expected ARRAY of INT32"));
  CHECK_THAT(message_of([&] { reader.require_array("test.u32", GgufValueType::float32); }),
             Catch::Contains("key 'test.u32' is UINT32; expected ARRAY of FLOAT32"));
  CHECK_THAT(message_of([&] { reader.require_array("absent", GgufValueType::float32); }),
             Catch::Contains("key 'absent' is missing; expected ARRAY of FLOAT32"));
  CHECK_THAT(message_of([&] { reader.require(std::string("test.i64"), GgufValueType::uint64); }),
             Catch::Contains("key 'test.i64' is INT64; expected UINT64"));
  CHECK_THAT(message_of([&] {
               reader.require_tensor("output.weight", {64, 3});
             }),
             Catch::Contains("has no tensor 'output.weight'"));
  CHECK_THAT(message_of([&] {
               reader.require_tensor("q4_0.matrix", {3, 64});
             }),
             Catch::Contains("tensor 'q4_0.matrix' has dims {64, 3}; expected {3, 64}"));
  CHECK_THAT(message_of([&] { reader.require_tensor("q4_0.matrix", {64}); }),
             Catch::Contains("has dims {64, 3}; expected {64}"));
}

TEST_CASE("opening a missing GGUF file names it") {
  test::TempDir dir;
  const std::string message =
      file_error_of([&] { io::GgufReader reader(dir.path() / "absent.gguf"); });
  CHECK_THAT(message, Catch::Contains("absent.gguf"));
  CHECK_THAT(message, Catch::Contains("does not exist"));
}
