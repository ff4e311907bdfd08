#include "distill/teacher_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/version.h"
#include "io/half.h"
#include "train/token_windows.h"

namespace edgedistill::distill {
namespace {

constexpr CacheFloatDtype kLogprobDtype = CacheFloatDtype::float16;
constexpr CacheFloatDtype kTailDtype = CacheFloatDtype::float32;

const char* float_dtype_name(CacheFloatDtype dtype) {
  return dtype == CacheFloatDtype::float16 ? "float16" : "float32";
}

// Errors quote hashes by their first 12 hex digits: enough to tell two apart on one line.
std::string short_hash(const std::string& hash) {
  return hash.substr(0, 12);
}

// "rebuild it with `edgedistill teacher-cache ...`", with what is known filled in.
std::string rebuild_hint(const TeacherCacheInfo& info, int64_t seq_len) {
  return str("rebuild it with `edgedistill teacher-cache --teacher TEACHER --data DATA --top-k ",
             info.k, " --seq-len ", seq_len, " --out ", info.dir.string(), "`");
}

// The output directory without a trailing separator, so that its name and parent are defined.
fs::path normalized_dir(const fs::path& dir) {
  fs::path out = fs::absolute(dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  return out;
}

// Refuses an output directory that holds something other than a teacher cache: replacing it
// would delete the user's files.
void check_output_dir(const fs::path& out_dir) {
  std::error_code ec;
  if (!fs::exists(out_dir, ec)) return;
  if (!fs::is_directory(out_dir, ec)) {
    throw InputError(str("teacher cache output '", out_dir.string(),
                         "' is a file; choose a new directory for --out"));
  }
  const bool empty = fs::is_empty(out_dir, ec);
  if (!empty && !fs::exists(out_dir / kTeacherCacheJsonName, ec)) {
    throw InputError(str("teacher cache output '", out_dir.string(), "' holds files but no ",
                         kTeacherCacheJsonName,
                         "; writing the cache would replace them: choose a new or empty directory "
                         "for --out"));
  }
}

// A staging directory beside the target, removed unless it was renamed into place.
class StagingDir {
 public:
  explicit StagingDir(const fs::path& target)
      : path_(target.parent_path() /
              str(".", target.filename().string(), ".staging-", ::getpid())) {
    std::error_code ignored;
    fs::remove_all(path_, ignored);  // left by a killed run that had our process id
    core::create_directories(path_, "teacher cache staging directory");
  }
  ~StagingDir() {
    if (!moved_) {
      std::error_code ignored;
      fs::remove_all(path_, ignored);
    }
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  const fs::path& path() const { return path_; }
  void move_to(const fs::path& target) {
    core::replace_directory(path_, target);
    moved_ = true;
  }

 private:
  fs::path path_;
  bool moved_ = false;
};

// Appends the records of `top` (CPU tensors) to `out`: per row ids as IdType, float16
// log-probabilities, float32 tail.
template <class IdType>
void encode_records(const TopKDistribution& top, std::vector<uint8_t>& out) {
  const int64_t rows = top.rows(), k = top.k();
  const int64_t* ids = top.ids.data_ptr<int64_t>();
  const float* logprobs = top.logprobs.data_ptr<float>();
  const float* tail = top.tail.data_ptr<float>();
  const size_t record =
      static_cast<size_t>(k) * (sizeof(IdType) + sizeof(uint16_t)) + sizeof(float);
  const size_t begin = out.size();
  out.resize(begin + static_cast<size_t>(rows) * record);
  uint8_t* cursor = out.data() + begin;
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t j = 0; j < k; ++j) {
      const auto id = static_cast<IdType>(ids[row * k + j]);
      std::memcpy(cursor, &id, sizeof id);
      cursor += sizeof id;
    }
    for (int64_t j = 0; j < k; ++j) {
      const uint16_t half = io::float_to_f16(logprobs[row * k + j]);
      std::memcpy(cursor, &half, sizeof half);
      cursor += sizeof half;
    }
    std::memcpy(cursor, &tail[row], sizeof(float));
    cursor += sizeof(float);
  }
}

// Decodes `count` consecutive records starting at `source` into ids [count, k], logprobs
// [count, k] and tail [count]. An id outside the vocabulary means the file is damaged.
template <class IdType>
void decode_records(const uint8_t* source, int64_t count, int64_t k, int64_t vocab_size,
                    int64_t* ids, float* logprobs, float* tail, const fs::path& file) {
  for (int64_t row = 0; row < count; ++row) {
    for (int64_t j = 0; j < k; ++j) {
      IdType id;
      std::memcpy(&id, source, sizeof id);
      source += sizeof id;
      if (static_cast<int64_t>(id) >= vocab_size) {
        throw FileError(str("teacher cache '", file.string(), "' holds the token id ", id,
                            ", outside its vocabulary of ", vocab_size,
                            ": the file is damaged; rebuild it with `edgedistill teacher-cache`"));
      }
      ids[row * k + j] = static_cast<int64_t>(id);
    }
    for (int64_t j = 0; j < k; ++j) {
      uint16_t half;
      std::memcpy(&half, source, sizeof half);
      source += sizeof half;
      logprobs[row * k + j] = io::f16_to_float(half);
    }
    std::memcpy(&tail[row], source, sizeof(float));
    source += sizeof(float);
  }
}

core::Sha256::Digest digest_of(const std::string& hex, const char* what) {
  core::Sha256::Digest digest{};
  if (!core::from_hex(hex, digest)) {
    throw InputError(str("the ", what, " '", hex, "' is not a SHA-256 hex digest"));
  }
  return digest;
}

// A sidecar value at a JSON pointer ("/teacher/weights_sha256"); missing or mistyped values mean
// the sidecar is damaged.
template <class T>
T sidecar_value(const nlohmann::json& sidecar, const std::string& pointer, const fs::path& file) {
  try {
    return sidecar.at(nlohmann::json::json_pointer(pointer)).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw FileError(str("teacher cache sidecar '", file.string(), "' lacks a valid '",
                        pointer.substr(1), "' entry: the file is damaged; rebuild the cache with ",
                        "`edgedistill teacher-cache`"));
  }
}

// "12,345 tok/s" for the progress line; empty before any time has passed.
std::string tokens_per_second(const core::Progress& progress, int64_t tokens) {
  const double elapsed = progress.elapsed_s();
  if (elapsed <= 0) return "";
  return str(core::format_count(static_cast<int64_t>(static_cast<double>(tokens) / elapsed)),
             " tok/s");
}

}  // namespace

int64_t teacher_cache_record_bytes(int64_t k, int64_t vocab_size) {
  const auto id_bytes = static_cast<int64_t>(
      data::token_dtype_bytes(data::token_dtype_for(static_cast<int32_t>(vocab_size))));
  return k * (id_bytes + static_cast<int64_t>(sizeof(uint16_t))) +
         static_cast<int64_t>(sizeof(float));
}

TeacherCacheInfo write_teacher_cache(const Teacher& teacher, const data::TokenShard& shard,
                                     const std::string& shard_path_for_record, int64_t seq_len,
                                     int64_t k, int64_t batch_size, torch::Device device,
                                     const fs::path& out_dir) {
  if (!teacher.is_llama()) {
    throw InputError(str("teacher '", teacher.dir.string(), "' is a ", teacher.meta.config.arch,
                         " model; a teacher cache needs a llama language model"));
  }
  const auto& config = teacher.meta.config.llama;
  const int64_t vocab = config.vocab_size;
  if (k < 1 || k > vocab) {
    throw InputError(str("top-k ", k, " is outside [1, ", vocab,
                         "] (the teacher's vocabulary size); choose k in that range, e.g. 32"));
  }
  if (seq_len < 1 || seq_len > config.max_seq_len) {
    throw InputError(str("seq_len ", seq_len, " is outside [1, ", config.max_seq_len,
                         "] (the teacher's max_seq_len); choose a seq_len in that range"));
  }
  if (batch_size < 1) {
    throw InputError(
        str("batch size ", batch_size, " is not positive; use 1 or more windows per batch"));
  }
  if (shard.tokenizer_hash() != teacher.meta.tokenizer_hash) {
    throw InputError(str("token shard '", shard.path().string(), "' was made with tokenizer ",
                         short_hash(shard.tokenizer_hash()), " but teacher '", teacher.dir.string(),
                         "' was trained with tokenizer ", short_hash(teacher.meta.tokenizer_hash),
                         "; use the data the teacher was trained on (its model.json names it)"));
  }
  if (shard.vocab_size() > vocab) {
    throw InputError(str("token shard '", shard.path().string(), "' has a vocabulary of ",
                         shard.vocab_size(), " pieces, more than the teacher's ", vocab,
                         "; use the data the teacher was trained on"));
  }
  const int64_t windows = train::evaluation_window_count(shard, seq_len, 0);
  if (windows < 1) {
    throw InputError(str("token shard '", shard.path().string(), "' has ", shard.size(),
                         " tokens, fewer than one window of seq_len + 1 = ", seq_len + 1,
                         "; use a larger shard or a smaller --seq-len"));
  }
  const fs::path target = normalized_dir(out_dir);
  check_output_dir(target);

  TeacherCacheInfo info;
  info.dir = target;
  info.k = k;
  info.vocab_size = vocab;
  info.seq_len = seq_len;
  info.windows = windows;
  info.positions = windows * seq_len;
  const data::TokenDtype id_dtype = data::token_dtype_for(static_cast<int32_t>(vocab));
  info.id_dtype = data::token_dtype_name(id_dtype);
  info.logprob_dtype = float_dtype_name(kLogprobDtype);
  info.tail_dtype = float_dtype_name(kTailDtype);
  info.record_bytes = teacher_cache_record_bytes(k, vocab);
  info.file_bytes = sizeof(TeacherCacheHeader) + static_cast<uint64_t>(info.positions) *
                                                     static_cast<uint64_t>(info.record_bytes);
  info.bytes_per_token = static_cast<double>(info.file_bytes) / static_cast<double>(info.positions);
  info.teacher_weights_sha256 = teacher.weights_sha256;
  info.teacher_dir = fs::absolute(teacher.dir);
  info.tokenizer_hash = teacher.meta.tokenizer_hash;
  info.source_shard = shard_path_for_record;
  info.source_tokens = shard.size();
  info.source_tokenizer_hash = shard.tokenizer_hash();
  info.edgedistill_version = kVersion;

  TeacherCacheHeader header{};
  std::memcpy(header.magic, kTeacherCacheMagic, sizeof(header.magic));
  header.version = kTeacherCacheVersion;
  header.header_bytes = sizeof(TeacherCacheHeader);
  header.k = static_cast<uint32_t>(k);
  header.vocab_size = static_cast<uint32_t>(vocab);
  header.seq_len = static_cast<uint32_t>(seq_len);
  header.id_dtype = static_cast<uint32_t>(id_dtype);
  header.logprob_dtype = static_cast<uint32_t>(kLogprobDtype);
  header.tail_dtype = static_cast<uint32_t>(kTailDtype);
  header.positions = static_cast<uint64_t>(info.positions);
  header.source_tokens = static_cast<uint64_t>(info.source_tokens);
  const auto weights_digest = digest_of(info.teacher_weights_sha256, "teacher weights hash");
  const auto tokenizer_digest = digest_of(info.tokenizer_hash, "tokenizer hash");
  std::memcpy(header.weights_sha256, weights_digest.data(), weights_digest.size());
  std::memcpy(header.tokenizer_sha256, tokenizer_digest.data(), tokenizer_digest.size());

  StagingDir staging(target);
  core::AtomicFile bin(staging.path() / kTeacherCacheBinName);
  bin.write(&header, sizeof(header));

  torch::NoGradGuard no_grad;
  auto& model = teacher.llama();
  core::Progress progress("teacher cache", windows, "windows");
  std::vector<uint8_t> records;
  for (int64_t first = 0; first < windows; first += batch_size) {
    const int64_t rows = std::min(batch_size, windows - first);
    // [rows, seq_len]: the inputs; the window's last token is only ever a target.
    const auto inputs =
        train::evaluation_windows(shard, seq_len, first, rows).narrow(1, 0, seq_len).to(device);
    const auto logits = model.forward(inputs).logits.reshape({rows * seq_len, vocab});
    auto top = top_k_distribution(logits, k);
    top.ids = top.ids.to(torch::kCPU).contiguous();
    top.logprobs = top.logprobs.to(torch::kCPU, torch::kFloat32).contiguous();
    top.tail = top.tail.to(torch::kCPU, torch::kFloat32).contiguous();
    records.clear();
    if (id_dtype == data::TokenDtype::uint16) {
      encode_records<uint16_t>(top, records);
    } else {
      encode_records<uint32_t>(top, records);
    }
    bin.write(records.data(), records.size());
    progress.update(first + rows, tokens_per_second(progress, (first + rows) * seq_len));
  }
  progress.finish(windows, tokens_per_second(progress, info.positions));
  ED_CHECK(bin.bytes_written() == info.file_bytes, "wrote ", bin.bytes_written(),
           " bytes, expected ", info.file_bytes);
  bin.commit();

  nlohmann::ordered_json sidecar;
  sidecar["format"] = kTeacherCacheFormat;
  sidecar["version"] = kTeacherCacheVersion;
  sidecar["k"] = info.k;
  sidecar["vocab_size"] = info.vocab_size;
  sidecar["seq_len"] = info.seq_len;
  sidecar["coverage"] =
      "windows at offset 0: window w holds positions [w * seq_len, (w + 1) * "
      "seq_len), each predicting the token after it from that window alone";
  sidecar["windows"] = info.windows;
  sidecar["positions"] = info.positions;
  sidecar["id_dtype"] = info.id_dtype;
  sidecar["logprob_dtype"] = info.logprob_dtype;
  sidecar["tail_dtype"] = info.tail_dtype;
  sidecar["header_bytes"] = sizeof(TeacherCacheHeader);
  sidecar["record_bytes"] = info.record_bytes;
  sidecar["file_bytes"] = info.file_bytes;
  sidecar["bytes_per_token"] = info.bytes_per_token;
  sidecar["teacher"] = {{"dir", info.teacher_dir.string()},
                        {"weights_sha256", info.teacher_weights_sha256}};
  sidecar["tokenizer_hash"] = info.tokenizer_hash;
  sidecar["source"] = {{"shard", info.source_shard},
                       {"tokens", info.source_tokens},
                       {"tokenizer_hash", info.source_tokenizer_hash}};
  sidecar["edgedistill_version"] = info.edgedistill_version;
  // Dumped here, not through write_json_atomic, to keep the keys in this order.
  core::write_file_atomic(staging.path() / kTeacherCacheJsonName, sidecar.dump(2) + "\n");

  staging.move_to(target);
  return info;
}

TeacherCache::TeacherCache(const fs::path& dir) {
  const fs::path bin_path = dir / kTeacherCacheBinName;
  const fs::path json_path = dir / kTeacherCacheJsonName;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw FileError(str("teacher cache '", dir.string(),
                        "' is not a directory; give the --out directory of `edgedistill "
                        "teacher-cache`"));
  }
  file_ = core::MappedFile(bin_path, "teacher cache");
  const std::string name = str("teacher cache '", bin_path.string(), "'");
  const std::string rebuild = "rebuild it with `edgedistill teacher-cache`";
  const size_t file_bytes = file_.size();
  if (file_bytes < sizeof(kTeacherCacheMagic) ||
      std::memcmp(file_.data(), kTeacherCacheMagic, sizeof(kTeacherCacheMagic)) != 0) {
    throw FileError(str("'", bin_path.string(),
                        "' is not an edgedistill teacher cache (it does not start with "
                        "\"EDTOPK\"); teacher caches are made by `edgedistill teacher-cache`"));
  }
  if (file_bytes < sizeof(TeacherCacheHeader)) {
    throw FileError(str(name, " is truncated: its header needs ", sizeof(TeacherCacheHeader),
                        " bytes, the file has ", file_bytes, "; ", rebuild));
  }
  TeacherCacheHeader header;
  std::memcpy(&header, file_.data(), sizeof(header));
  core::check_format_version(name, header.version, kTeacherCacheVersion, rebuild);
  const auto damaged = [&](const std::string& what) {
    return FileError(str(name, " ", what, ": the file is damaged; ", rebuild));
  };
  if (header.header_bytes != sizeof(TeacherCacheHeader)) {
    throw damaged(str("records a header of ", header.header_bytes, " bytes (expected ",
                      sizeof(TeacherCacheHeader), ")"));
  }
  if (header.vocab_size == 0 || header.vocab_size > 0x7FFFFFFFu || header.k == 0 ||
      header.k > header.vocab_size || header.seq_len == 0) {
    throw damaged(str("records the impossible sizes k=", header.k,
                      ", vocab_size=", header.vocab_size, ", seq_len=", header.seq_len));
  }
  const auto id_dtype = data::token_dtype_for(static_cast<int32_t>(header.vocab_size));
  if (header.id_dtype != static_cast<uint32_t>(id_dtype) ||
      header.logprob_dtype != static_cast<uint32_t>(kLogprobDtype) ||
      header.tail_dtype != static_cast<uint32_t>(kTailDtype)) {
    throw damaged(str("has the dtype codes ids=", header.id_dtype,
                      ", logprobs=", header.logprob_dtype, ", tail=", header.tail_dtype,
                      " (expected ", static_cast<uint32_t>(id_dtype), ", ",
                      static_cast<uint32_t>(kLogprobDtype), ", ", static_cast<uint32_t>(kTailDtype),
                      " for a vocabulary of ", header.vocab_size, ")"));
  }
  if (header.positions == 0 || header.positions % header.seq_len != 0) {
    throw damaged(str("records ", header.positions, " positions, not a positive multiple of ",
                      "seq_len ", header.seq_len));
  }
  // Compare counts rather than multiply, so a damaged count cannot overflow.
  const auto record_bytes =
      static_cast<uint64_t>(teacher_cache_record_bytes(header.k, header.vocab_size));
  const uint64_t payload = file_bytes - sizeof(TeacherCacheHeader);
  const uint64_t records_present = payload / record_bytes;
  if (header.positions != records_present || payload % record_bytes != 0) {
    const char* problem = header.positions > records_present ? "is truncated" : "has extra bytes";
    const long double expected = static_cast<long double>(sizeof(TeacherCacheHeader)) +
                                 static_cast<long double>(header.positions) * record_bytes;
    throw FileError(str(name, " ", problem, ": its header promises ", header.positions,
                        " records of ", record_bytes, " bytes (", static_cast<uint64_t>(expected),
                        " bytes in all), the file has ", file_bytes, " bytes; ", rebuild));
  }

