// SentencePiece 0.1.97's segmentation, re-implemented from its rules (bpe_model.cc,
// unigram_model.cc, char_model.cc, word_model.cc, model_interface.cc and
// sentencepiece_processor.cc's PopulateSentencePieceText); the header lists the steps.
//
// BPE keeps the symbols in a linked list and the candidate merges in a priority queue (stale ones
// are skipped when popped), so n characters cost O(n log n); each symbol remembers its trie node,
// so "is left + right a piece" walks only the right symbol's bytes. Unigram is the one-pass
// Viterbi of unigram_model.cc's EncodeOptimized: the best path ending at each byte position, with
// the pieces that start at a position found by walking the trie from there.
#include "tokenizer/spm_encoder.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <queue>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "core/files.h"

namespace edgedistill::tok {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581

// Unigram: an unknown character costs this much below the lowest normal piece's score
// (unigram_model.cc, kUnkPenalty).
constexpr float kUnknownPenalty = 10.0f;

// The byte length SentencePiece assumes for the character that starts with `lead` (util.h,
// OneCharLen): it looks at the lead byte only, so a stray continuation byte counts as one.
size_t lead_byte_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

size_t char_length_at(std::string_view text, size_t position) {
  return std::min(lead_byte_length(static_cast<uint8_t>(text[position])), text.size() - position);
}

// Whether `text` has a U+2581 right after a character that is not U+2581 ("a\u2581", not
// "\u2581\u2581a").
bool has_space_marker_after_other_char(std::string_view text) {
  for (size_t at = text.find(kSpaceMarker, 1); at != std::string_view::npos;
       at = text.find(kSpaceMarker, at + 1)) {
    if (at < kSpaceMarker.size() ||
        text.substr(at - kSpaceMarker.size(), kSpaceMarker.size()) != kSpaceMarker) {
      return true;
    }
  }
  return false;
}

SpmEncoder::Algorithm algorithm_of(const SentencePieceModel& model) {
  if (model.model_type == "bpe") return SpmEncoder::Algorithm::bpe;
  if (model.model_type == "char") return SpmEncoder::Algorithm::character;
  if (model.model_type == "word") return SpmEncoder::Algorithm::word;
  return SpmEncoder::Algorithm::unigram;
}

[[noreturn]] void fail_model(const std::string& origin, const std::string& what) {
  throw FileError(str("SentencePiece model ", origin, " cannot be used: ", what,
                      "; libsentencepiece refuses such a model too: re-train or re-download it"));
}

// Checks what SentencePiece's loader checks beyond the wire format (model_interface.cc,
// InitializePieces) and returns the unknown piece's id. The encoder checks the pieces themselves.
int32_t check_model(const SentencePieceModel& model, const std::string& origin) {
  int32_t unk_id = -1;
  bool has_byte[256] = {};
  for (size_t i = 0; i < model.pieces.size(); ++i) {
    const auto& piece = model.pieces[i];
    if (piece.type == TokenType::unknown) {
      if (unk_id >= 0) {
        fail_model(origin, str("pieces ", unk_id, " and ", i, " are both of type unknown"));
      }
      unk_id = static_cast<int32_t>(i);
    } else if (piece.type == TokenType::byte) {
      if (!model.byte_fallback) {
        fail_model(origin, str("piece ", i, " '", piece.text,
                               "' is a byte piece but trainer_spec.byte_fallback is false"));
      }
      const int byte = byte_of_token(piece.text);
      if (byte < 0) {
        fail_model(origin, str("byte piece ", i, " is spelled '", piece.text, "', not <0xNN>"));
      }
      has_byte[byte] = true;
    }
  }
  if (unk_id < 0) fail_model(origin, "no piece has type unknown (<unk>)");
  if (model.byte_fallback) {
    for (int byte = 0; byte < 256; ++byte) {
      if (!has_byte[byte]) {
        fail_model(origin, str("byte_fallback is true but there is no piece ",
                               byte_token(static_cast<uint8_t>(byte)),
                               " (all 256 byte pieces are needed)"));
      }
    }
  }
  return unk_id;
}

}  // namespace

// Turns the model's segments into ids as SentencePieceProcessor does: a piece's id; for text that
// is no piece (or spells a control or unknown piece), its bytes' <0xNN> pieces with byte fallback,
// else one <unk> for each run of such segments.
class SpmEncoder::Emitter {
 public:
  Emitter(const SpmEncoder& encoder, std::vector<int32_t>& out) : encoder_(encoder), out_(out) {}

