// Image sets in the IDX format (LeCun et al., the MNIST and Fashion-MNIST distribution format),
// gzip-compressed, read through zlib.
//
//   images: magic 0x00000803 (uint8 data, 3 dimensions), count, rows, cols (big-endian uint32),
//           then count * rows * cols pixels, row-major, 0 = background
//   labels: magic 0x00000801 (uint8 data, 1 dimension), count, then count labels
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace edgedistill::data {

namespace fs = std::filesystem;

struct DataConfig;

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;

struct ImageSet {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // [count, rows, cols]
  std::vector<uint8_t> labels;  // [count]
  int64_t classes = 0;          // 1 + the largest label

  // Pixels of image i: rows * cols bytes.
  const uint8_t* image(int64_t i) const { return pixels.data() + i * rows * cols; }
};

// The decompressed bytes of a gzip file (a plain file is read as is). Errors name the file.
std::string read_gzip_file(const fs::path& path);

// Reads an images file and its labels file; checks magics, dimensions, that the data lengths match
// the header (a truncated file names expected and found sizes), and that the counts agree.
ImageSet read_idx_dataset(const fs::path& images_gz, const fs::path& labels_gz);

// The images of `indices` (in that order).
ImageSet select_images(const ImageSet& set, const std::vector<int64_t>& indices);

struct ImageSplits {
  ImageSet train, valid, test;
};

// Standard file names inside images.dir.
inline constexpr const char* kIdxTrainImages = "train-images-idx3-ubyte.gz";
inline constexpr const char* kIdxTrainLabels = "train-labels-idx1-ubyte.gz";
inline constexpr const char* kIdxTestImages = "t10k-images-idx3-ubyte.gz";
inline constexpr const char* kIdxTestLabels = "t10k-labels-idx1-ubyte.gz";

// train and test from images.dir; valid = images.valid_count images of the training file chosen by
// a seeded shuffle (images.seed) and removed from train. train and valid keep file order.
ImageSplits load_image_splits(const DataConfig& config);

}  // namespace edgedistill::data
