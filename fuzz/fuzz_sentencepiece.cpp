// SentencePiece model files (our own protobuf reader), then encoding and decoding text.
#include <string>

#include "core/error.h"
#include "tokenizer/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgedistill;
  try {
    const auto vocab = tok::Vocab::from_sentencepiece(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.model");
    for (const char* text : {"Hello world! It's 2026.", "  tabs\tand\nnew lines", "日本語 😀 é"}) {
      (void)vocab.decode(vocab.encode(text));
    }
  } catch (const InputError&) {
  }
  return 0;
}
