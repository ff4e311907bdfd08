#include "tokenizer/piece_trie.h"

#include <algorithm>

#include "core/error.h"

namespace edgedistill::tok {
namespace {

constexpr uint32_t kInitialSlots = 16;
constexpr uint32_t kInitialShift = 32 - 4;      // log2(kInitialSlots) = 4
constexpr uint32_t kMaxNodes = (1u << 24) - 1;  // node * 256 + byte must fit 32 bits

}  // namespace

PieceTrie::PieceTrie() {
  std::fill(std::begin(root_), std::end(root_), Step{kNoNode, -1});
  edges_.assign(kInitialSlots, Edge{kEmptyKey, kNoNode, -1});
  mask_ = kInitialSlots - 1;
  shift_ = kInitialShift;
  values_.push_back(-1);
}

void PieceTrie::put_edge(const Edge& edge) {
  uint32_t slot = slot_of(edge.key);
  while (edges_[slot].key != kEmptyKey) slot = (slot + 1) & mask_;
  edges_[slot] = edge;
}

void PieceTrie::grow() {
  std::vector<Edge> old;
  old.swap(edges_);
  edges_.assign(old.size() * 2, Edge{kEmptyKey, kNoNode, -1});
  mask_ = static_cast<uint32_t>(edges_.size() - 1);
  --shift_;
  for (const Edge& edge : old) {
    if (edge.key != kEmptyKey) put_edge(edge);
  }
}

void PieceTrie::set_value(uint32_t parent, uint8_t byte, uint32_t node, int32_t value) {
  values_[node] = value;
  if (parent == kRoot) {
    root_[byte].value = value;
    return;
  }
  const uint32_t key = (parent << 8) | byte;
  uint32_t slot = slot_of(key);
  while (edges_[slot].key != key) slot = (slot + 1) & mask_;
  edges_[slot].value = value;
}

void PieceTrie::insert(std::string_view key, int32_t value) {
  ED_CHECK(!key.empty() && value >= 0, "key size ", key.size(), ", value ", value);
  uint32_t node = kRoot, parent = kRoot;
  uint8_t byte = 0;
  for (const char c : key) {
    byte = static_cast<uint8_t>(c);
    parent = node;
    uint32_t next = child(node, byte);
    if (next == kNoNode) {
      if (values_.size() >= kMaxNodes) {
        throw InputError(str("the vocabulary's pieces need more than ", kMaxNodes,
                             " trie nodes; no SentencePiece model is that large: check that the "
                             "pieces are a vocabulary"));
      }
      next = static_cast<uint32_t>(values_.size());
      values_.push_back(-1);
      if (node == kRoot) {
        root_[byte] = {next, -1};
      } else {
        if (2 * (edge_count_ + 1) > edges_.size()) grow();
        put_edge({(node << 8) | byte, next, -1});
        ++edge_count_;
      }
    }
    node = next;
  }
  set_value(parent, byte, node, value);
}

}  // namespace edgedistill::tok
