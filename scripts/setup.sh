#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine is missing (as root), makes OpenBLAS the active BLAS, then
# configures and builds edgedistill. Idempotent: a second run installs nothing and rebuilds only
# what changed. Called first by scripts/quickstart.sh and scripts/test.sh.
#
# Environment: EDGEDISTILL_BUILD_DIR (default: build/ in the repository), EDGEDISTILL_BUILD_TYPE
# (default: Release), EDGEDISTILL_JOBS (default: all cores), EDGEDISTILL_TARGETS (space-separated
# targets to build; default: everything, tests included), EDGEDISTILL_SKIP_BUILD=1 (install and
# select BLAS only: for scripts run with a binary built before).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
build_type=${EDGEDISTILL_BUILD_TYPE:-Release}
jobs=${EDGEDISTILL_JOBS:-$(nproc)}

packages=(
  # toolchain; python3 formats the quickstart's and the benchmarks' tables
  g++ cmake ninja-build pkg-config git python3
  # /usr/bin/time: the benchmarks' peak memory (scripts/bench_import.sh)
  time
  # the tokenizer tests' independent references (tests/python/): Python's sentencepiece (the
  # library our SentencePiece code must match), regex (the split expressions run as written);
  # numpy and PyTorch write the Hugging Face test models and run their reference forward pass
  python3-sentencepiece python3-regex python3-numpy python3-torch
  # libraries (README "Stack")
  libtorch-dev libopenblas0-openmp libeigen3-dev libcli11-dev nlohmann-json3-dev catch2
  libsentencepiece-dev sentencepiece zlib1g-dev
  # Gloo's headers: data-parallel training on LibTorch's c10d (ProcessGroupGloo)
  libgloo-dev
  # default data: the King James Bible, WordNet glosses, Fashion-MNIST
  bible-kjv wordnet-base dataset-fashion-mnist
  # the aarch64 cross compiler and qemu-user: the NEON runtime kernels are tested under emulation
  # (scripts/test_aarch64.sh, the "aarch64" ctest entry)
  g++-aarch64-linux-gnu qemu-user
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run this script as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's LibTorch calls whatever libblas.so.3 the alternatives system points at; the reference
# BLAS there is ~30x slower than OpenBLAS for the matmuls training is made of.
blas_link=libblas.so.3-$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
openblas=$(update-alternatives --list "$blas_link" 2>/dev/null | grep openblas-openmp | head -n 1 || true)
current=$(update-alternatives --query "$blas_link" 2>/dev/null | sed -n 's/^Value: //p')
if [[ -n $openblas && $current != "$openblas" ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: selecting OpenBLAS ($openblas) as libblas.so.3"
    update-alternatives --set "$blas_link" "$openblas"
  else
    echo "setup: warning: libblas.so.3 is $current, not OpenBLAS; training will be slow" >&2
  fi
fi

if [[ ${EDGEDISTILL_SKIP_BUILD:-0} == 1 ]]; then
  echo "setup: EDGEDISTILL_SKIP_BUILD=1: using the programs already in $build_dir/bin"
  exit 0
fi
mkdir -p "$build_dir"
cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" > "$build_dir/configure.log" 2>&1 ||
  { cat "$build_dir/configure.log" >&2; exit 1; }
targets=${EDGEDISTILL_TARGETS:-}
echo "setup: building ${targets:-everything} in $build_dir ($jobs jobs)"
# shellcheck disable=SC2086 # the targets are words
cmake --build "$build_dir" -j "$jobs" ${targets:+--target $targets}
