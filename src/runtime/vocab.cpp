// The runtime's SentencePiece ("llama") vocabulary: validation, reading tokenizer.ggml.* from a
// GGUF file, BPE encoding and decoding.
//
// Encoding reproduces libsentencepiece's BPE model (bpe_model.cc, version 0.1.97) for the
// vocabularies we train (identity normalization, add_dummy_prefix, remove_extra_whitespaces
// false, byte_fallback): tests/test_runtime_vocab.cpp compares the two token for token.
//   1. Normalize: prefix one space, turn each ASCII space into U+2581, and replace each byte that
//      does not start a well-formed UTF-8 character by U+FFFD (SentencePiece's normalizer does so).
//   2. Split into symbols: one UTF-8 character each, except that a user-defined piece is taken
//      whole (longest match) and is frozen: it never merges with a neighbour.
//   3. Merge: among adjacent pairs whose concatenation is a normal, user-defined or unused piece,
//      merge the one whose piece has the highest score, the leftmost on ties; repeat. Control,
//      unknown and byte pieces are never formed by merging (SentencePiece keeps them apart from
//      the pieces it merges into).
//   4. Emit: an unused piece is split back into the two symbols it was merged from (recursively);
//      a symbol that is not a normal, user-defined or unused piece becomes one <0xNN> token per
//      UTF-8 byte; without byte tokens, each run of such symbols becomes one <unk>. A character
//      that spells a control piece is plain text here (libsentencepiece refuses such a text:
//      "all normalized characters are not consumed").
// The merge step keeps the symbols in a linked list and the candidate pairs in a priority queue
// (stale candidates are skipped when popped), so a text of n characters costs O(n log n).
#include "runtime/vocab.h"

#include <algorithm>
#include <cstdint>
#include <queue>
#include <string>
#include <utility>

#include "core/error.h"

namespace edgedistill::runtime {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";           // U+2581, SentencePiece's space
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ": SentencePiece's <unk>

constexpr const char* kModelKey = "tokenizer.ggml.model";
constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kTokenTypeKey = "tokenizer.ggml.token_type";
constexpr const char* kBosKey = "tokenizer.ggml.bos_token_id";
constexpr const char* kEosKey = "tokenizer.ggml.eos_token_id";
constexpr const char* kUnknownKey = "tokenizer.ggml.unknown_token_id";
constexpr const char* kAddBosKey = "tokenizer.ggml.add_bos_token";

bool is_trail_byte(char c) {
  return (static_cast<uint8_t>(c) & 0xC0) == 0x80;
}

// Bytes of the well-formed UTF-8 character that starts `text` (non-empty), or 0 when it is
// malformed: a stray continuation byte, a truncated sequence, an overlong form, a surrogate or a
// code point past U+10FFFF. The rule of SentencePiece's DecodeUTF8.
size_t utf8_char_length(std::string_view text) {
  const auto lead = static_cast<uint8_t>(text[0]);
  if (lead < 0x80) return 1;
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(text[i])); };
  if ((lead & 0xE0) == 0xC0 && text.size() >= 2 && is_trail_byte(text[1])) {
    const uint32_t code = ((lead & 0x1Fu) << 6) | (byte(1) & 0x3F);
    return code >= 0x80 ? 2 : 0;
  }
  if ((lead & 0xF0) == 0xE0 && text.size() >= 3 && is_trail_byte(text[1]) &&
      is_trail_byte(text[2])) {
    const uint32_t code = ((lead & 0x0Fu) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    return code >= 0x800 && (code < 0xD800 || code > 0xDFFF) ? 3 : 0;
  }
  if ((lead & 0xF8) == 0xF0 && text.size() >= 4 && is_trail_byte(text[1]) &&
      is_trail_byte(text[2]) && is_trail_byte(text[3])) {
    const uint32_t code = ((lead & 0x07u) << 18) | ((byte(1) & 0x3F) << 12) |
                          ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
    return code >= 0x10000 && code <= 0x10FFFF ? 4 : 0;
  }
  return 0;
}

// SentencePiece's normalization with the identity rule, add_dummy_prefix true and
// remove_extra_whitespaces false (step 1 above). `text` is not empty.
std::string normalize_text(std::string_view text) {
  std::string normalized;
  normalized.reserve(text.size() + 8);
  normalized += kSpaceMarker;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == ' ') {
      normalized += kSpaceMarker;
      ++i;
      continue;
    }
    const size_t length = utf8_char_length(text.substr(i));
    if (length == 0) {
      normalized += kReplacementCharacter;
      ++i;
    } else {
      normalized.append(text.data() + i, length);
      i += length;
    }
  }
  return normalized;
}

