// A byte trie over vocabulary pieces: the prefix look-ups of SentencePiece encoding (unigram's
// lattice, BPE's "is this concatenation a piece", the user-defined prefix matcher) walk it one byte
// at a time, so no look-up builds a string or hashes a whole key.
//
// Layout: nodes are numbered from 0 (the root); the root's 256 children are a direct table and
// every other edge (node, byte) -> child lives in one open-addressing hash table keyed by
// node * 256 + byte (linear probing, at most half full), so a step costs one multiply and usually
// one probe. Each node has a value: the id of the piece that ends there, or -1. An edge carries its
// child's value too, so a walk that needs the values reads one cache line per byte.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace edgedistill::tok {

class PieceTrie {
 public:
  static constexpr uint32_t kRoot = 0;
  static constexpr uint32_t kNoNode = UINT32_MAX;

  // A step of a walk: the child reached (kNoNode: none) and its value.
  struct Step {
    uint32_t node;
    int32_t value;
  };

  PieceTrie();

  // Adds `key` (not empty) with `value` (>= 0), replacing the value of an equal key. Throws
  // InputError when the trie would outgrow 2^24 - 1 nodes (a vocabulary far beyond any model's).
  void insert(std::string_view key, int32_t value);

  // The child of `node` along `byte` and its value; {kNoNode, -1} when there is none.
  Step step(uint32_t node, uint8_t byte) const {
    if (node == kRoot) return root_[byte];
    const uint32_t key = (node << 8) | byte;
    for (uint32_t slot = slot_of(key);; slot = (slot + 1) & mask_) {
      const Edge& edge = edges_[slot];
      if (edge.key == key) return {edge.child, edge.value};
      if (edge.key == kEmptyKey) return {kNoNode, -1};
    }
  }

  // The child of `node` along `byte`, or kNoNode.
  uint32_t child(uint32_t node, uint8_t byte) const { return step(node, byte).node; }

  // The node reached from `node` along all bytes of `text`, or kNoNode.
  uint32_t walk(uint32_t node, std::string_view text) const {
    for (size_t i = 0; i < text.size() && node != kNoNode; ++i) {
      node = child(node, static_cast<uint8_t>(text[i]));
    }
    return node;
  }

  // The id of the piece that ends at `node`, or -1.
  int32_t value(uint32_t node) const { return values_[node]; }

  // The value of exactly `key`, or -1.
  int32_t find(std::string_view key) const {
    const uint32_t node = walk(kRoot, key);
    return node == kNoNode ? -1 : values_[node];
  }

  bool empty() const { return values_.size() == 1; }

 private:
  struct Edge {
    uint32_t key;  // node * 256 + byte; kEmptyKey in an unused slot
    uint32_t child;
    int32_t value;  // the child's
  };
  // Node 2^24 - 1 with byte 255: never a real edge, since nodes stay below 2^24 - 1.
  static constexpr uint32_t kEmptyKey = UINT32_MAX;

  uint32_t slot_of(uint32_t key) const { return (key * 0x9E3779B1u) >> shift_; }
  void grow();
  void put_edge(const Edge& edge);
  void set_value(uint32_t parent, uint8_t byte, uint32_t node, int32_t value);

  Step root_[256];
  std::vector<Edge> edges_;
  uint32_t mask_ = 0;   // edges_.size() - 1 (a power of two)
  uint32_t shift_ = 0;  // 32 - log2(edges_.size()): the hash's top bits index the table
  size_t edge_count_ = 0;
  std::vector<int32_t> values_;  // per node
};

}  // namespace edgedistill::tok
