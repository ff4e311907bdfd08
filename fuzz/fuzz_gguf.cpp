// The GGUF reader (header, metadata, tensor table, offsets) and the GGUF tokenizer vocabulary on
// top of it. A malformed file must end in FileError/InputError.
#include "core/error.h"
#include "fuzz_input.h"
#include "io/gguf.h"
#include "tokenizer/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgedistill;
  try {
    const io::GgufReader file(fuzz::input_file(data, size, ".gguf"));
    if (file.find("tokenizer.ggml.model") != nullptr) {
      const auto vocab = tok::Vocab::from_gguf(file);
      (void)vocab.decode(vocab.encode("Hello world, fuzz me 123!"));
    }
  } catch (const InputError&) {
  }
  return 0;
}
