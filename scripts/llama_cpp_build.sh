#!/usr/bin/env bash
# Builds llama.cpp's command-line tools from a source tree you supply, as the peer that
# scripts/bench_kquants.sh and the other benchmarks measure against on this machine:
#
#   scripts/llama_cpp_build.sh SRC_DIR
#   scripts/llama_cpp_build.sh --from-node-llama-cpp     (source from the npm package, see below)
#
# SRC_DIR is a llama.cpp checkout (the directory holding its top-level CMakeLists.txt). It is
# built out of tree, for this CPU (GGML_NATIVE=ON), without networking (no OpenSSL, no curl),
# into $EDGEDISTILL_LLAMA_CPP_BUILD_DIR (default ~/.cache/edgedistill/llama.cpp-build), and the
# targets llama-quantize, llama-imatrix, llama-perplexity and llama-bench are made. The
# repository never holds llama.cpp's code and no test needs this build; benchmarks look for
# the binaries in $EDGEDISTILL_LLAMA_CPP_BUILD_DIR/bin and say so when they are missing.
#
# --from-node-llama-cpp takes the source that the npm package node-llama-cpp ships as a git
# bundle (the package scripts/llama_cpp.sh installs, which is reachable from npm): it is cloned
# into ~/.cache/edgedistill/src/llama.cpp and built from there. The version is the one that
# package pins (llama/llama.cpp.info.json in it).
#
# Environment:
#   EDGEDISTILL_LLAMA_CPP_BUILD_DIR  the build directory
#   EDGEDISTILL_LLAMA_CPP_JOBS       parallel compile jobs (default: all cores)
#
# Exit status: 0 built (prints the bin directory); 2 bad SRC_DIR, missing cmake/compiler, or a
# failed configure or build (the log's path is printed).
set -euo pipefail

die() { echo "llama_cpp_build.sh: $*" >&2; exit 2; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/edgedistill"
build_dir="${EDGEDISTILL_LLAMA_CPP_BUILD_DIR:-$cache/llama.cpp-build}"
jobs="${EDGEDISTILL_LLAMA_CPP_JOBS:-$(nproc)}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
  -h | --help | "")
    sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ -n "${1:-}" ]] && exit 0 || exit 2
    ;;
  --from-node-llama-cpp)
    pkg="${EDGEDISTILL_NODE_LLAMA_CPP_DIR:-$cache/node-llama-cpp}/node_modules/node-llama-cpp/llama"
    if [[ ! -f "$pkg/gitRelease.bundle" ]]; then
      echo "llama_cpp_build.sh: installing node-llama-cpp first (scripts/llama_cpp.sh)" >&2
      EDGEDISTILL_NODE_LLAMA_CPP_INSTALL_ONLY=1 "$script_dir/llama_cpp.sh" ||
        die "could not install node-llama-cpp; pass a llama.cpp source directory instead"
    fi
    [[ -f "$pkg/gitRelease.bundle" ]] || die "no llama.cpp source bundle at $pkg/gitRelease.bundle"
    src="$cache/src/llama.cpp"
    head="$(git bundle list-heads "$pkg/gitRelease.bundle" | awk 'NR==1{print $1}')"
    if [[ ! -d "$src/.git" || "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$head" ]]; then
      rm -rf "$src"
      mkdir -p "$(dirname "$src")"
      git clone --quiet "$pkg/gitRelease.bundle" "$src" || die "could not clone $pkg/gitRelease.bundle"
    fi
    ;;
  *)
    src="$1"
    ;;
esac

[[ -f "$src/CMakeLists.txt" && -d "$src/ggml" && -d "$src/tools/quantize" ]] ||
  die "$src is not a llama.cpp source tree (expected CMakeLists.txt, ggml/ and tools/quantize/ in it)"
command -v cmake >/dev/null || die "needs cmake (apt-get install cmake)"
command -v c++ >/dev/null || die "needs a C++ compiler (apt-get install g++)"
src="$(cd "$src" && pwd)"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

mkdir -p "$build_dir"
log="$build_dir/build.log"
# A build directory configured from another source tree is started afresh.
if [[ -f "$build_dir/CMakeCache.txt" ]] &&
   ! grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$src\$" "$build_dir/CMakeCache.txt"; then
  echo "llama_cpp_build.sh: $build_dir was configured from another source; reconfiguring" >&2
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
fi
echo "llama_cpp_build.sh: configuring $src -> $build_dir (log: $log)" >&2
cmake -S "$src" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON >"$log" 2>&1 ||
  die "configure failed; see $log"
targets=(llama-quantize llama-imatrix llama-perplexity llama-bench)
echo "llama_cpp_build.sh: building ${targets[*]} with $jobs jobs" >&2
cmake --build "$build_dir" --parallel "$jobs" --target "${targets[@]}" >>"$log" 2>&1 ||
  die "build failed; see $log"
for t in "${targets[@]}"; do
  [[ -x "$build_dir/bin/$t" ]] || die "the build made no $build_dir/bin/$t; see $log"
done
echo "$src" >"$build_dir/edgedistill-source"
echo "$build_dir/bin"
