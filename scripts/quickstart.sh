#!/usr/bin/env bash
# The main job on the bundled default data: set up, build, prepare the King James corpus
# (SentencePiece 4096 tokenizer, token shards), train the teacher language model and distill the
# student from it, then print a summary: sizes, perplexities, speeds, and where the artifacts are.
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

# The student distils for half the teacher's steps to keep the quickstart near 15 minutes on 2
# cores; scripts/bench_distill_kjv.sh runs the full recipes against a scratch baseline.
student_steps=${QUICKSTART_STUDENT_STEPS:-150}
echo
echo "== distilling the student (configs/recipes/distill-kjv.json, $student_steps steps) in $run_dir"
"$edgedistill" distill --config "$repo/configs/recipes/distill-kjv.json" --teacher "$run_dir/teacher" \
  --set train.steps="$student_steps" --set train.eval_every=0 --run-dir "$run_dir/student" --resume

elapsed=$(($(date +%s) - started))
echo
echo "== quickstart done in $((elapsed / 60))m$((elapsed % 60))s"
/usr/bin/python3 - "$run_dir" <<'PY'
import json, os, sys
run_dir = sys.argv[1]
print(f"   {'model':<8} {'parameters':>11} {'weights':>9} {'valid ppl':>10} {'test ppl':>9} {'tokens/s':>9}")
for name in ("teacher", "student"):
    result = json.load(open(os.path.join(run_dir, name, "result.json")))
    model = json.load(open(os.path.join(run_dir, name, "final", "model.json")))
    size = os.path.getsize(os.path.join(run_dir, name, "final", "weights.safetensors")) / 2**20
    print(f"   {name:<8} {model.get('parameters', 0):>11,} {size:>7.1f}MB {result['valid_ppl']:>10.2f} "
          f"{result['test_ppl']:>9.2f} {result.get('tok_per_s', 0):>9,.0f}")
PY
echo "   teacher:      $run_dir/teacher/final (model.json, weights.safetensors)"
echo "   student:      $run_dir/student/final (distilled from the teacher)"
echo "   metrics:      $run_dir/{teacher,student}/metrics.jsonl"
echo "   inspect with: $edgedistill inspect $run_dir/student"
