// The safetensors reader (header length, JSON, dtypes, shapes, offsets covering the buffer).
#include "core/error.h"
#include "fuzz_input.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgedistill;
  try {
    const io::SafetensorsFile file(fuzz::input_file(data, size, ".safetensors"));
    static volatile uint64_t sink;  // keeps the reads below from being optimised away
    for (const auto& tensor : file.tensors()) {
      // Every view the reader accepted must lie inside the mapped file: read its bytes.
      for (size_t i = 0; i < tensor.nbytes; i += 61) sink = sink + tensor.data[i];
      sink = sink + static_cast<uint64_t>(tensor.numel());
    }
  } catch (const InputError&) {
  }
  return 0;
}