  // `id`: the piece spelled `text` (any type), or -1.
  void emit(std::string_view text, int32_t id) {
    if (id >= 0) {
      const TokenType type = encoder_.info_[static_cast<size_t>(id)].type;
      if (type != TokenType::control && type != TokenType::unknown) {
        out_.push_back(id);
        after_unknown_ = false;
        return;
      }
    }
    if (encoder_.has_byte_pieces_) {
      for (const char c : text) {
        const int32_t byte_id = encoder_.byte_ids_[static_cast<uint8_t>(c)];
        out_.push_back(byte_id >= 0 ? byte_id : encoder_.unk_id_);
      }
    } else if (!after_unknown_) {
      out_.push_back(encoder_.unk_id_);
    }
    after_unknown_ = true;
  }

 private:
  const SpmEncoder& encoder_;
  std::vector<int32_t>& out_;
  bool after_unknown_ = false;
};

SpmEncoder::SpmEncoder(std::vector<SentencePieceModel::Piece> pieces, Algorithm algorithm,
                       int32_t unk_id, const std::string& origin)
    : pieces_(std::move(pieces)),
      algorithm_(algorithm),
      unk_id_(unk_id),
      max_normal_score_(FLT_MIN),
      min_normal_score_(FLT_MAX) {
  auto fail = [&](const std::string& what) {
    throw InputError(str("vocabulary of ", origin, ": ", what));
  };
  if (pieces_.empty()) fail("it has no pieces");
  if (pieces_.size() > static_cast<size_t>(INT32_MAX)) fail("it has more than 2^31 - 1 pieces");
  if (unk_id < 0 || static_cast<size_t>(unk_id) >= pieces_.size()) {
    fail(str("the unknown piece's id ", unk_id, " is outside the vocabulary of ", pieces_.size(),
             " pieces"));
  }
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  splits_at_space_marker_ = true;
  info_.reserve(pieces_.size());
  for (const auto& piece : pieces_) info_.push_back({piece.score, piece.type});
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const auto& piece = pieces_[i];
    const auto id = static_cast<int32_t>(i);
    if (piece.text.empty()) fail(str("piece ", i, " is empty; pieces must have text"));
    if (std::isnan(piece.score)) fail(str("piece ", i, " '", piece.text, "' has score NaN"));
    const int32_t earlier = trie_.find(piece.text);
    if (earlier >= 0) {
      fail(str("pieces ", earlier, " and ", i, " are both '", piece.text,
               "'; pieces must be unique"));
    }
    trie_.insert(piece.text, id);
    if (is_mergeable(id) && has_space_marker_after_other_char(piece.text)) {
      splits_at_space_marker_ = false;
    }
    switch (piece.type) {
      case TokenType::byte: {
        const int byte = byte_of_token(piece.text);
        if (byte < 0) {
          fail(str("byte piece ", i, " is spelled '", piece.text,
                   "'; expected <0xNN> with uppercase hex"));
        }
        byte_ids_[byte] = id;
        has_byte_pieces_ = true;
        break;
      }
      case TokenType::user_defined:
        user_defined_trie_.insert(piece.text, id);
        break;
      case TokenType::unused:
        has_unused_pieces_ = true;
        break;
      case TokenType::normal:
        max_normal_score_ = std::max(max_normal_score_, piece.score);
        min_normal_score_ = std::min(min_normal_score_, piece.score);
        break;
      default:
        break;
    }
  }
  if (has_unused_pieces_) splits_at_space_marker_ = false;
}

std::vector<std::string_view> SpmEncoder::user_defined_pieces() const {
  std::vector<std::string_view> out;
  for (const auto& piece : pieces_) {
    if (piece.type == TokenType::user_defined) out.push_back(piece.text);
  }
  return out;
}

bool SpmEncoder::is_mergeable(int32_t id) const {
  const TokenType type = info_[static_cast<size_t>(id)].type;
  return type == TokenType::normal || type == TokenType::user_defined || type == TokenType::unused;
}

size_t SpmEncoder::user_defined_prefix(std::string_view text) const {
  size_t longest = 0;
  uint32_t node = PieceTrie::kRoot;
  for (size_t i = 0; i < text.size(); ++i) {
    node = user_defined_trie_.child(node, static_cast<uint8_t>(text[i]));
    if (node == PieceTrie::kNoNode) break;
    if (user_defined_trie_.value(node) >= 0) longest = i + 1;
  }
  return longest;
}

