// The AVX-512 kernels built a second time for CPUs with AVX-512 VNNI (vpdpbusd): the same source,
// kernels_avx512.cpp, with its VNNI dot products selected and -mavx512vnni in this file's flags.
#define EDGEDISTILL_KERNELS_AVX512_VNNI 1
#include "runtime/kernels_avx512.cpp"  // NOLINT(bugprone-suspicious-include): one source, two builds