  info_.dir = dir;
  info_.version = header.version;
  info_.k = header.k;
  info_.vocab_size = header.vocab_size;
  info_.seq_len = header.seq_len;
  info_.positions = static_cast<int64_t>(header.positions);
  info_.windows = info_.positions / info_.seq_len;
  info_.id_dtype = data::token_dtype_name(id_dtype);
  info_.logprob_dtype = float_dtype_name(kLogprobDtype);
  info_.tail_dtype = float_dtype_name(kTailDtype);
  info_.record_bytes = static_cast<int64_t>(record_bytes);
  info_.file_bytes = file_bytes;
  info_.bytes_per_token = static_cast<double>(file_bytes) / static_cast<double>(info_.positions);
  info_.source_tokens = static_cast<int64_t>(header.source_tokens);
  core::Sha256::Digest digest;
  std::memcpy(digest.data(), header.weights_sha256, digest.size());
  info_.teacher_weights_sha256 = core::to_hex(digest);
  std::memcpy(digest.data(), header.tokenizer_sha256, digest.size());
  info_.tokenizer_hash = core::to_hex(digest);

  // The sidecar: its provenance, and the same fields as the header (two files from one run).
  const auto sidecar = core::read_json_file(json_path, "teacher cache sidecar");
  const auto format = sidecar_value<std::string>(sidecar, "/format", json_path);
  if (format != kTeacherCacheFormat) {
    throw FileError(str("'", json_path.string(), "' has format '", format, "', not '",
                        kTeacherCacheFormat, "': it is not a teacher cache sidecar; ", rebuild));
  }
  const auto agree = [&](const char* field, const auto& in_header, const auto& in_sidecar) {
    if (in_header == in_sidecar) return;
    throw FileError(str(
        "teacher cache '", dir.string(), "': ", kTeacherCacheBinName, " and ",
        kTeacherCacheJsonName, " disagree on ", field, " (", in_header, " in the binary, ",
        in_sidecar, " in the sidecar): the files come from two runs or are damaged; ", rebuild));
  };
  agree("version", int64_t{header.version}, sidecar_value<int64_t>(sidecar, "/version", json_path));
  agree("k", info_.k, sidecar_value<int64_t>(sidecar, "/k", json_path));
  agree("vocab_size", info_.vocab_size, sidecar_value<int64_t>(sidecar, "/vocab_size", json_path));
  agree("seq_len", info_.seq_len, sidecar_value<int64_t>(sidecar, "/seq_len", json_path));
  agree("positions", info_.positions, sidecar_value<int64_t>(sidecar, "/positions", json_path));
  agree("id_dtype", info_.id_dtype, sidecar_value<std::string>(sidecar, "/id_dtype", json_path));
  agree("logprob_dtype", info_.logprob_dtype,
        sidecar_value<std::string>(sidecar, "/logprob_dtype", json_path));
  agree("tail_dtype", info_.tail_dtype,
        sidecar_value<std::string>(sidecar, "/tail_dtype", json_path));
  agree("the source shard's token count", info_.source_tokens,
        sidecar_value<int64_t>(sidecar, "/source/tokens", json_path));
  agree("the teacher weights hash", info_.teacher_weights_sha256,
        sidecar_value<std::string>(sidecar, "/teacher/weights_sha256", json_path));
  agree("the tokenizer hash", info_.tokenizer_hash,
        sidecar_value<std::string>(sidecar, "/tokenizer_hash", json_path));
  info_.teacher_dir = sidecar_value<std::string>(sidecar, "/teacher/dir", json_path);
  info_.source_shard = sidecar_value<std::string>(sidecar, "/source/shard", json_path);
  info_.source_tokenizer_hash =
      sidecar_value<std::string>(sidecar, "/source/tokenizer_hash", json_path);
  info_.edgedistill_version =
      sidecar_value<std::string>(sidecar, "/edgedistill_version", json_path);
}

