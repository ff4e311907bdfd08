// The fused kernels built for AVX2 + FMA (this file's compile flags; see CMakeLists.txt).
#include <math.h>

#include "core/fast_exp.h"
#include "model/fused_kernels.h"

namespace edgedistill::model {
namespace kernels_avx2 {
namespace {
constexpr const char* kIsaName = "avx2";
#include "model/fused_kernels_body.inc"
}  // namespace
const FusedKernels& table() {
  return kKernels;
}
}  // namespace kernels_avx2
}  // namespace edgedistill::model
