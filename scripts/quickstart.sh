#!/usr/bin/env bash
# The main job on the bundled default data: set up, build, prepare the King James corpus
# (SentencePiece 4096 tokenizer, token shards), train the teacher language model and distill the
# student from it, export the teacher to a q4_0 GGUF and verify it against the float model in
# edgedistill's runtime (perplexity, KL, top-1 agreement, speed, gates), quantize the student
# with GPTQ to q4_0 beside round-to-nearest, prune the teacher structurally and heal it by
# distillation (exported to q4_0 and measured), generate a few lines with the teacher, then print
# a summary: sizes, perplexities, speeds, and where the artifacts are.
#
# Usage: scripts/quickstart.sh [RUN_DIR]   (default: runs/quickstart)
# Running it again resumes the same run (a finished run just prints its summary again).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
# The programs only: the test suite (scripts/test.sh) is not needed here and doubles the build.
EDGEDISTILL_TARGETS=${EDGEDISTILL_TARGETS:-"edgedistill edgedistill-data"} "$repo/scripts/setup.sh"
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

# Healing the pruned teacher: a short run here; scripts/bench_prune.sh heals for the recipe's 200.
heal_steps=${QUICKSTART_HEAL_STEPS:-50}
artifacts="$run_dir/artifacts"
gguf="$artifacts/teacher-q4_0.gguf"
mkdir -p "$artifacts"
echo
echo "== exporting the teacher to GGUF (q4_0, round to nearest) and verifying it in the runtime"
"$edgedistill" export --model "$run_dir/teacher" --type q4_0 --out "$gguf"
verify_status=0
"$edgedistill" verify --model "$gguf" --reference "$run_dir/teacher" \
  --gates "$repo/configs/gates/quickstart-q4_0.json" --report "$artifacts/teacher-q4_0.verify.json" ||
  verify_status=$?
if ((verify_status > 1)); then exit "$verify_status"; fi
"$edgedistill" bench --model "$gguf" --report "$artifacts/teacher-q4_0.bench.json"
echo
echo "== quantizing the student with GPTQ to q4_0, scored beside round-to-nearest"
student_gguf="$artifacts/student-gptq-q4_0.gguf"
"$edgedistill" quantize --model "$run_dir/student" --method gptq --type q4_0 --baseline --out "$student_gguf"
echo
echo "== pruning the teacher (structured: a quarter of the FFN channels, heads in whole GQA groups) and healing it by distillation ($heal_steps steps)"
pruned="$run_dir/pruned"
"$edgedistill" prune --model "$run_dir/teacher" --method structured --ffn 0.25 --heads 0.25 --out "$pruned"
"$edgedistill" distill --config "$repo/configs/recipes/heal-kjv.json" --teacher "$run_dir/teacher" \
  --student "$pruned" --set train.steps="$heal_steps" --set train.eval_every=0 \
  --run-dir "$run_dir/healed" --resume
pruned_gguf="$artifacts/teacher-pruned-healed-q4_0.gguf"
"$edgedistill" export --model "$run_dir/healed" --type q4_0 --out "$pruned_gguf"
"$edgedistill" bench --model "$pruned_gguf" --report "$artifacts/teacher-pruned-healed-q4_0.bench.json"
echo
echo "== generating with the q4_0 teacher (greedy, then sampled)"
"$edgedistill" run --model "$gguf" --prompt "In the beginning God" -n 40 --temp 0
"$edgedistill" run --model "$gguf" --prompt "And the LORD said unto Moses," -n 40 --temp 0.8 --seed 7

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
verify = json.load(open(os.path.join(run_dir, "artifacts", "teacher-q4_0.verify.json")))
bench = json.load(open(os.path.join(run_dir, "artifacts", "teacher-q4_0.bench.json")))
m = verify["metrics"]
print()
print(f"   teacher as GGUF q4_0 in the runtime ({bench['threads']} threads, {bench['isa']} kernels):")
print(f"   {'file':>9} {'test ppl':>9} {'float ppl':>10} {'KL':>8} {'top-1':>7} {'prefill tok/s':>14} {'decode tok/s':>13}")
print(f"   {m['file_mb']:>7.2f}MB {m['perplexity']:>9.2f} {m['reference_perplexity']:>10.2f} "
      f"{m['mean_kl']:>8.4f} {100 * m['top1_agreement']:>6.1f}% {bench['prefill_tokens_per_s']:>14,.0f} "
      f"{bench['decode_tokens_per_s']:>13,.1f}")
failed = [g["key"] for g in verify["gates"] if not g["passed"]]
print(f"   gates (configs/gates/quickstart-q4_0.json): {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
prune = json.load(open(os.path.join(run_dir, "pruned", "prune.json")))
healed = json.load(open(os.path.join(run_dir, "healed", "result.json")))
pruned_bench = json.load(open(os.path.join(run_dir, "artifacts", "teacher-pruned-healed-q4_0.bench.json")))
p, c, b = prune["parameters"], prune["config"], prune["config_before"]
print()
print(f"   teacher pruned structurally: {b['n_heads']} -> {c['n_heads']} heads, FFN {b['ffn_dim']} -> {c['ffn_dim']}, "
      f"{p['before']:,} -> {p['after']:,} parameters")
print(f"   valid ppl {prune['evaluation']['perplexity_before']:.2f} -> {prune['evaluation']['perplexity_after']:.2f} "
      f"pruned -> {healed['valid_ppl']:.2f} healed ({healed['step']} steps); q4_0 {pruned_bench['file_bytes'] / 2**20:.2f}MB, "
      f"decode {pruned_bench['decode_tokens_per_s']:,.1f} tok/s ({pruned_bench['decode_tokens_per_s'] / bench['decode_tokens_per_s']:.2f}x the teacher's)")
quant = json.load(open(os.path.join(run_dir, "artifacts", "student-gptq-q4_0.quant.json")))
e = quant["evaluation"]
print()
print(f"   student quantized to q4_0, {e['split']} split ({e['tokens']:,} tokens), against the float student:")
print(f"   {'rounding':<10} {'file':>9} {'test ppl':>9} {'vs float':>9} {'KL':>8} {'top-1':>7}")
first = next(iter(e["models"].values()))
print(f"   {'float32':<10} {quant['float_bytes'] / 1e6:>7.2f}MB {first['reference_perplexity']:>9.3f}")
for label, r in sorted(e["models"].items(), key=lambda item: not item[0].startswith("rtn")):
    print(f"   {label.split()[0]:<10} {r['file_bytes'] / 1e6:>7.2f}MB {r['perplexity']:>9.3f} "
          f"{r['ppl_increase_pct']:>+8.3f}% {r['mean_kl']:>8.5f} {100 * r['top1_agreement']:>6.2f}%")
PY
echo "   teacher:      $run_dir/teacher/final (model.json, weights.safetensors)"
echo "   student:      $run_dir/student/final (distilled from the teacher)"
echo "   gguf:         $gguf (runs in llama.cpp unchanged; verify report beside it)"
echo "   student gguf: $student_gguf (GPTQ q4_0; per-layer report: ${student_gguf%.gguf}.quant.json)"
echo "   pruned:       $pruned (prune.json), healed: $run_dir/healed/final, gguf: $pruned_gguf"
echo "   metrics:      $run_dir/{teacher,student}/metrics.jsonl"
echo "   inspect with: $edgedistill inspect $run_dir/student; $edgedistill inspect $gguf"
exit "$verify_status"
