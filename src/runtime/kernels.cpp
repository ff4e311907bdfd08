// Chooses the runtime kernels' build once, from the CPU's features (or EDGEDISTILL_ISA).
#include "runtime/kernels.h"

#include <string>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/kernels_builds.h"

namespace edgedistill::runtime {

void unsupported_weight_type(io::GgmlType type) {
  ED_CHECK(false, "no runtime kernel for ggml type id ", static_cast<uint32_t>(type));
  __builtin_unreachable();
}

const RuntimeKernels& scalar_runtime_kernels() {
  return kernels_scalar::table();
}

const RuntimeKernels* avx2_runtime_kernels() {
#if defined(EDGEDISTILL_HAVE_X86_KERNELS)
  const auto& cpu = core::cpu_features();
  if (cpu.avx2 && cpu.fma && cpu.f16c) return &kernels_avx2::table();
#endif
  return nullptr;
}

const RuntimeKernels* avx512_runtime_kernels() {
#if defined(EDGEDISTILL_HAVE_X86_KERNELS)
  const auto& cpu = core::cpu_features();
  // Every CPU with AVX-512 BW also has VL, FMA and F16C (Skylake-SP and later, Zen 4).
  if (cpu.avx512f && cpu.avx512bw) {
    return cpu.avx512vnni ? &kernels_avx512vnni::table() : &kernels_avx512::table();
  }
#endif
  return nullptr;
}

const RuntimeKernels* avx512_without_vnni_runtime_kernels() {
#if defined(EDGEDISTILL_HAVE_X86_KERNELS)
  const auto& cpu = core::cpu_features();
  if (cpu.avx512f && cpu.avx512bw) return &kernels_avx512::table();
#endif
  return nullptr;
}

const RuntimeKernels* neon_runtime_kernels() {
#if defined(EDGEDISTILL_HAVE_NEON_KERNELS)
  if (core::cpu_features().neon) return &kernels_neon::table();
#endif
  return nullptr;
}

const RuntimeKernels& runtime_kernels() {
  static const RuntimeKernels& chosen = []() -> const RuntimeKernels& {
    const std::string isa = core::selected_isa();
    const RuntimeKernels* table = nullptr;
    if (isa == "avx512") table = avx512_runtime_kernels();
    if (table == nullptr && (isa == "avx512" || isa == "avx2")) table = avx2_runtime_kernels();
    if (isa == "neon") table = neon_runtime_kernels();
    // selected_isa() names only what the CPU supports, but this binary may lack that build.
    if (table == nullptr) table = &scalar_runtime_kernels();
    core::debug("runtime kernels: ", table->isa);
    return *table;
  }();
  return chosen;
}

}  // namespace edgedistill::runtime
