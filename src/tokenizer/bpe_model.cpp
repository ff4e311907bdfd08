#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "core/error.h"
#include "tokenizer/token_type.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

// GPT-2's printable bytes: spelled as themselves.
bool spells_itself(uint8_t byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
}

struct ByteLevelTables {
  uint32_t char_of_byte[256];
  int16_t byte_of_char[512];  // the alphabet lies below U+0200; -1: not in it
  ByteLevelTables() {
    std::fill(std::begin(byte_of_char), std::end(byte_of_char), int16_t{-1});
    uint32_t next = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const auto b = static_cast<uint8_t>(byte);
      char_of_byte[byte] = spells_itself(b) ? b : next++;
      byte_of_char[char_of_byte[byte]] = static_cast<int16_t>(byte);
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

// Words longer than this are not cached (as Hugging Face's BPE cache, which skips long words):
// they are rare and would crowd out the common ones.
constexpr size_t kMaxCachedWordBytes = 256;
// Entries per thread and model before the cache is emptied and refilled.
constexpr size_t kCacheCapacity = 1 << 16;

std::atomic<uint64_t> g_next_cache_id{1};

// One thread's cache of encoded words for the model it last served.
struct WordCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};

WordCache& thread_word_cache() {
  thread_local WordCache cache;
  return cache;
}

// A symbol of the word being merged, in a doubly linked list; merged-away symbols have length 0.
struct Symbol {
  int32_t id;
  uint32_t length;
  int32_t prev, next;
};

struct MergeCandidate {
  int32_t rank;
  int32_t left;  // symbol index
  int32_t result;
};

// Lowest rank first, then leftmost.
struct CandidateOrder {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

uint32_t byte_level_char(uint8_t byte) {
  return byte_level_tables().char_of_byte[byte];
}

std::string byte_level_spelling(std::string_view bytes) {
  std::string spelled;
  spelled.reserve(bytes.size() * 2);
  for (const char c : bytes) utf8_append(spelled, byte_level_char(static_cast<uint8_t>(c)));
  return spelled;
}

bool byte_level_bytes(std::string_view spelled, std::string& bytes) {
  const ByteLevelTables& tables = byte_level_tables();
  bytes.clear();
  for (size_t i = 0; i < spelled.size();) {
    uint32_t code = 0;
    const size_t length = utf8_decode(spelled, i, code);
    if (length == 0 || code >= 512 || tables.byte_of_char[code] < 0) return false;
    bytes.push_back(static_cast<char>(tables.byte_of_char[code]));
    i += length;
  }
  return true;
}

BpeModel::BpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
                   const std::vector<std::pair<int32_t, int32_t>>& merges,
                   const BpeOptions& options, const std::string& origin)
    : options_(options), cache_id_(g_next_cache_id.fetch_add(1)) {
  texts_.reserve(vocab.size());
  int32_t max_id = -1;
  for (const auto& [text, id] : vocab) {
    texts_.push_back(text);
    max_id = std::max(max_id, id);
  }
  std::vector<int32_t> text_of_id(static_cast<size_t>(max_id + 1), -1);
  ids_.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) {
    const int32_t id = vocab[i].second;
    if (id < 0) throw InputError(str(origin, ": token '", vocab[i].first, "' has id ", id));
    const auto [it, inserted] = ids_.emplace(texts_[i], id);
    if (!inserted) {
      throw InputError(str(origin, ": the vocabulary holds '", vocab[i].first, "' twice (ids ",
                           it->second, " and ", id, "); token strings must be unique"));
    }
    text_of_id[static_cast<size_t>(id)] = static_cast<int32_t>(i);
  }
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  for (int byte = 0; byte < 256; ++byte) {
    if (options_.byte_level) {
      const char c = static_cast<char>(byte);
      byte_ids_[byte] = find(std::string_view(&c, 1));
    } else if (options_.byte_fallback) {
      byte_ids_[byte] = find(byte_token(static_cast<uint8_t>(byte)));
    }
  }
  merges_.reserve(merges.size());
  merge_list_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [left, right] = merges[rank];
    auto text_of = [&](int32_t id) -> const std::string* {
      if (id < 0 || id > max_id || text_of_id[static_cast<size_t>(id)] < 0) return nullptr;
      return &texts_[static_cast<size_t>(text_of_id[static_cast<size_t>(id)])];
    };
    const std::string* a = text_of(left);
    const std::string* b = text_of(right);
    if (a == nullptr || b == nullptr) {
      throw InputError(str(origin, ": merge ", rank, " names token id ",
                           a == nullptr ? left : right, ", which is not in the vocabulary"));
    }
    joined = *a + *b;
    const int32_t result = find(joined);
    if (result < 0) {
      throw InputError(str(origin, ": merge ", rank,
                           " joins two tokens into one that is not in the ", "vocabulary (",
                           a->size(), " + ", b->size(), " bytes); the file is damaged"));
    }
    // A pair listed twice keeps its first rank, as llama.cpp's loader does.
    if (merges_.emplace(pair_key(left, right), Merge{static_cast<int32_t>(rank), result}).second) {
      merge_list_.emplace_back(left, right);
    }
  }
}

