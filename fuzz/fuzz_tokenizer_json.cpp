// Hugging Face tokenizer.json (and tokenizer_config.json after a NUL byte): the loader, then
// encoding and decoding text with what it accepted.
#include <string_view>

#include "core/error.h"
#include "tokenizer/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgedistill;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const auto tokenizer = input.substr(0, nul);
  const auto config = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  try {
    const auto vocab = tok::Vocab::from_hugging_face(tokenizer, config, "fuzz");
    for (const char* text : {"Hello world! It's 2026.", "  tabs\tand\nnew lines", "日本語 😀 é"}) {
      (void)vocab.decode(vocab.encode(text));
    }
  } catch (const InputError&) {
  }
  return 0;
}
