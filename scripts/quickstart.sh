#!/usr/bin/env bash
# The main job on the bundled default data: set up, build, prepare the King James corpus
# (SentencePiece 4096 tokenizer, token shards) and train the teacher language model, then print a
# summary: sizes, perplexities, speeds, and where the artifacts are.
#
# Usage: scripts/quickstart.sh [RUN_DIR]   (default: runs/quickstart)
# Running it again resumes the same run (a finished run just prints its summary again).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
"$repo/scripts/setup.sh"
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
edgedistill="$build_dir/bin/edgedistill"
run_dir=${1:-$repo/runs/quickstart}

echo
echo "== training the teacher (configs/recipes/teacher-kjv.json) in $run_dir"
"$edgedistill" train --config "$repo/configs/recipes/teacher-kjv.json" --run-dir "$run_dir/teacher" --resume

elapsed=$(($(date +%s) - started))
echo
echo "== quickstart done in $((elapsed / 60))m$((elapsed % 60))s"
echo "   teacher:      $run_dir/teacher/final (model.json, weights.safetensors)"
echo "   metrics:      $run_dir/teacher/metrics.jsonl"
echo "   inspect with: $edgedistill inspect $run_dir/teacher"