const uint8_t* TeacherCache::record(int64_t position) const {
  ED_CHECK(position >= 0 && position < info_.positions, "position ", position, " of ",
           info_.positions);
  return file_.data() + sizeof(TeacherCacheHeader) +
         static_cast<size_t>(position) * static_cast<size_t>(info_.record_bytes);
}

TopKDistribution TeacherCache::lookup(const std::vector<int64_t>& window_starts,
                                      int64_t seq_len) const {
  if (seq_len != info_.seq_len) {
    throw InputError(str("teacher cache '", info_.dir.string(), "' holds windows of seq_len ",
                         info_.seq_len, ", the run asks for seq_len ", seq_len,
                         "; set train.seq_len=", info_.seq_len, " or ",
                         rebuild_hint(info_, seq_len)));
  }
  const int64_t k = info_.k;
  const auto rows = static_cast<int64_t>(window_starts.size()) * seq_len;
  TopKDistribution out;
  out.ids = torch::empty({rows, k}, torch::kInt64);
  out.logprobs = torch::empty({rows, k}, torch::kFloat32);
  out.tail = torch::empty({rows}, torch::kFloat32);
  out.vocab_size = info_.vocab_size;
  int64_t* ids = out.ids.data_ptr<int64_t>();
  float* logprobs = out.logprobs.data_ptr<float>();
  float* tail = out.tail.data_ptr<float>();
  const bool narrow_ids = info_.id_dtype == "uint16";
  for (size_t w = 0; w < window_starts.size(); ++w) {
    const int64_t start = window_starts[w];
    if (start < 0 || start % seq_len != 0) {
      throw InputError(str("teacher cache '", info_.dir.string(),
                           "' covers windows at offset 0 (starts that are multiples of seq_len ",
                           seq_len, "); the window start ", start,
                           " is not one: the run must use windows at offset 0"));
    }
    if (start / seq_len >= info_.windows) {
      throw InputError(str("teacher cache '", info_.dir.string(), "' covers positions [0, ",
                           info_.positions, ") of its source shard; the window start ", start,
                           " is beyond it: the run's shard is not the cache's source ('",
                           info_.source_shard, "', ", info_.source_tokens, " tokens); ",
                           rebuild_hint(info_, info_.seq_len)));
    }
    const int64_t row = static_cast<int64_t>(w) * seq_len;
    const fs::path& file = file_.path();
    if (narrow_ids) {
      decode_records<uint16_t>(record(start), seq_len, k, info_.vocab_size, ids + row * k,
                               logprobs + row * k, tail + row, file);
    } else {
      decode_records<uint32_t>(record(start), seq_len, k, info_.vocab_size, ids + row * k,
                               logprobs + row * k, tail + row, file);
    }
  }
  return out;
}

