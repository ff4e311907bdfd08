// The per-instruction-set builds of the runtime kernels, as kernels.cpp sees them. Internal to the
// kernel files: models and passes include runtime/kernels.h only.
#pragma once

#include "io/gguf_types.h"
#include "runtime/kernels.h"

namespace edgedistill::runtime {

// Each build's table; a build exists only where kernels.cpp's #if says it was compiled.
namespace kernels_scalar {
const RuntimeKernels& table();
}
namespace kernels_avx2 {
const RuntimeKernels& table();
}
namespace kernels_avx512 {
const RuntimeKernels& table();
}
namespace kernels_avx512vnni {
const RuntimeKernels& table();
}
namespace kernels_neon {
const RuntimeKernels& table();
}

// A WeightMatrix whose type no kernel handles: a bug in the caller (the GGUF reader accepts only
// the types the kernels know). Compiled at the baseline ISA, so any build may call it.
[[noreturn]] void unsupported_weight_type(io::GgmlType type);

}  // namespace edgedistill::runtime