void SpmEncoder::encode_normalized(std::string_view normalized, std::vector<int32_t>& out) const {
  if (normalized.empty()) return;
  if (normalized.size() >= static_cast<size_t>(INT32_MAX)) {
    throw InputError(str("the text to encode has ", normalized.size(),
                         " bytes after normalization; split it into pieces under 2 GiB"));
  }
  Emitter emitter(*this, out);
  switch (algorithm_) {
    case Algorithm::bpe:
      encode_bpe(normalized, true, emitter);
      break;
    case Algorithm::character:
      encode_bpe(normalized, false, emitter);
      break;
    case Algorithm::unigram:
      encode_unigram(normalized, emitter);
      break;
    case Algorithm::word:
      encode_words(normalized, emitter);
      break;
  }
}

namespace {

// One symbol of the text being merged: bytes [begin, begin + length), in a doubly linked list. A
// symbol merged into its left neighbour has length 0.
struct Symbol {
  uint32_t begin = 0;
  uint32_t length = 0;
  int32_t prev = -1, next = -1;
  uint32_t node = PieceTrie::kNoNode;  // the trie node of the symbol's text, if it is a prefix
  bool frozen = false;                 // a user-defined piece: never merged
};

// Two adjacent symbols, `left` and its next, whose concatenation (`length` bytes, trie `node`) is a
// piece. `order` ranks candidates as bpe_model.cc's comparator does (the highest score first, then
// the leftmost pair) in one integer: the score's bits made order-preserving in the high half, the
// complement of the left symbol's index in the low half. The right symbol is not stored: while the
// candidate is not stale it is still left's next (left's next changes only when left absorbs it).
struct MergeCandidate {
  uint64_t order;
  uint32_t node;
  uint32_t length;

  int32_t left() const { return static_cast<int32_t>(UINT32_MAX - static_cast<uint32_t>(order)); }
  bool operator<(const MergeCandidate& other) const { return order < other.order; }
};

uint64_t merge_order(float score, int32_t left) {
  if (score == 0) score = 0;  // -0 and +0 compare equal as floats (scores are never NaN)
  uint32_t bits = 0;
  std::memcpy(&bits, &score, sizeof(bits));
  bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return (static_cast<uint64_t>(bits) << 32) | (UINT32_MAX - static_cast<uint32_t>(left));
}

}  // namespace

