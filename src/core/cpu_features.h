// CPU instruction-set detection, read once at startup. Kernels compiled once per instruction set
// (the fused training ops now, the inference runtime's later) choose their implementation from
// this; EDGEDISTILL_ISA=scalar|avx2|avx512|neon forces one.
#pragma once

#include <string>

namespace edgedistill::core {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vnni = false;
  bool neon = false;
};

// What this CPU supports (CPUID on x86, compile-time on aarch64, where NEON is mandatory).
const CpuFeatures& cpu_features();

// The instruction set the runtime's kernels will use: "avx512", "avx2", "neon" or "scalar".
// EDGEDISTILL_ISA overrides the choice; asking for an ISA the CPU lacks is an InputError.
std::string selected_isa();

// "avx2 fma f16c" style summary of what was detected, for reports and `inspect`.
std::string describe_cpu_features();

}  // namespace edgedistill::core