BpeModel::~BpeModel() = default;

int32_t BpeModel::find(std::string_view text) const {
  const auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids,
                               std::vector<uint32_t>& lengths) const {
  // Hugging Face's merge_word: each character that is no token falls back to its byte tokens (all
  // of them must exist), else to unk, fused with an unk just before it when fuse_unk.
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t length = 1;
    if (!options_.byte_level) {
      uint32_t code = 0;
      length = utf8_decode(word, i, code);
      ED_CHECK(length > 0, "BPE words must be well-formed UTF-8");
    }
    const std::string_view piece = word.substr(i, length);
    i += length;
    const int32_t id = length == 1 && options_.byte_level
                           ? byte_ids_[static_cast<uint8_t>(piece[0])]
                           : find(piece);
    if (id >= 0) {
      ids.push_back(id);
      lengths.push_back(static_cast<uint32_t>(length));
      last_was_unk = false;
      continue;
    }
    if (options_.byte_fallback && !options_.byte_level &&
        std::all_of(piece.begin(), piece.end(),
                    [&](char c) { return byte_ids_[static_cast<uint8_t>(c)] >= 0; })) {
      for (const char c : piece) {
        ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
        lengths.push_back(1);
      }
      last_was_unk = false;
      continue;
    }
    if (options_.unk_id < 0) continue;
    if (last_was_unk && options_.fuse_unk) {
      lengths.back() += static_cast<uint32_t>(length);
    } else {
      ids.push_back(options_.unk_id);
      lengths.push_back(static_cast<uint32_t>(length));
    }
    last_was_unk = true;
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  if (options_.ignore_merges) {
    if (const int32_t id = find(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<int32_t> ids;
  std::vector<uint32_t> lengths;
  ids.reserve(word.size());
  lengths.reserve(word.size());
  initial_symbols(word, ids, lengths);
  const auto n = static_cast<int32_t>(ids.size());
  if (n <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  std::vector<Symbol> symbols(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    symbols[static_cast<size_t>(i)] = {ids[static_cast<size_t>(i)], lengths[static_cast<size_t>(i)],
                                       i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, CandidateOrder> agenda;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const Symbol& a = symbols[static_cast<size_t>(left)];
    if (a.next < 0) return;
    const auto it = merges_.find(pair_key(a.id, symbols[static_cast<size_t>(a.next)].id));
    if (it != merges_.end()) agenda.push({it->second.rank, left, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!agenda.empty()) {
    const MergeCandidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[static_cast<size_t>(top.left)];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    // Stale: either side changed since the candidate was queued.
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.result != top.result) continue;
    left.id = top.result;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[static_cast<size_t>(left.next)].prev = top.left;
    consider(left.prev);
    consider(top.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    out.push_back(symbols[static_cast<size_t>(i)].id);
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWordBytes) {
    merge_word(word, out);
    return;
  }
  WordCache& cache = thread_word_cache();
  if (cache.owner != cache_id_ || cache.words.size() >= kCacheCapacity) {
    cache.words.clear();
    cache.owner = cache_id_;
  }
  // C++17's unordered_map has no heterogeneous look-up; a thread-local key buffer avoids an
  // allocation per look-up for words beyond the small-string size.
  thread_local std::string key;
  key.assign(word.data(), word.size());
  const auto it = cache.words.find(key);
  if (it != cache.words.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t before = out.size();
  merge_word(word, out);
  cache.words.emplace(
      key, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
}

}  // namespace edgedistill::tok