void SpmEncoder::encode_bpe(std::string_view text, bool merge, Emitter& emitter) const {
  // Symbols, split into independent runs where no merge can cross (see splits_at_space_marker_):
  // each run is its own linked list, `run_heads` holds the first symbol of each.
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  std::vector<int32_t> run_heads = {0};
  const bool has_user_defined = !user_defined_trie_.empty();
  const bool split_runs = merge && splits_at_space_marker_;
  bool after_space_marker = true;  // the previous symbol is U+2581 (or there is none)
  for (size_t begin = 0; begin < text.size();) {
    Symbol symbol;
    symbol.begin = static_cast<uint32_t>(begin);
    const size_t user_defined = has_user_defined ? user_defined_prefix(text.substr(begin)) : 0;
    if (user_defined > 0) {
      symbol.length = static_cast<uint32_t>(user_defined);
      symbol.frozen = true;
    } else {
      symbol.length = static_cast<uint32_t>(char_length_at(text, begin));
      symbol.node = trie_.walk(PieceTrie::kRoot, text.substr(begin, symbol.length));
    }
    const auto index = static_cast<int32_t>(symbols.size());
    const bool is_space_marker = text.substr(begin, symbol.length) == kSpaceMarker;
    if (split_runs && is_space_marker && !after_space_marker) {
      symbols.back().next = -1;
      run_heads.push_back(index);
    } else {
      symbol.prev = index - 1;
      if (index > 0) symbols.back().next = index;
    }
    after_space_marker = is_space_marker;
    begin += symbol.length;
    symbols.push_back(symbol);
  }

  // What each unused piece was last queued to be merged from (its left part's length): the rule
  // of bpe_model.cc's rev_merge, which keeps the latest pair that formed the piece.
  std::unordered_map<int32_t, uint32_t> unused_split;
  if (merge) {
    std::priority_queue<MergeCandidate> agenda;
    auto consider = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const Symbol& a = symbols[static_cast<size_t>(left)];
      const Symbol& b = symbols[static_cast<size_t>(right)];
      if (a.frozen || b.frozen || a.node == PieceTrie::kNoNode) return;
      const uint32_t node = trie_.walk(a.node, text.substr(b.begin, b.length));
      if (node == PieceTrie::kNoNode) return;
      const int32_t id = trie_.value(node);
      if (id < 0 || !is_mergeable(id)) return;
      const PieceInfo& piece = info_[static_cast<size_t>(id)];
      agenda.push({merge_order(piece.score, left), node, a.length + b.length});
      if (has_unused_pieces_ && piece.type == TokenType::unused) unused_split[id] = a.length;
    };
    for (const int32_t head : run_heads) {
      for (int32_t i = head; symbols[static_cast<size_t>(i)].next >= 0;) {
        const int32_t next = symbols[static_cast<size_t>(i)].next;
        consider(i, next);
        i = next;
      }
      while (!agenda.empty()) {
        const MergeCandidate top = agenda.top();
        agenda.pop();
        const int32_t left_index = top.left();
        Symbol& left = symbols[static_cast<size_t>(left_index)];
        // Stale: a side was merged away or grew since the candidate was queued.
        if (left.length == 0 || left.next < 0) continue;
        Symbol& right = symbols[static_cast<size_t>(left.next)];
        if (left.length + right.length != top.length) continue;
        left.length += right.length;
        left.node = top.node;
        left.next = right.next;
        if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = left_index;
        right.length = 0;
        consider(left.prev, left_index);
        consider(left_index, left.next);
      }
    }
  }

  // An unused piece is split back into the symbols it was merged from, recursively (last first
  // on the stack).
  std::vector<std::pair<uint32_t, uint32_t>> pending;  // {begin, length}
  for (const int32_t head : run_heads) {
    for (int32_t i = head; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
      const Symbol& symbol = symbols[static_cast<size_t>(i)];
      const int32_t id = symbol.frozen
                             ? trie_.find(text.substr(symbol.begin, symbol.length))
                             : (symbol.node == PieceTrie::kNoNode ? -1 : trie_.value(symbol.node));
      if (unused_split.empty() || id < 0 ||
          pieces_[static_cast<size_t>(id)].type != TokenType::unused) {
        emitter.emit(text.substr(symbol.begin, symbol.length), id);
        continue;
      }
      pending.push_back({symbol.begin, symbol.length});
      while (!pending.empty()) {
        const auto [begin, length] = pending.back();
        pending.pop_back();
        const std::string_view part = text.substr(begin, length);
        const int32_t part_id = trie_.find(part);
        const auto split =
            part_id >= 0 && pieces_[static_cast<size_t>(part_id)].type == TokenType::unused
                ? unused_split.find(part_id)
                : unused_split.end();
        if (split == unused_split.end()) {
          emitter.emit(part, part_id);
        } else {
          pending.push_back({begin + split->second, length - split->second});
          pending.push_back({begin, split->second});
        }
      }
    }
  }
}

void SpmEncoder::encode_unigram(std::string_view text, Emitter& emitter) const {
  // The best path ending at each byte position: its score, where its last piece starts (-1:
  // none yet) and that piece's id (-1: an unknown character).
  struct BestPath {
    float score = 0;
    int32_t start = -1;
    int32_t id = -1;
  };
  const size_t size = text.size();
  std::vector<BestPath> best(size + 1);
  const float unknown_score = min_normal_score_ - kUnknownPenalty;
  for (size_t start = 0; start < size;) {
    const float score_here = best[start].score;
    const size_t char_length = char_length_at(text, start);
    bool has_single_char_piece = false;
    uint32_t node = PieceTrie::kRoot;
    for (size_t end = start; end < size;) {
      const PieceTrie::Step step = trie_.step(node, static_cast<uint8_t>(text[end++]));
      if (step.node == PieceTrie::kNoNode) break;
      node = step.node;
      const int32_t id = step.value;
      if (id < 0) continue;
      const PieceInfo& piece = info_[static_cast<size_t>(id)];
      // Only normal and user-defined pieces are candidates: unused ones are skipped, and control,
      // unknown and byte pieces are not in unigram_model.cc's trie at all.
      if (piece.type != TokenType::normal && piece.type != TokenType::user_defined) continue;
      BestPath& target = best[end];
      const size_t length = end - start;
      // unigram_model.cc's "user-defined ? length * max_score - 0.1 : score" has type double (the
      // conditional's common type), so every candidate is summed and compared in double against
      // the float stored so far, then rounded to float when it wins; ties (which this rounding
      // decides) go to the earlier start. The user-defined bonus is a float product (length in
      // bytes; max_score from FLT_MIN) before the double subtraction.
      const double piece_score =
          piece.type == TokenType::user_defined
              ? static_cast<double>(static_cast<float>(length) * max_normal_score_) - 0.1
              : static_cast<double>(piece.score);
      const double candidate = piece_score + static_cast<double>(score_here);
      if (target.start < 0 || candidate > static_cast<double>(target.score)) {
        target = {static_cast<float>(candidate), static_cast<int32_t>(start), id};
      }
      if (length == char_length) has_single_char_piece = true;
    }
    if (!has_single_char_piece) {
      BestPath& target = best[start + char_length];
      const float candidate = unknown_score + score_here;  // float, unlike the pieces' sums
      if (target.start < 0 || candidate > target.score) {
        target = {candidate, static_cast<int32_t>(start), -1};
      }
    }
    start += char_length;
  }
  struct PathPiece {
    size_t begin, end;
    int32_t id;
  };
  std::vector<PathPiece> path;  // last piece first
  for (size_t end = size; end > 0;) {
    const BestPath& node = best[end];
    ED_CHECK(node.start >= 0 && static_cast<size_t>(node.start) < end, "position ", end);
    path.push_back({static_cast<size_t>(node.start), end, node.id});
    end = static_cast<size_t>(node.start);
  }
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    emitter.emit(text.substr(it->begin, it->end - it->begin), it->id);
  }
}

