#include "quantize/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "io/gguf_kquants.h"
#include "io/gguf_quants.h"

namespace edgedistill::quant {
namespace {

using io::kQuantBlock;

void check_block_type(io::GgmlType type, const std::string& name) {
  const auto& traits = io::ggml_type_traits(type);
  if (!traits.quantized) {
    throw InputError(str(name, ": ", traits.name,
                         " is not a block-quantized type; GPTQ rounds to q8_0, q4_0, q4_1, q5_0, "
                         "q5_1, q4_k, q5_k or q6_k"));
  }
}

// The columns in the order GPTQ rounds them: as they are, or by descending diag H (act-order);
// a stable sort, so equal diagonals keep their order and the result is deterministic.
std::vector<int64_t> column_order(const torch::Tensor& hessian, bool act_order) {
  const int64_t cols = hessian.size(0);
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) {
    const auto diag = hessian.diagonal().contiguous();
    const double* d = diag.data_ptr<double>();
    std::stable_sort(order.begin(), order.end(), [d](int64_t a, int64_t b) { return d[a] > d[b]; });
  }
  return order;
}

// The upper Cholesky factor of (H + damp * mean(diag H) I)^-1, raising damp tenfold (up to four
// times) while the damped H is not numerically positive definite.
torch::Tensor inverse_cholesky(const torch::Tensor& hessian, double& damp,
                               const std::string& name) {
  const double mean_diag = hessian.diagonal().mean().item<double>();
  const auto eye = torch::eye(hessian.size(0), hessian.options());
  for (int attempt = 0; attempt < 5; ++attempt, damp *= 10.0) {
    const auto damped = hessian + eye * (damp * mean_diag);
    const auto [lower, info] = torch::linalg_cholesky_ex(damped);
    if (info.item<int64_t>() == 0) {
      const auto [upper, info_inverse] =
          torch::linalg_cholesky_ex(torch::cholesky_inverse(lower), /*upper=*/true);
      if (info_inverse.item<int64_t>() == 0 && torch::isfinite(upper).all().item<bool>()) {
        return upper;
      }
    }
    core::warn("gptq: ", name, ": the calibration Hessian with damping ", damp,
               " is not positive definite; raising the damping to ", damp * 10.0);
  }
  throw InputError(str(name, ": the calibration Hessian is singular even with damping ",
                       damp / 10.0,
                       " of its mean diagonal; calibrate on more tokens (--calib-tokens) or use "
                       "--method rtn"));
}

// The grids GPTQ rounds on, one per group of a row: 32-value blocks (q8_0, q4_0, q4_1, q5_0,
// q5_1) with the reference quantizer's grid, or 256-value super-blocks (q4_k, q5_k, q6_k) with the
// scales and minimums our K-quant search chooses, weighted by the Hessian's diagonal (each
// column's input energy, as an importance matrix weighs it). A group's grid is chosen from its
// weights as they are when it is chosen; its codes are then rounded one column at a time.
class GroupGrids {
 public:
  GroupGrids(io::GgmlType type, int64_t rows, int64_t cols, const torch::Tensor& diag_h)
      : type_(type),
        k_quant_(io::ggml_type_traits(type).block_elems == io::kSuperBlock),
        size_(k_quant_ ? io::kSuperBlock : kQuantBlock),
        rows_(rows),
        groups_(cols / size_) {
    if (k_quant_) {
      k_grids_.resize(static_cast<size_t>(rows * groups_));
      const auto d = diag_h.to(torch::kFloat32).contiguous();
      importance_.assign(d.data_ptr<float>(), d.data_ptr<float>() + cols);
    } else {
      grids_.resize(static_cast<size_t>(rows * groups_));
    }
  }
  int64_t size() const { return size_; }

  // Group g of row r from its `size()` current values. False when a value is not finite.
  bool choose(int64_t r, int64_t g, const double* values) {
    float block[io::kSuperBlock];
    for (int64_t j = 0; j < size_; ++j) {
      block[j] = static_cast<float>(values[j]);
      if (!std::isfinite(block[j])) return false;
    }
    const auto at = static_cast<size_t>(r * groups_ + g);
    if (k_quant_) {
      k_grids_[at] = io::k_grid(type_, block, importance_.data() + g * size_);
    } else {
      grids_[at] = io::block_grid(type_, block);
    }
    return true;
  }

  // The code of `column` in row r for the value x, and what it decodes to.
  int code(int64_t r, int64_t column, float x) const {
    const auto at = static_cast<size_t>(r * groups_ + column / size_);
    return k_quant_ ? io::k_grid_code(k_grids_[at], static_cast<int>(column % size_), x)
                    : io::grid_code(type_, grids_[at], x);
  }
  float value(int64_t r, int64_t column, int code) const {
    const auto at = static_cast<size_t>(r * groups_ + column / size_);
    return k_quant_ ? io::k_grid_value(k_grids_[at], static_cast<int>(column % size_), code)
                    : io::grid_value(type_, grids_[at], code);
  }

