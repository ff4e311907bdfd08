#!/usr/bin/env bash
# Runs a GGUF file in real llama.cpp, unchanged: the prebuilt CPU binary that the npm package
# node-llama-cpp ships (@node-llama-cpp/linux-x64). Checks that llama.cpp loads the file, prints its
# greedy continuation of a prompt and, with --bench, its prefill and decode speed measured the way
# `edgedistill bench --model` measures ours.
#
#   scripts/llama_cpp.sh --model runs/gguf/teacher-f32.gguf --prompt "In the beginning" -n 32 --threads 2
#   scripts/llama_cpp.sh --model runs/gguf/teacher-q4_0.gguf --threads 2 --bench --json
#   scripts/llama_cpp.sh --help                 (all the options of scripts/llama_cpp_check.mjs)
#
# The first run installs node-llama-cpp (pinned version, CPU linux-x64 binary only, no install
# scripts) with npm into $EDGEDISTILL_NODE_LLAMA_CPP_DIR (default ~/.cache/edgedistill/node-llama-cpp);
# later runs use that copy and download nothing. llama.cpp is never built from source.
#
# Environment:
#   EDGEDISTILL_NODE_LLAMA_CPP_DIR      the install directory
#   EDGEDISTILL_NODE_LLAMA_CPP_VERSION  the node-llama-cpp version (default below; a different
#                                       version gets its own install directory)
#   EDGEDISTILL_NODE_LLAMA_CPP_INSTALL_ONLY=1   install, then stop
#
# Exit status: 0 ok; 1 llama.cpp refused the file or failed running it; 2 usage error, Node.js/npm
# missing or the install failed.
set -euo pipefail

version="${EDGEDISTILL_NODE_LLAMA_CPP_VERSION:-3.22.1}"
default_dir="${XDG_CACHE_HOME:-$HOME/.cache}/edgedistill/node-llama-cpp"
if [[ -n "${EDGEDISTILL_NODE_LLAMA_CPP_DIR:-}" ]]; then
  dir="$EDGEDISTILL_NODE_LLAMA_CPP_DIR"
elif [[ "$version" == "3.22.1" ]]; then
  dir="$default_dir"
else
  dir="$default_dir-$version"
fi
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "llama_cpp.sh: $*" >&2; exit 2; }

# --- Node.js >= 20 and npm ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  die "needs Node.js (>= 20) and npm, which node-llama-cpp runs on. On Debian 12:
    sudo apt-get update && sudo apt-get install -y nodejs npm
(Debian 12's nodejs is 18.x, too old for node-llama-cpp 3.x: use Debian 13's, or NodeSource's
nodejs 20+ packages, or a Node.js 20+ binary from nodejs.org on PATH.)"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  die "node-llama-cpp $version needs Node.js >= 20; this is $(node --version) ($(command -v node)).
Install Node.js 20+ (Debian 13: sudo apt-get install nodejs npm; Debian 12: NodeSource's nodejs
20+ packages or a binary from nodejs.org) and put it first on PATH."
fi
[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] ||
  echo "llama_cpp.sh: warning: installs the linux-x64 binary only; this is $(uname -s)-$(uname -m)" >&2

# --- install (once) ---
installed_version() {
  node -p "require('$dir/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || true
}
binary_version() {
  node -p "require('$dir/node_modules/@node-llama-cpp/linux-x64/package.json').version" 2>/dev/null || true
}
if [[ "$(installed_version)" != "$version" || "$(binary_version)" != "$version" ]]; then
  echo "llama_cpp.sh: installing node-llama-cpp@$version (CPU linux-x64 prebuilt llama.cpp) into $dir" >&2
  mkdir -p "$dir"
  # A package.json of our own pins both packages; --omit=optional leaves out node-llama-cpp's
  # optional CUDA/Vulkan/other-platform binaries (the linux-x64 one is a direct dependency here,
  # so it stays); --ignore-scripts skips node-llama-cpp's postinstall, which could otherwise
  # download and build llama.cpp from source when it finds no usable binary.
  cat >"$dir/package.json" <<EOF
{
  "name": "edgedistill-node-llama-cpp",
  "private": true,
  "description": "node-llama-cpp for edgedistill's scripts/llama_cpp.sh (generated; safe to delete)",
  "dependencies": {
    "node-llama-cpp": "$version",
    "@node-llama-cpp/linux-x64": "$version"
  }
}
EOF
  if ! (cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts \
          --no-audit --no-fund --loglevel=error >&2); then
    die "npm install into $dir failed (see above); it needs the npm registry (registry.npmjs.org)"
  fi
  [[ "$(installed_version)" == "$version" && "$(binary_version)" == "$version" ]] ||
    die "after npm install, $dir lacks node-llama-cpp@$version or @node-llama-cpp/linux-x64@$version"
  for variant in linux-x64-cuda linux-x64-cuda-ext linux-x64-vulkan; do
    [[ -e "$dir/node_modules/@node-llama-cpp/$variant" ]] &&
      echo "llama_cpp.sh: note: npm also installed @node-llama-cpp/$variant (unused: gpu is off)" >&2
  done
  echo "llama_cpp.sh: installed ($(du -sh "$dir/node_modules" | cut -f1))" >&2
fi
[[ "${EDGEDISTILL_NODE_LLAMA_CPP_INSTALL_ONLY:-0}" == 1 ]] && exit 0

# --- run: the prebuilt binary only; nothing is downloaded or built at model-run time ---
export EDGEDISTILL_NODE_LLAMA_CPP_DIR="$dir"
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
export NODE_LLAMA_CPP_GPU=false
exec node "$script_dir/llama_cpp_check.mjs" "$@"
