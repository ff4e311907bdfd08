// The offline teacher cache: the teacher's top-k next-token log-probabilities for every position of
// a token shard, computed once and memory-mapped by distillation runs instead of running the
// teacher at each step.
//
// A cache is a directory holding topk.bin and its JSON sidecar topk.json:
//
//   offset 0     TeacherCacheHeader (128 bytes, little-endian)
//   offset 128   `positions` records, one per shard position p in [0, positions):
//                  ids[k]       uint16 (uint32 when vocab_size > 65536), most likely first
//                  logprobs[k]  float16: log p(id | tokens up to p) at temperature 1
//                  tail         float32: the mass of the other vocab_size - k tokens
//
// Coverage is the shard's windows at offset 0: window w holds positions [w * seq_len, (w + 1) *
// seq_len), and the teacher sees only that window's tokens (its context restarts at each window,
// as in evaluation_windows). The tail is float32 because losses take its logarithm and it is often
// below float16's smallest normal (6e-5), where float16 keeps only a few significant bits.
// At k = 32 and a vocabulary <= 65536 a record is 4k + 4 = 132 bytes per token.
//
// The sidecar repeats the header's fields and adds provenance (teacher directory, source shard
// path, edgedistill version); the reader refuses a cache whose two files disagree.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/files.h"
#include "data/token_shard.h"
#include "distill/teacher.h"
#include "distill/top_k.h"

namespace edgedistill::distill {

namespace fs = std::filesystem;

inline constexpr char kTeacherCacheMagic[8] = {'E', 'D', 'T', 'O', 'P', 'K', '\0', '\0'};
inline constexpr uint32_t kTeacherCacheVersion = 1;
inline constexpr const char* kTeacherCacheFormat = "edgedistill-teacher-cache";
inline constexpr const char* kTeacherCacheBinName = "topk.bin";
inline constexpr const char* kTeacherCacheJsonName = "topk.json";

// How the log-probabilities and the tail are stored (header codes).
enum class CacheFloatDtype : uint32_t {
  float16 = 1,  // IEEE 754 binary16 (io/half.h)
  float32 = 2,
};

#pragma pack(push, 1)
struct TeacherCacheHeader {
  char magic[8];                 // kTeacherCacheMagic
  uint32_t version;              // kTeacherCacheVersion
  uint32_t header_bytes;         // sizeof(TeacherCacheHeader): where the records start
  uint32_t k;                    // ids per position, 1 <= k <= vocab_size
  uint32_t vocab_size;           // the teacher's vocabulary
  uint32_t seq_len;              // window length the teacher saw
  uint32_t id_dtype;             // data::TokenDtype: 1 uint16, 2 uint32
  uint32_t logprob_dtype;        // CacheFloatDtype (float16)
  uint32_t tail_dtype;           // CacheFloatDtype (float32)
  uint64_t positions;            // records after the header: windows * seq_len
  uint64_t source_tokens;        // tokens in the source shard
  uint8_t weights_sha256[32];    // of the teacher's weights.safetensors
  uint8_t tokenizer_sha256[32];  // of the tokenizer (teacher and shard agree)
  uint8_t reserved[8];           // 0
};
#pragma pack(pop)
static_assert(sizeof(TeacherCacheHeader) == 128, "the teacher cache header is 128 bytes on disk");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "teacher caches are little-endian; a big-endian host needs byte swapping here");

// Bytes of one position's record for a given k and vocabulary size (132 at k = 32, V <= 65536).
int64_t teacher_cache_record_bytes(int64_t k, int64_t vocab_size);

// What a cache holds and where it came from: the header's fields plus the sidecar's provenance.
struct TeacherCacheInfo {
  fs::path dir;
  uint32_t version = kTeacherCacheVersion;
  int64_t k = 0;
  int64_t vocab_size = 0;
  int64_t seq_len = 0;
  int64_t windows = 0;        // positions / seq_len
  int64_t positions = 0;      // records
  std::string id_dtype;       // "uint16" or "uint32"
  std::string logprob_dtype;  // "float16"
  std::string tail_dtype;     // "float32"
  int64_t record_bytes = 0;
  uint64_t file_bytes = 0;       // of topk.bin, header included
  double bytes_per_token = 0.0;  // file_bytes / positions
  std::string teacher_weights_sha256;
  fs::path teacher_dir;
  std::string tokenizer_hash;
  std::string source_shard;  // the shard's path as given when the cache was written
  int64_t source_tokens = 0;
  std::string source_tokenizer_hash;
  std::string edgedistill_version;  // that wrote the cache
};

// Runs the teacher over every window of `shard` at offset 0 (evaluation_window_count windows of
// seq_len inputs) in batches of `batch_size` windows on `device`, and writes the cache into
// `out_dir`, replacing a previous cache there. The directory is built beside `out_dir` and renamed
// into place, so an interrupted run leaves the previous cache or none. `shard_path_for_record` is
// what the sidecar records as the source. Refuses (InputError) k outside [1, V], a shard made with
// another tokenizer, a seq_len beyond the teacher's max_seq_len, a shard shorter than one window,
// and an `out_dir` that holds something other than a teacher cache. Shows progress.
TeacherCacheInfo write_teacher_cache(const Teacher& teacher, const data::TokenShard& shard,
                                     const std::string& shard_path_for_record, int64_t seq_len,
                                     int64_t k, int64_t batch_size, torch::Device device,
                                     const fs::path& out_dir);

// A read-only, memory-mapped teacher cache. Opening checks the header (magic, version, sizes,
// dtypes), the file size and the sidecar; a damaged, truncated, foreign or newer cache is a
// FileError naming the file, what is wrong, and the fix.
class TeacherCache {
 public:
  explicit TeacherCache(const fs::path& dir);

  const TeacherCacheInfo& info() const { return info_; }

  // The cached distributions of whole windows: window_starts are shard positions (multiples of
  // seq_len, within the coverage), `seq_len` must be the cache's. Returns rows =
  // window_starts.size() * seq_len in [window][position] order: ids [rows, k] int64, logprobs
  // [rows, k] float32, tail [rows] float32, on the CPU. Anything else is an InputError.
  TopKDistribution lookup(const std::vector<int64_t>& window_starts, int64_t seq_len) const;

  // Refuses (InputError) a cache made by other teacher weights, with another tokenizer, for
  // another seq_len or from a source shard of another size, naming the field and the fix.
  void require_match(const std::string& teacher_weights_sha256, const std::string& tokenizer_hash,
                     int64_t seq_len, int64_t source_tokens) const;

 private:
  const uint8_t* record(int64_t position) const;

  TeacherCacheInfo info_;
  core::MappedFile file_;
};

}  // namespace edgedistill::distill
