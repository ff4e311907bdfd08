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
    size_t keys = 0;
    for (const auto& entry : file.metadata()) keys += entry.first.size();
    for (const auto& tensor : file.tensors()) keys += tensor.name.size();
    if (file.find("tokenizer.ggml.model") != nullptr) {
      const auto vocab = tok::Vocab::from_gguf(file);
      const auto ids = vocab.encode("Hello world, fuzz me 123!");
      (void)vocab.decode(ids);
    }
    return keys == 0 ? 0 : 0;
  } catch (const InputError&) {
    return 0;
  }
}