void SpmEncoder::encode_words(std::string_view text, Emitter& emitter) const {
  // A new word starts at the text's start and at every U+2581 (model_interface.cc,
  // SplitIntoWords, as the word model calls it: prefix spaces, no whitespace-only pieces).
  size_t word_begin = 0;
  for (size_t position = 0; position < text.size();) {
    const size_t length = char_length_at(text, position);
    if (position > word_begin && text.substr(position, length) == kSpaceMarker) {
      const std::string_view word = text.substr(word_begin, position - word_begin);
      emitter.emit(word, trie_.find(word));
      word_begin = position;
    }
    position += length;
  }
  const std::string_view word = text.substr(word_begin);
  emitter.emit(word, trie_.find(word));
}

namespace {

SpmEncoder make_encoder(const SentencePieceModel& model, const std::string& origin) {
  const int32_t unk_id = check_model(model, origin);
  try {
    return SpmEncoder(model.pieces, algorithm_of(model), unk_id, origin);
  } catch (const FileError&) {
    throw;
  } catch (const InputError& error) {
    // A bad vocabulary inside a model file is a bad file.
    throw FileError(str(error.what(), "; the SentencePiece model file is damaged"));
  }
}

}  // namespace

SentencePieceCodec::SentencePieceCodec(SentencePieceModel model, const std::string& origin)
    : model_(std::move(model)),
      encoder_(make_encoder(model_, origin)),
      normalizer_(model_.normalizer(), model_.treat_whitespace_as_suffix, origin) {
  finish_setup(origin);
}

SentencePieceCodec::SentencePieceCodec(SentencePieceModel model, const std::string& origin,
                                       VocabularyTag)
    : model_(std::move(model)),
      encoder_(model_.pieces, algorithm_of(model_), model_.unk_id, origin),
      normalizer_(model_.normalizer(), model_.treat_whitespace_as_suffix, origin) {
  finish_setup(origin);
}

void SentencePieceCodec::finish_setup(const std::string& origin) {
  normalizer_.set_user_defined_pieces(encoder_.user_defined_pieces());
  if (!model_.denormalizer.precompiled_charsmap.empty()) {
    denormalizer_ =
        std::make_unique<SpmNormalizer>(model_.denormalizer, false, origin + " (denormalizer)");
  }
}

SentencePieceCodec SentencePieceCodec::for_vocabulary(SentencePieceModel model,
                                                      const std::string& origin) {
  return SentencePieceCodec(std::move(model), origin, VocabularyTag{});
}

SentencePieceCodec SentencePieceCodec::from_file(const std::string& path) {
  const std::string bytes = core::read_file(path, "SentencePiece model");
  return SentencePieceCodec(parse_sentencepiece_model(bytes, path), path);
}

std::vector<int32_t> SentencePieceCodec::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  encode(text, ids);
  return ids;
}

void SentencePieceCodec::encode(std::string_view text, std::vector<int32_t>& out) const {
  const std::string normalized = normalizer_.normalize(text);
  encoder_.encode_normalized(normalized, out);
}

std::string SentencePieceCodec::decode(const std::vector<int32_t>& ids) const {
  return decode_sentencepiece(model_, ids, denormalizer_.get());
}

}  // namespace edgedistill::tok