  // All rows' codes [rows, cols] -> the type's bytes.
  std::vector<uint8_t> pack(const std::vector<int>& codes) const {
    const auto& traits = io::ggml_type_traits(type_);
    const int64_t cols = groups_ * size_;
    const uint64_t row_bytes = io::ggml_row_bytes(type_, static_cast<uint64_t>(cols));
    std::vector<uint8_t> bytes(static_cast<size_t>(rows_ * row_bytes));
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t g = 0; g < groups_; ++g) {
        const auto at = static_cast<size_t>(r * groups_ + g);
        const int* group_codes = codes.data() + r * cols + g * size_;
        uint8_t* out = bytes.data() + r * row_bytes + g * traits.block_bytes;
        if (k_quant_) {
          io::k_grid_pack(k_grids_[at], group_codes, out);
        } else {
          io::pack_block(type_, grids_[at], group_codes, out);
        }
      }
    }
    return bytes;
  }

 private:
  io::GgmlType type_;
  bool k_quant_;
  int64_t size_, rows_, groups_;
  std::vector<io::BlockGrid> grids_;
  std::vector<io::KGrid> k_grids_;
  std::vector<float> importance_;
};

}  // namespace

void check_finite_activations(const torch::Tensor& inputs, const std::string& name) {
  if (!torch::isfinite(inputs).all().item<bool>()) {
    throw InputError(str("the calibration activations entering ", name,
                         " are not finite (NaN or infinity): the float model overflows on the "
                         "calibration data; check it with `edgedistill verify` or retrain it"));
  }
}

void accumulate_hessian(torch::Tensor& hessian, const torch::Tensor& inputs,
                        const std::string& name) {
  check_finite_activations(inputs, name);
  // Products in float32 (BLAS sgemm, ~10x dgemm's speed here) over chunks of 4096 rows, summed in
  // float64: each float32 partial sum is over at most 4096 terms.
  const auto x = inputs.reshape({-1, inputs.size(-1)}).to(torch::kFloat32);
  torch::Tensor xtx;
  for (int64_t begin = 0; begin < x.size(0); begin += 4096) {
    const auto part = x.narrow(0, begin, std::min<int64_t>(4096, x.size(0) - begin));
    const auto product = torch::matmul(part.t(), part).to(torch::kFloat64);
    xtx = xtx.defined() ? xtx.add_(product) : product;
  }
  if (hessian.defined()) {
    hessian.add_(xtx);
  } else {
    hessian = xtx;
  }
}

