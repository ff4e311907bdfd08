#include "core/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace edgedistill::core {
namespace {

std::string describe_errno(int error_number) {
  if (error_number == ENOSPC || error_number == EDQUOT) {
    return "the disk is full; free some space and run the command again";
  }
  if (error_number == EACCES || error_number == EPERM || error_number == EROFS) {
    return str(std::strerror(error_number), "; choose a writable location");
  }
  return std::strerror(error_number);
}

// Unique within the process and across processes sharing a directory.
fs::path temporary_sibling(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  return path.parent_path() /
         str(".", path.filename().string(), ".tmp.", ::getpid(), ".", counter++);
}

}  // namespace

std::string read_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw FileError(str(what, " '", path.string(), "' does not exist; check the path"));
  }
  if (fs::is_directory(path, ec)) {
    throw FileError(str(what, " '", path.string(), "' is a directory; expected a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw FileError(str("cannot open ", what, " '", path.string(), "': ", std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    throw FileError(str("cannot read ", what, " '", path.string(), "': ", std::strerror(errno)));
  }
  return buffer.str();
}

nlohmann::json read_json_file(const fs::path& path, std::string_view what) {
  const std::string text = read_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Turn the byte offset into a line and column.
    size_t line = 1, column = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string reason = e.what();
    const size_t colon = reason.rfind(": ");
    if (colon != std::string::npos) reason = reason.substr(colon + 2);
    throw FileError(str(what, " '", path.string(), "' is not valid JSON (line ", line, ", column ",
                        column, "): ", reason));
  }
}

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)) {
  if (path_.has_parent_path()) create_directories(path_.parent_path(), "output directory");
  temp_path_ = temporary_sibling(path_);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("create", errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ignored;
    fs::remove(temp_path_, ignored);
  }
}

void AtomicFile::fail(std::string_view action, int error_number) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  std::error_code ignored;
  fs::remove(temp_path_, ignored);
  throw FileError(
      str("cannot ", action, " '", path_.string(), "': ", describe_errno(error_number)));
}

void AtomicFile::write(const void* data, size_t bytes) {
  ED_CHECK(fd_ >= 0 && !committed_, "write after commit to ", path_.string());
  const char* cursor = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, cursor, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    cursor += n;
    bytes -= static_cast<size_t>(n);
    bytes_written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::commit() {
  ED_CHECK(fd_ >= 0 && !committed_, "double commit of ", path_.string());
  if (::fsync(fd_) != 0) fail("flush", errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("close", errno);
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("rename into place", errno);
  committed_ = true;
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

void write_json_atomic(const fs::path& path, const nlohmann::json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

void create_directories(const fs::path& path, std::string_view what) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !fs::is_directory(path)) {
    throw FileError(str("cannot create ", what, " '", path.string(),
                        "': ", ec ? describe_errno(ec.value()) : "a file of that name exists"));
  }
}

void replace_directory(const fs::path& staging, const fs::path& target) {
  std::error_code ec;
  if (fs::exists(target, ec)) {
    const fs::path old = temporary_sibling(target);
    fs::rename(target, old, ec);
    if (ec) {
      throw FileError(str("cannot replace '", target.string(), "': ", describe_errno(ec.value())));
    }
    fs::rename(staging, target, ec);
    if (ec) {
      fs::rename(old, target);
      throw FileError(str("cannot move '", staging.string(), "' to '", target.string(),
                          "': ", describe_errno(ec.value())));
    }
    fs::remove_all(old, ec);
    return;
  }
  fs::rename(staging, target, ec);
  if (ec) {
    throw FileError(str("cannot move '", staging.string(), "' to '", target.string(),
                        "': ", describe_errno(ec.value())));
  }
}

void write_directory_atomic(const fs::path& target,
                            const std::function<void(const fs::path& staging)>& write) {
  const fs::path parent = target.parent_path();
  if (!parent.empty()) create_directories(parent, "output directory");
  const fs::path staging = temporary_sibling(target);
  create_directories(staging, "staging directory");
  try {
    write(staging);
    replace_directory(staging, target);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
}

MappedFile::MappedFile(const fs::path& path, std::string_view what) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error_number = errno;
    if (error_number == ENOENT) {
      throw FileError(str(what, " '", path.string(), "' does not exist; check the path"));
    }
    throw FileError(
        str("cannot open ", what, " '", path.string(), "': ", std::strerror(error_number)));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw FileError(str(what, " '", path.string(), "' is not a regular file"));
  }
  size_ = static_cast<size_t>(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      const int error_number = errno;
      ::close(fd);
      throw FileError(
          str("cannot map ", what, " '", path.string(), "': ", std::strerror(error_number)));
    }
    data_ = static_cast<const uint8_t*>(mapped);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  release();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

void check_format_version(const std::string& name, uint32_t found, uint32_t supported,
                          const std::string& rebuild) {
  if (found > supported) {
    throw FileError(str(name, " has format version ", found, "; this edgedistill reads version ",
                        supported, "; upgrade edgedistill"));
  }
  if (found < supported) {
    throw FileError(str(name, " has the old format version ", found,
                        ", which this edgedistill no longer reads (it reads version ", supported,
                        "); ", rebuild));
  }
}

}  // namespace edgedistill::core