void TeacherCache::require_match(const std::string& teacher_weights_sha256,
                                 const std::string& tokenizer_hash, int64_t seq_len,
                                 int64_t source_tokens) const {
  const std::string cache = str("teacher cache '", info_.dir.string(), "'");
  if (teacher_weights_sha256 != info_.teacher_weights_sha256) {
    throw InputError(str(cache, " was made by other teacher weights (sha256 ",
                         short_hash(info_.teacher_weights_sha256), ", from '",
                         info_.teacher_dir.string(), "') than the teacher given (sha256 ",
                         short_hash(teacher_weights_sha256), "); pass the matching --teacher or ",
                         rebuild_hint(info_, info_.seq_len)));
  }
  if (tokenizer_hash != info_.tokenizer_hash) {
    throw InputError(str(cache, " was made with tokenizer ", short_hash(info_.tokenizer_hash),
                         ", the run's data uses tokenizer ", short_hash(tokenizer_hash),
                         "; use the cache's data or ", rebuild_hint(info_, info_.seq_len)));
  }
  if (seq_len != info_.seq_len) {
    throw InputError(str(cache, " holds windows of seq_len ", info_.seq_len,
                         ", the run uses seq_len ", seq_len, "; set train.seq_len=", info_.seq_len,
                         " or ", rebuild_hint(info_, seq_len)));
  }
  if (source_tokens != info_.source_tokens) {
    throw InputError(str(cache, " was made from a source shard of ", info_.source_tokens,
                         " tokens ('", info_.source_shard, "'), the run's shard has ",
                         source_tokens, " tokens; ", rebuild_hint(info_, info_.seq_len),
                         " for the run's data"));
  }
}

}  // namespace edgedistill::distill
