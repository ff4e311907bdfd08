// The fused kernels for the baseline instruction set: the scalar twin of every other build.
#include <math.h>

#include "core/fast_exp.h"
#include "model/fused_kernels.h"

namespace edgedistill::model {
namespace kernels_scalar {
namespace {
constexpr const char* kIsaName = "scalar";
#include "model/fused_kernels_body.inc"
}  // namespace
const FusedKernels& table() {
  return kKernels;
}
}  // namespace kernels_scalar
}  // namespace edgedistill::model