GptqResult gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian,
                         io::GgmlType type, const GptqOptions& options, const std::string& name) {
  check_block_type(type, name);
  ED_CHECK(weight.dim() == 2, name, ": GPTQ takes a matrix");
  const int64_t rows = weight.size(0), cols = weight.size(1);
  const int block = io::ggml_type_traits(type).block_elems;
  ED_CHECK(cols % block == 0, name, ": ", cols, " columns are not whole blocks of ", block);
  ED_CHECK(options.block_size > 0 && options.block_size % kQuantBlock == 0,
           "GPTQ block size must be a positive multiple of 32, got ", options.block_size);
  ED_CHECK(hessian.dim() == 2 && hessian.size(0) == cols && hessian.size(1) == cols, name,
           ": the Hessian must be [", cols, ", ", cols, "]");
  if (!torch::isfinite(weight).all().item<bool>()) {
    throw InputError(str(name,
                         ": the weights are not finite (NaN or infinity); the checkpoint is "
                         "damaged or its training diverged"));
  }
  if (!torch::isfinite(hessian).all().item<bool>()) {
    throw InputError(str(name,
                         ": the calibration Hessian is not finite; the float model overflows "
                         "on the calibration data"));
  }

  GptqResult result;
  auto w_all = weight.to(torch::kFloat64).contiguous().clone();
  auto h = hessian.to(torch::kFloat64).contiguous().clone();
  // Dead inputs (never active in calibration): any weight there is free, so take 0, and give the
  // Hessian a unit diagonal there so it can be factored.
  const auto dead = h.diagonal() == 0;
  result.dead_inputs = dead.sum().item<int64_t>();
  if (result.dead_inputs > 0) {
    h.diagonal().masked_fill_(dead, 1.0);
    w_all.index_put_({torch::indexing::Slice(), dead}, 0.0);
  }

  const std::vector<int64_t> order = column_order(h, options.act_order);
  GroupGrids grids(type, rows, cols, h.diagonal());
  const int64_t group = grids.size();
  auto choose = [&](const double* values, int64_t r, int64_t g) {
    if (!grids.choose(r, g, values)) {
      throw InputError(str(name, ": GPTQ's error feedback produced non-finite weights (row ", r,
                           ", group ", g, "); raise the damping (--damp) or use --method rtn"));
    }
  };
  if (options.act_order) {
    // Static groups: every group's grid from the original weights, before any column moves.
    const double* w0 = w_all.data_ptr<double>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < cols / group; ++g) choose(w0 + r * cols + g * group, r, g);
    }
  }
  // A group's grid is chosen from its weights when its first column comes up, so the whole group
  // must have received every earlier batch's update by then: batches are whole groups.
  const int64_t batch = (options.block_size + group - 1) / group * group;

  const auto perm = torch::tensor(order, torch::kInt64);
  auto w = w_all.index_select(1, perm).contiguous();
  h = h.index_select(0, perm).index_select(1, perm);
  result.damp = options.damp;
  const auto u = inverse_cholesky(h, result.damp, name).contiguous();
  const double* u_data = u.data_ptr<double>();
  double* w_data = w.data_ptr<double>();

  std::vector<int> codes(static_cast<size_t>(rows * cols));
  auto rounded = torch::empty({rows, cols}, torch::kFloat32);
  float* q_data = rounded.data_ptr<float>();
  for (int64_t i1 = 0; i1 < cols; i1 += batch) {
    const int64_t i2 = std::min<int64_t>(i1 + batch, cols), count = i2 - i1;
    auto errors = torch::zeros({rows, count}, torch::kFloat64);
    double* e_data = errors.data_ptr<double>();
    for (int64_t j = i1; j < i2; ++j) {
      const int64_t column = order[static_cast<size_t>(j)];
      if (!options.act_order && column % group == 0) {
        // The group starts: its grid from the weights as updated so far (j == column here, and
        // the group lies inside this batch).
        for (int64_t r = 0; r < rows; ++r) choose(w_data + r * cols + j, r, column / group);
      }
      const double* u_row = u_data + j * cols;
      const double pivot = u_row[j];
      for (int64_t r = 0; r < rows; ++r) {
        double* w_row = w_data + r * cols;
        const int code = grids.code(r, column, static_cast<float>(w_row[j]));
        const float value = grids.value(r, column, code);
        codes[static_cast<size_t>(r * cols + column)] = code;
        q_data[r * cols + column] = value;
        const double error = (w_row[j] - static_cast<double>(value)) / pivot;
        e_data[r * count + (j - i1)] = error;
        for (int64_t k = j + 1; k < i2; ++k) w_row[k] -= error * u_row[k];
      }
    }
    if (i2 < cols) {
      // The batch's errors reach the later columns in one product (the "lazy batch" update).
      w.narrow(1, i2, cols - i2)
          .sub_(torch::matmul(errors, u.narrow(0, i1, count).narrow(1, i2, cols - i2)));
    }
  }
  result.bytes = grids.pack(codes);
  result.dequantized = rounded;
  return result;
}

RoundingError rounding_error(const torch::Tensor& weight, const torch::Tensor& rounded,
                             const torch::Tensor& hessian) {
  const auto w = weight.to(torch::kFloat64);
  const auto delta = w - rounded.to(torch::kFloat64);
  RoundingError error;
  error.weight = (delta.norm() / w.norm()).item<double>();
  error.output = NAN;
  if (hessian.defined()) {
    const auto h = hessian.to(torch::kFloat64);
    const double change = (torch::matmul(delta, h) * delta).sum().item<double>();
    const double signal = (torch::matmul(w, h) * w).sum().item<double>();
    error.output = std::sqrt(std::max(0.0, change) / signal);
  }
  return error;
}

std::vector<uint8_t> rtn_bytes(const torch::Tensor& weight, io::GgmlType type,
                               const std::vector<float>* importance) {
  const auto w = weight.to(torch::kFloat32).contiguous();
  ED_CHECK(importance == nullptr || static_cast<int64_t>(importance->size()) == w.size(1),
           "rtn_bytes: ", importance->size(), " importances for ", w.size(1), " columns");
  return io::quantize_rows(type, w.data_ptr<float>(), w.size(0), w.size(1),
                           importance != nullptr ? importance->data() : nullptr);
}

torch::Tensor dequantize_bytes(const std::vector<uint8_t>& bytes, io::GgmlType type, int64_t rows,
                               int64_t cols) {
  auto out = torch::empty({rows, cols}, torch::kFloat32);
  io::dequantize_rows(type, bytes.data(), rows, cols, out.data_ptr<float>());
  return out;
}

}  // namespace edgedistill::quant
