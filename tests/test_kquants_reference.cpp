// The K-quant and Q5_0/Q5_1 layouts against an independent reader:
// tests/python/kquants_reference.py decodes blocks with numpy from ggml's layout, sharing no code
// with src/io. Random blocks decode the same in both, and the blocks our quantizers write decode
// the same in both.

#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "io/gguf_quants.h"
#include "python_reference.h"
#include "random_values.h"
#include "test_util.h"

using namespace edgedistill;
using io::GgmlType;

namespace {

std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// The Python reader's values for the blocks in `bytes`.
std::vector<float> python_dequantize(const test::TempDir& dir, GgmlType type,
                                     const std::vector<uint8_t>& bytes) {
  const auto name = std::string(io::ggml_type_traits(type).name);
  write_bytes(dir.path() / "blocks.bin", bytes);
  test::run_python("kquants_reference.py",
                   {"dequantize", name, (dir.path() / "blocks.bin").string(),
                    (dir.path() / "values.f32").string()});
  const auto raw = read_bytes(dir.path() / "values.f32");
  std::vector<float> values(raw.size() / sizeof(float));
  std::memcpy(values.data(), raw.data(), raw.size());
  return values;
}

// Equal as bit patterns, or both zero (the reference may give -0 where we give +0).
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i]) && std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      INFO("element " << i << ": " << a[i] << " against " << b[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("random K-quant and Q5 blocks decode as the independent reader decodes them") {
  test::TempDir dir;
  for (const GgmlType type : {GgmlType::q4_k, GgmlType::q5_k, GgmlType::q6_k, GgmlType::q8_k}) {
    const auto name = std::string(io::ggml_type_traits(type).name);
    INFO(name);
    constexpr int kBlocks = 24;
    test::run_python("kquants_reference.py", {"random", name, std::to_string(kBlocks), "3",
                                              (dir.path() / "random.bin").string()});
    const auto bytes = read_bytes(dir.path() / "random.bin");
    REQUIRE(bytes.size() == kBlocks * io::ggml_row_bytes(type, 256));
    std::vector<float> ours(kBlocks * 256);
    io::dequantize_rows(type, bytes.data(), kBlocks, 256, ours.data());
    CHECK(same_values(ours, python_dequantize(dir, type, bytes)));
  }
}

TEST_CASE(
    "the blocks our K-quant and Q5 quantizers write decode the same in the independent reader") {
  test::TempDir dir;
  const auto x = test::unit_normal(8 * 512, 17);
  for (const GgmlType type : {GgmlType::q5_0, GgmlType::q5_1, GgmlType::q4_k, GgmlType::q5_k,
                              GgmlType::q6_k, GgmlType::q8_k}) {
    INFO(io::ggml_type_traits(type).name);
    const auto bytes = io::quantize_rows(type, x.data(), 8, 512);
    std::vector<float> ours(x.size());
    io::dequantize_rows(type, bytes.data(), 8, 512, ours.data());
    const auto reference = python_dequantize(dir, type, bytes);
    CHECK(same_values(ours, reference));
    // And the decoded values are near x, so the check above compares real reconstructions.
    double squared = 0;
    for (size_t i = 0; i < x.size(); ++i) squared += (reference[i] - x[i]) * (reference[i] - x[i]);
    CHECK(std::sqrt(squared / static_cast<double>(x.size())) < 0.1);
  }
}
