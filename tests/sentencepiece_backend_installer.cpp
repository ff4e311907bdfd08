// test_data runs without LibTorch, so it may load libsentencepiece: install the real backend before
// any test runs (src/data/sentencepiece_backend.h).
#include "data/sentencepiece_backend.h"

namespace {

const bool kInstalled = [] {
  edgedistill::data::set_sentencepiece_backend(&edgedistill::data::libsentencepiece_backend());
  return true;
}();

}  // namespace
