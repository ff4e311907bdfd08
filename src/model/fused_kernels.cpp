// Chooses the fused kernels' build once, from the CPU's features.
#include "model/fused_kernels.h"

#include <cstdlib>
#include <string>

#include "core/cpu_features.h"
#include "core/log.h"

namespace edgedistill::model {

namespace kernels_scalar {
const FusedKernels& table();
}
#if defined(EDGEDISTILL_HAVE_AVX2_KERNELS)
namespace kernels_avx2 {
const FusedKernels& table();
}
#endif

const FusedKernels& scalar_fused_kernels() {
  return kernels_scalar::table();
}

const FusedKernels* avx2_fused_kernels() {
#if defined(EDGEDISTILL_HAVE_AVX2_KERNELS)
  const auto& cpu = core::cpu_features();
  if (cpu.avx2 && cpu.fma) return &kernels_avx2::table();
#endif
  return nullptr;
}

const FusedKernels& fused_kernels() {
  static const FusedKernels& chosen = [&]() -> const FusedKernels& {
    // The runtime's full choice (avx512, neon, ...) maps onto the builds that exist here.
    const std::string isa = core::selected_isa();
    const FusedKernels* avx2 = avx2_fused_kernels();
    const FusedKernels& table =
        (isa == "avx2" || isa == "avx512") && avx2 != nullptr ? *avx2 : scalar_fused_kernels();
    core::debug("fused training kernels: ", table.isa);
    return table;
  }();
  return chosen;
}

}  // namespace edgedistill::model
