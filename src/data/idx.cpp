#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "data/data_config.h"

namespace edgedistill::data {
namespace {

uint32_t load_big_endian_u32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data()) + offset;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Checks the magic and returns the dimensions of an IDX file's header.
std::vector<int64_t> read_idx_header(const std::string& bytes, uint32_t magic,
                                     const fs::path& path) {
  const size_t dims = magic & 0xFF;
  const size_t header_bytes = 4 + 4 * dims;
  if (bytes.size() < 4 || load_big_endian_u32(bytes, 0) != magic) {
    const std::string found = bytes.size() < 4 ? str(bytes.size(), " bytes")
                                               : str("0x", std::hex, load_big_endian_u32(bytes, 0));
    throw FileError(str("'", path.string(), "' is not an IDX ",
                        magic == kIdxImagesMagic ? "images" : "labels", " file: expected magic 0x",
                        std::hex, magic, std::dec, ", found ", found,
                        "; check images.dir or reinstall dataset-fashion-mnist"));
  }
  if (bytes.size() < header_bytes) {
    throw FileError(str("IDX file '", path.string(), "' is truncated: its header needs ",
                        header_bytes, " bytes, found ", bytes.size(),
                        "; reinstall dataset-fashion-mnist"));
  }
  std::vector<int64_t> shape;
  for (size_t d = 0; d < dims; ++d) shape.push_back(load_big_endian_u32(bytes, 4 + 4 * d));
  return shape;
}

// Checks that the data after the header holds exactly `count` items of `item_bytes` each. Compares
// by division, so a damaged header cannot overflow the product.
void check_payload_size(const std::string& bytes, size_t header_bytes, uint64_t count,
                        uint64_t item_bytes, const fs::path& path) {
  const uint64_t found = bytes.size() - header_bytes;
  if (found / item_bytes == count && found % item_bytes == 0) return;
  const long double expected = static_cast<long double>(count) * item_bytes;
  throw FileError(str("IDX file '", path.string(), "' ",
                      found / item_bytes < count ? "is truncated" : "has extra bytes",
                      ": its header promises ", count, " items of ", item_bytes, " bytes (",
                      static_cast<unsigned long long>(expected), " data bytes), found ", found,
                      "; reinstall dataset-fashion-mnist"));
}

}  // namespace

std::string read_gzip_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw FileError(str("IDX file '", path.string(), "' does not exist; check images.dir"));
  }
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    throw FileError(str("cannot open '", path.string(), "': ", std::strerror(errno)));
  }
  std::string bytes;
  char buffer[1 << 16];
  while (true) {
    const int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) break;
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
  }
  int error_code = Z_OK;
  const char* message = gzerror(file, &error_code);
  const std::string error_text = message != nullptr ? message : "";
  const int close_code = gzclose(file);
  if (error_code != Z_OK || close_code != Z_OK) {
    throw FileError(str("'", path.string(), "' is truncated or corrupt (gzip: ",
                        error_text.empty() ? str("error ", close_code) : error_text, " after ",
                        bytes.size(), " decompressed bytes); reinstall dataset-fashion-mnist"));
  }
  return bytes;
}

ImageSet read_idx_dataset(const fs::path& images_gz, const fs::path& labels_gz) {
  const std::string image_bytes = read_gzip_file(images_gz);
  const std::vector<int64_t> image_shape = read_idx_header(image_bytes, kIdxImagesMagic, images_gz);
  const std::string label_bytes = read_gzip_file(labels_gz);
  const std::vector<int64_t> label_shape = read_idx_header(label_bytes, kIdxLabelsMagic, labels_gz);

  ImageSet set;
  set.count = image_shape[0];
  set.rows = image_shape[1];
  set.cols = image_shape[2];
  if (set.rows == 0 || set.cols == 0) {
    throw FileError(str("IDX file '", images_gz.string(), "' has empty images (", set.rows, "x",
                        set.cols, "); reinstall dataset-fashion-mnist"));
  }
  check_payload_size(image_bytes, 16, static_cast<uint64_t>(set.count),
                     static_cast<uint64_t>(set.rows) * static_cast<uint64_t>(set.cols), images_gz);
  check_payload_size(label_bytes, 8, static_cast<uint64_t>(label_shape[0]), 1, labels_gz);
  if (label_shape[0] != set.count) {
    throw FileError(str("'", labels_gz.string(), "' has ", label_shape[0], " labels but '",
                        images_gz.string(), "' has ", set.count,
                        " images; the files do not belong together"));
  }
  set.pixels.assign(image_bytes.begin() + 16, image_bytes.end());
  set.labels.assign(label_bytes.begin() + 8, label_bytes.end());
  const uint8_t largest =
      set.labels.empty() ? 0 : *std::max_element(set.labels.begin(), set.labels.end());
  set.classes = set.labels.empty() ? 0 : int64_t{largest} + 1;
  return set;
}

ImageSet select_images(const ImageSet& set, const std::vector<int64_t>& indices) {
  ImageSet out;
  out.count = static_cast<int64_t>(indices.size());
  out.rows = set.rows;
  out.cols = set.cols;
  out.classes = set.classes;
  const size_t image_bytes = static_cast<size_t>(set.rows * set.cols);
  out.pixels.resize(indices.size() * image_bytes);
  out.labels.resize(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    ED_CHECK(i >= 0 && i < set.count, "image ", i, " of ", set.count);
    std::memcpy(out.pixels.data() + k * image_bytes, set.image(i), image_bytes);
    out.labels[k] = set.labels[static_cast<size_t>(i)];
  }
  return out;
}

ImageSplits load_image_splits(const DataConfig& config) {
  ED_CHECK(config.kind == "images", "kind=", config.kind);
  const fs::path& dir = config.images.dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw InputError(str("image directory '", dir.string(),
                         "' does not exist; Fashion-MNIST comes with the Debian package "
                         "dataset-fashion-mnist (run scripts/setup.sh), or set images.dir"));
  }
  const ImageSet train_file = read_idx_dataset(dir / kIdxTrainImages, dir / kIdxTrainLabels);
  ImageSet test = read_idx_dataset(dir / kIdxTestImages, dir / kIdxTestLabels);
  if (test.rows != train_file.rows || test.cols != train_file.cols) {
    throw FileError(str("the test images in '", dir.string(), "' are ", test.rows, "x", test.cols,
                        " but the training images are ", train_file.rows, "x", train_file.cols));
  }
  if (test.classes > train_file.classes) {
    throw FileError(str("the test labels in '", dir.string(), "' go up to ", test.classes - 1,
                        " but the training labels only to ", train_file.classes - 1));
  }
  const int64_t valid_count = config.images.valid_count;
  if (valid_count >= train_file.count) {
    throw InputError(str("images.valid_count is ", valid_count, " but the training file has only ",
                         train_file.count, " images; choose fewer"));
  }
  std::vector<int64_t> order(static_cast<size_t>(train_file.count));
  for (int64_t i = 0; i < train_file.count; ++i) order[static_cast<size_t>(i)] = i;
  core::Rng rng(static_cast<uint64_t>(config.images.seed));
  rng.shuffle(order);
  std::vector<int64_t> valid_indices(order.begin(), order.begin() + valid_count);
  std::vector<int64_t> train_indices(order.begin() + valid_count, order.end());
  std::sort(valid_indices.begin(), valid_indices.end());
  std::sort(train_indices.begin(), train_indices.end());

  ImageSplits splits;
  splits.train = select_images(train_file, train_indices);
  splits.valid = select_images(train_file, valid_indices);
  test.classes = train_file.classes;
  splits.test = std::move(test);
  return splits;
}

}  // namespace edgedistill::data
