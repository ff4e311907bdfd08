#include "core/cpu_features.h"

#include <cstdlib>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace edgedistill::core {
namespace {

CpuFeatures detect() {
  CpuFeatures features;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    features.fma = (ecx >> 12) & 1;
    features.f16c = (ecx >> 29) & 1;
    const bool osxsave = (ecx >> 27) & 1;
    // The OS must save the YMM (and for AVX-512, the ZMM/opmask) state: XCR0 bits 1,2 (5,6,7).
    unsigned long long xcr0 = 0;
    if (osxsave) {
      unsigned xcr_low = 0, xcr_high = 0;
      __asm__("xgetbv" : "=a"(xcr_low), "=d"(xcr_high) : "c"(0));
      xcr0 = (static_cast<unsigned long long>(xcr_high) << 32) | xcr_low;
    }
    const bool ymm_saved = (xcr0 & 0x6) == 0x6;
    const bool zmm_saved = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
      features.avx2 = ymm_saved && ((ebx >> 5) & 1);
      features.avx512f = zmm_saved && ((ebx >> 16) & 1);
      features.avx512bw = zmm_saved && ((ebx >> 30) & 1);
      features.avx512vnni = zmm_saved && ((ecx >> 11) & 1);
    }
  }
#elif defined(__aarch64__)
  features.neon = true;
#endif
  return features;
}

bool supports(const CpuFeatures& f, const std::string& isa) {
  if (isa == "scalar") return true;
  if (isa == "avx2") return f.avx2 && f.fma && f.f16c;
  if (isa == "avx512") return f.avx512f && f.avx512bw;
  if (isa == "neon") return f.neon;
  return false;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string selected_isa() {
  const CpuFeatures& f = cpu_features();
  if (const char* forced = std::getenv("EDGEDISTILL_ISA"); forced != nullptr && *forced != '\0') {
    const std::string isa = forced;
    if (isa != "scalar" && isa != "avx2" && isa != "avx512" && isa != "neon") {
      throw InputError(str("EDGEDISTILL_ISA='", isa,
                           "' is not one of scalar, avx2, avx512, neon; unset it to choose "
                           "automatically"));
    }
    if (!supports(f, isa)) {
      throw InputError(str("EDGEDISTILL_ISA='", isa, "' but this CPU supports only: ",
                           describe_cpu_features(), "; unset it to choose automatically"));
    }
    return isa;
  }
  for (const char* isa : {"avx512", "avx2", "neon"}) {
    if (supports(f, isa)) return isa;
  }
  return "scalar";
}

std::string describe_cpu_features() {
  const CpuFeatures& f = cpu_features();
  std::string out;
  auto add = [&](bool has, const char* name) {
    if (has) out += (out.empty() ? "" : " ") + std::string(name);
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vnni, "avx512vnni");
  add(f.neon, "neon");
  return out.empty() ? "scalar only" : out;
}

}  // namespace edgedistill::core
