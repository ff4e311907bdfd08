#!/usr/bin/env bash
# Sets up (scripts/setup.sh), builds and runs the whole test suite with ctest.
# Extra arguments go to ctest, e.g. scripts/test.sh -R test_model.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
# Tests prepare small datasets; keep their cache inside the build tree, not in the user's home.
export EDGEDISTILL_CACHE_DIR=${EDGEDISTILL_CACHE_DIR:-$build_dir/test-cache}
cd "$build_dir"
ctest --output-on-failure -j "${EDGEDISTILL_TEST_JOBS:-$(nproc)}" "$@"
