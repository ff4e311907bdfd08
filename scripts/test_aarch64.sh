#!/usr/bin/env bash
# Cross-compiles the runtime for aarch64 (cmake/toolchains/aarch64-linux-gnu.cmake) and runs its
# kernel and io tests under qemu-user, so the NEON kernels are checked against their scalar twin
# on an x86-64 machine. ctest runs this as the "aarch64" test.
#
# Usage: scripts/test_aarch64.sh [BUILD_DIR]   (default: build-aarch64/ in the repository)
# Environment: EDGEDISTILL_JOBS (default: all cores).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$repo/build-aarch64}
jobs=${EDGEDISTILL_JOBS:-$(nproc)}
sysroot=/usr/aarch64-linux-gnu

for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  if ! command -v "$tool" > /dev/null; then
    echo "test_aarch64: $tool not found; run scripts/setup.sh as root, or:" \
      "apt-get install g++-aarch64-linux-gnu qemu-user" >&2
    exit 2
  fi
done

mkdir -p "$build_dir"
echo "test_aarch64: configuring $build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/toolchains/aarch64-linux-gnu.cmake" \
  -DEDGEDISTILL_RUNTIME_ONLY=ON > "$build_dir/configure.log" 2>&1 ||
  { cat "$build_dir/configure.log" >&2; exit 1; }
echo "test_aarch64: building ($jobs jobs)"
cmake --build "$build_dir" -j "$jobs" --target test_runtime_kernels test_io

status=0
for test in test_runtime_kernels test_io; do
  echo "test_aarch64: qemu-aarch64 $test"
  qemu-aarch64 -L "$sysroot" "$build_dir/bin/$test" || status=1
done
exit $status