// The byte a "<0xNN>" token stands for (uppercase hex, as SentencePiece and GGUF spell it), or -1.
int byte_of_token(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int high = nibble(token[3]), low = nibble(token[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

// Pieces that adjacent symbols may merge into (SentencePiece's `pieces_`; control, unknown and
// byte pieces live in its separate reserved map).
bool is_mergeable(VocabTokenType type) {
  return type == VocabTokenType::normal || type == VocabTokenType::user_defined ||
         type == VocabTokenType::unused;
}

const char* special_name(int which) {
  static const char* kNames[] = {"bos", "eos", "unknown"};
  return kNames[which];
}

// What is wrong with `data`, or "" when it makes a valid vocabulary.
std::string vocab_data_problem(const VocabData& data) {
  const size_t n = data.tokens.size();
  if (n == 0) return "the vocabulary has no tokens";
  if (data.scores.size() != n) {
    return str("it has ", n, " tokens but ", data.scores.size(), " scores (one per token)");
  }
  if (data.types.size() != n) {
    return str("it has ", n, " tokens but ", data.types.size(), " token types (one per token)");
  }
  for (size_t i = 0; i < n; ++i) {
    const auto type = static_cast<int32_t>(data.types[i]);
    if (type < 1 || type > 6) {
      return str("token ", i, " '", data.tokens[i], "' has type ", type,
                 "; expected 1 (normal) to 6 (byte)");
    }
    if (data.types[i] == VocabTokenType::byte && byte_of_token(data.tokens[i]) < 0) {
      return str("byte token ", i, " is spelled '", data.tokens[i],
                 "'; expected <0xNN> with uppercase hex");
    }
  }
  const int32_t special[] = {data.bos_id, data.eos_id, data.unk_id};
  for (int which = 0; which < 3; ++which) {
    if (special[which] < 0 || static_cast<size_t>(special[which]) >= n) {
      return str("the ", special_name(which), " id ", special[which],
                 " is outside the vocabulary of ", n, " tokens");
    }
  }
  std::unordered_map<std::string_view, size_t> first_id;
  first_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto [it, inserted] = first_id.emplace(data.tokens[i], i);
    if (!inserted) {
      return str("tokens ", it->second, " and ", i, " are both '", data.tokens[i],
                 "'; token strings must be unique");
    }
  }
  return "";
}

// The id of `piece`, or -1. `key` is scratch space reused between look-ups (C++17's unordered_map
// cannot look up a string_view).
int32_t find_token(const std::unordered_map<std::string, int32_t>& ids, std::string_view piece,
                   std::string& key) {
  key.assign(piece.data(), piece.size());
  const auto it = ids.find(key);
  return it == ids.end() ? -1 : it->second;
}

// Appends a piece's text as SentencePiece decodes it: U+2581 becomes a space; the first one is
// dropped when `strip_leading_space`.
void append_surface(std::string& out, std::string_view piece, bool strip_leading_space) {
  if (strip_leading_space && piece.substr(0, kSpaceMarker.size()) == kSpaceMarker) {
    piece.remove_prefix(kSpaceMarker.size());
  }
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out.push_back(' ');
      i += kSpaceMarker.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
}

// One symbol of the text being encoded: bytes [begin, begin + length) of the normalized text, in a
// doubly linked list. A symbol merged into its left neighbour has length 0.
struct Symbol {
  size_t begin = 0;
  size_t length = 0;
  int32_t prev = -1, next = -1;
  bool frozen = false;  // a user-defined piece: never merged
};

// Two adjacent symbols whose concatenation (`length` bytes) is the piece with `score`.
struct MergeCandidate {
  float score;
  int32_t left, right;
  size_t length;
};

// Orders the queue so that top() is the highest score, the leftmost among equal scores.
struct MergeCandidateOrder {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

Vocab::Vocab(VocabData data, const std::string& origin) {
  const std::string problem = vocab_data_problem(data);
  if (!problem.empty()) throw InputError(str("vocabulary of ", origin, ": ", problem));
  tokens_ = std::move(data.tokens);
  scores_ = std::move(data.scores);
  types_ = std::move(data.types);
  bos_id_ = data.bos_id;
  eos_id_ = data.eos_id;
  unk_id_ = data.unk_id;
  add_bos_ = data.add_bos;
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  ids_.reserve(tokens_.size());
  for (int32_t id = 0; id < size(); ++id) {
    const std::string& token = tokens_[static_cast<size_t>(id)];
    ids_.emplace(token, id);
    const Type type = types_[static_cast<size_t>(id)];
    if (type == Type::byte) {
      byte_ids_[byte_of_token(token)] = id;
      byte_fallback_ = true;
    } else if (type == Type::user_defined) {
      max_user_defined_bytes_ = std::max(max_user_defined_bytes_, token.size());
    }
  }
}

Vocab Vocab::from_gguf(const io::GgufReader& file) {
  const std::string origin = str("GGUF file ", file.path().string());
  const std::string& model = file.get_string(kModelKey);
  if (model != "llama") {
    throw FileError(str(origin, ": ", kModelKey, " is '", model,
                        "'; this runtime reads only 'llama' (SentencePiece) vocabularies"));
  }
  VocabData data;
  const io::GgufValue& tokens = file.require_array(kTokensKey, io::GgufValueType::string);
  const size_t n = tokens.elements.size();
  data.tokens.reserve(n);
  for (const auto& token : tokens.elements) data.tokens.push_back(token.text);

  // Scores and types are optional, as in llama.cpp (score 0, type normal when absent).
  data.scores.assign(n, 0.0f);
  if (file.find(kScoresKey) != nullptr) {
    const auto& scores = file.require_array(kScoresKey, io::GgufValueType::float32).elements;
    if (scores.size() != n) {
      throw FileError(str(origin, ": ", kScoresKey, " has ", scores.size(), " entries but ",
                          kTokensKey, " has ", n, "; re-export the model"));
    }
    for (size_t i = 0; i < n; ++i) data.scores[i] = static_cast<float>(scores[i].number);
  }
  data.types.assign(n, Type::normal);
  if (file.find(kTokenTypeKey) != nullptr) {
    const auto& types = file.require_array(kTokenTypeKey, io::GgufValueType::int32).elements;
    if (types.size() != n) {
      throw FileError(str(origin, ": ", kTokenTypeKey, " has ", types.size(), " entries but ",
                          kTokensKey, " has ", n, "; re-export the model"));
    }
    for (size_t i = 0; i < n; ++i) {
      const auto type = static_cast<int32_t>(types[i].integer);
      if (type < 1 || type > 6) {
        throw FileError(str(origin, ": ", kTokenTypeKey, "[", i, "] is ", type,
                            "; expected 1 (normal) to 6 (byte)"));
      }
      data.types[i] = static_cast<Type>(type);
    }
  }

  auto special_id = [&](const char* key, int32_t absent) {
    if (file.find(key) == nullptr) return absent;
    const uint32_t id = file.get_u32(key);
    if (id >= n) {
      throw FileError(str(origin, ": ", key, " is ", id, ", outside the vocabulary of ", n,
                          " tokens; re-export the model"));
    }
    return static_cast<int32_t>(id);
  };
  data.bos_id = special_id(kBosKey, 1);
  data.eos_id = special_id(kEosKey, 2);
  data.unk_id = special_id(kUnknownKey, 0);
  data.add_bos = file.find(kAddBosKey) == nullptr || file.get_bool(kAddBosKey);

  const std::string problem = vocab_data_problem(data);
  if (!problem.empty()) throw FileError(str(origin, ": ", kTokensKey, ": ", problem));
  return Vocab(std::move(data), origin);
}

std::vector<int32_t> Vocab::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(bos_id_);
  // SentencePiece adds no dummy prefix to an empty text: it has no tokens.
  if (text.empty()) return ids;
  const std::string normalized = normalize_text(text);
  if (normalized.size() >= static_cast<size_t>(INT32_MAX)) {
    throw InputError(str("the text to encode has ", text.size(),
                         " bytes; split it into pieces under 2 GiB (after spaces become U+2581)"));
  }
  std::string key;  // scratch for look-ups

  // Step 2: symbols.
  std::vector<Symbol> symbols;
  symbols.reserve(normalized.size());
  for (size_t begin = 0; begin < normalized.size();) {
    Symbol symbol;
    symbol.begin = begin;
    const std::string_view rest(normalized.data() + begin, normalized.size() - begin);
    for (size_t length = std::min(max_user_defined_bytes_, rest.size()); length > 0; --length) {
      const int32_t id = find_token(ids_, rest.substr(0, length), key);
      if (id >= 0 && types_[static_cast<size_t>(id)] == Type::user_defined) {
        symbol.length = length;
        symbol.frozen = true;
        break;
      }
    }
    if (!symbol.frozen) symbol.length = utf8_char_length(rest);  // well-formed after step 1
    const auto index = static_cast<int32_t>(symbols.size());
    symbol.prev = index - 1;
    begin += symbol.length;
    symbol.next = begin < normalized.size() ? index + 1 : -1;
    symbols.push_back(symbol);
  }

  // Step 3: merges. `unused_splits` remembers what each unused piece was merged from (step 4).
  std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, MergeCandidateOrder> agenda;
  std::unordered_map<std::string, std::pair<std::string, std::string>> unused_splits;
  auto text_of = [&](const Symbol& s) {
    return std::string_view(normalized.data() + s.begin, s.length);
  };
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& a = symbols[static_cast<size_t>(left)];
    const Symbol& b = symbols[static_cast<size_t>(right)];
    if (a.frozen || b.frozen) return;
    const std::string_view piece(normalized.data() + a.begin, a.length + b.length);
    const int32_t id = find_token(ids_, piece, key);
    if (id < 0 || !is_mergeable(types_[static_cast<size_t>(id)])) return;
    agenda.push({scores_[static_cast<size_t>(id)], left, right, piece.size()});
    if (types_[static_cast<size_t>(id)] == Type::unused) {
      unused_splits[std::string(piece)] = {std::string(text_of(a)), std::string(text_of(b))};
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    consider(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }
  while (!agenda.empty()) {
    const MergeCandidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[static_cast<size_t>(top.left)];
    Symbol& right = symbols[static_cast<size_t>(top.right)];
    // Stale: one side was merged away or grew since the candidate was queued.
    if (left.length == 0 || right.length == 0 || left.length + right.length != top.length) continue;
    left.length += right.length;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.left;
    right.length = 0;
    consider(left.prev, top.left);
    consider(top.left, left.next);
  }

  // Step 4: ids.
  bool after_unknown = false;  // the last symbol emitted was no piece (and had no byte tokens)
  auto emit = [&](std::string_view piece) {
    const int32_t id = find_token(ids_, piece, key);
    if (id >= 0 && is_mergeable(types_[static_cast<size_t>(id)])) {
      ids.push_back(id);
      after_unknown = false;
    } else if (byte_fallback_) {
      for (const char c : piece) {
        const int32_t byte_id = byte_ids_[static_cast<uint8_t>(c)];
        ids.push_back(byte_id >= 0 ? byte_id : unk_id_);
      }
    } else if (!after_unknown) {
      ids.push_back(unk_id_);
      after_unknown = true;
    }
  };
  std::vector<std::string_view> pending;  // unused pieces being split back, last first
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const std::string_view piece = text_of(symbols[static_cast<size_t>(i)]);
    if (unused_splits.empty()) {
      emit(piece);
      continue;
    }
    pending.push_back(piece);
    while (!pending.empty()) {
      const std::string_view part = pending.back();
      pending.pop_back();
      const int32_t id = find_token(ids_, part, key);
      const auto split = id >= 0 && types_[static_cast<size_t>(id)] == Type::unused
                             ? unused_splits.find(std::string(part))
                             : unused_splits.end();
      if (split == unused_splits.end()) {
        emit(part);
      } else {
        pending.push_back(split->second.second);
        pending.push_back(split->second.first);
      }
    }
  }
  return ids;
}

std::string Vocab::decode(const std::vector<int32_t>& ids, bool strip_leading_space) const {
  std::string text;
  bool at_start = strip_leading_space;  // the dummy-prefix space is still to be dropped
  for (const int32_t id : ids) {
    if (id < 0 || id >= size()) {
      throw InputError(str("token id ", id, " is outside the vocabulary of ", size(), " tokens"));
    }
    const std::string& token = tokens_[static_cast<size_t>(id)];
    switch (types_[static_cast<size_t>(id)]) {
      case Type::control:
      case Type::unused:
        continue;
      case Type::unknown:
        text += kUnknownSurface;
        break;
      case Type::byte:
        text.push_back(static_cast<char>(byte_of_token(token)));
        break;
      case Type::normal:
      case Type::user_defined:
        append_surface(text, token, at_start);
        break;
    }
    at_start = false;
  }
  return text;
}

std::string Vocab::piece(int32_t id) const {
  if (id < 0 || id >= size()) {
    throw InputError(str("token id ", id, " is outside the vocabulary of ", size(), " tokens"));
  }
  std::string text;
  switch (type(id)) {
    case Type::control:
    case Type::unused:
      break;
    case Type::unknown:
      text = kUnknownSurface;
      break;
    case Type::byte:
      text.push_back(static_cast<char>(byte_of_token(token(id))));
      break;
    case Type::normal:
    case Type::user_defined:
      append_surface(text, token(id), false);
      break;
  }
  return text;
}

}  // namespace edgedistill::runtime
