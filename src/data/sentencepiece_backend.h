// SentencePiece training (and, as the tests' reference, encoding) through libsentencepiece, in
// the programs that may load it.
//
// Debian 12's libsentencepiece embeds its own protobuf 3.14 runtime and exports its symbols; in a
// process that also loads LibTorch (which brings protobuf 3.21) the two interpose each other and
// the process crashes during start-up, whatever the link order (measured: segfault or protobuf's
// version-mismatch abort). So only programs without LibTorch (edgedistill-data, test_data) link
// the edgedistill_sentencepiece library and install its backend at start-up:
//   data::set_sentencepiece_backend(&data::libsentencepiece_backend());
// Programs with LibTorch have no backend: they hand data preparation that trains a tokenizer to
// the edgedistill-data program (data_tool.h); encoding and decoding are tok::Vocab's everywhere.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edgedistill::data {

struct TokenizerConfig;

// Encodes text with one loaded model: libsentencepiece's own encoder, which edgedistill no longer
// uses to prepare data (tok::Vocab does) but keeps as the reference the tests compare with.
class SentencePieceEncoder {
 public:
  virtual ~SentencePieceEncoder() = default;
  // Token ids of `text`, without <s> or </s>.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
};

class SentencePieceBackend {
 public:
  virtual ~SentencePieceBackend() = default;
  // Trains on the non-empty lines of `documents`; returns the serialized model. Shows a progress
  // line. Throws InputError when SentencePiece refuses the settings.
  virtual std::string train(const TokenizerConfig& config,
                            const std::vector<std::string>& documents) const = 0;
  // Loads a serialized model for encoding; `origin` names it in errors.
  virtual std::unique_ptr<SentencePieceEncoder> load_encoder(const std::string& model_bytes,
                                                             const std::string& origin) const = 0;
};

// The backend this program installed, or nullptr (programs that load LibTorch).
const SentencePieceBackend* sentencepiece_backend();
void set_sentencepiece_backend(const SentencePieceBackend* backend);

// The libsentencepiece backend; defined in the edgedistill_sentencepiece library only.
const SentencePieceBackend& libsentencepiece_backend();

}  // namespace edgedistill::data
