#!/usr/bin/env bash
# The main job on the bundled default data: set up, build, then run the pipeline recipe
# configs/recipes/quickstart.json with `edgedistill recipe`: prepare the King James corpus
# (SentencePiece 4096 tokenizer, token shards), train the teacher, distil the student from it,
# prune the student structurally and heal it by distillation, quantize it with GPTQ to a q4_0
# GGUF, and verify that file in edgedistill's runtime against the float model (perplexity, KL,
# top-1 agreement, speed, gates). Then generate a few lines with the artifact and print a summary:
# sizes, perplexities, speeds, and where the artifacts are.
#
# Usage: scripts/quickstart.sh [RUN_DIR]   (default: runs/quickstart)
# Running it again skips every finished stage (a killed training stage resumes from its last
# checkpoint). Environment: QUICKSTART_STUDENT_STEPS, QUICKSTART_HEAL_STEPS override the
# recipe's 150 distillation and 50 healing steps. Exit code: the recipe's (1 when a gate fails).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
# The programs only: the test suite (scripts/test.sh) is not needed here and doubles the build.
EDGEDISTILL_TARGETS=${EDGEDISTILL_TARGETS:-"edgedistill edgedistill-data"} "$repo/scripts/setup.sh"
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
edgedistill="$build_dir/bin/edgedistill"
run_dir=${1:-$repo/runs/quickstart}
recipe="$repo/configs/recipes/quickstart.json"

overrides=()
if [[ -n ${QUICKSTART_STUDENT_STEPS:-} ]]; then
  overrides+=(--set "distill.recipe.train.steps=$QUICKSTART_STUDENT_STEPS")
fi
if [[ -n ${QUICKSTART_HEAL_STEPS:-} ]]; then
  overrides+=(--set "prune.heal.recipe.train.steps=$QUICKSTART_HEAL_STEPS")
fi

echo
echo "== edgedistill recipe configs/recipes/quickstart.json --run-dir $run_dir"
status=0
"$edgedistill" recipe "$recipe" "${overrides[@]}" --run-dir "$run_dir" || status=$?
if ((status > 1)); then exit "$status"; fi
gguf="$run_dir/artifacts/model.gguf"

echo
echo "== generating with the q4_0 artifact (greedy, then sampled)"
"$edgedistill" run --model "$gguf" --prompt "In the beginning God" -n 40 --temp 0
"$edgedistill" run --model "$gguf" --prompt "And the LORD said unto Moses," -n 40 --temp 0.8 --seed 7

elapsed=$(($(date +%s) - started))
echo
echo "== quickstart done in $((elapsed / 60))m$((elapsed % 60))s (setup and build included)"
/usr/bin/python3 - "$run_dir" <<'PY'
import json, os, sys
run_dir = sys.argv[1]
manifest = json.load(open(os.path.join(run_dir, "artifacts", "manifest.json")))
stages = {s["name"]: s for s in manifest["stages"]}
print(f"   {'model':<22} {'parameters':>11} {'weights':>9} {'valid ppl':>10} {'test ppl':>9} {'train tok/s':>12}")
for name, label in (("teacher", "teacher"), ("student", "student (distilled)"), ("healed", "pruned + healed")):
    final = os.path.join(run_dir, name, "final")
    if not os.path.isdir(final):
        continue
    result = json.load(open(os.path.join(run_dir, name, "result.json")))
    model = json.load(open(os.path.join(final, "model.json")))
    size = os.path.getsize(os.path.join(final, "weights.safetensors")) / 2**20
    print(f"   {label:<22} {model.get('parameters', 0):>11,} {size:>7.1f}MB {result['valid_ppl']:>10.2f} "
          f"{result['test_ppl']:>9.2f} {result.get('tok_per_s', 0):>12,.0f}")
prune = stages["prune"].get("metrics", {})
if "evaluation" in prune:
    e, c = prune["evaluation"], prune["config"]
    print(f"   pruned: FFN -> {c['ffn_dim']}, {c['n_heads']} heads, {c['n_layers']} blocks; valid ppl "
          f"{e['perplexity_before']:.2f} -> {e['perplexity_after']:.2f} before healing")
v = manifest["verify"]
m = v["metrics"]
q = stages["quantize"]["metrics"]
print()
print(f"   artifact: {q['method']} {q['type']} GGUF in the runtime ({v['threads']} threads, {v['isa']} kernels), "
      f"against its float model on the {v['split']} split:")
print(f"   {'file':>9} {'test ppl':>9} {'float ppl':>10} {'KL':>8} {'top-1':>7} {'prefill tok/s':>14} {'decode tok/s':>13}")
print(f"   {m['file_mb']:>7.2f}MB {m['perplexity']:>9.2f} {m['reference_perplexity']:>10.2f} "
      f"{m['mean_kl']:>8.4f} {100 * m['top1_agreement']:>6.1f}% {m.get('prefill_tokens_per_s', 0):>14,.0f} "
      f"{m.get('decode_tokens_per_s', 0):>13,.1f}")
failed = [g["key"] for g in manifest["result"]["failed_gates"]]
print(f"   gates ({os.path.relpath(manifest['config']['verify']['gates'])}): "
      f"{'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
print(f"   stages: " + ", ".join(f"{s['name']} {s['status']}" + (f" {s['wall_s']:.0f}s" if s['status'] == 'ran' else "")
                             for s in manifest["stages"] if s["status"] != "off"))
PY
echo "   teacher:  $run_dir/teacher/final; student: $run_dir/student/final; pruned: $run_dir/pruned; healed: $run_dir/healed/final"
echo "   gguf:     $gguf (runs in llama.cpp unchanged)"
echo "   reports:  $run_dir/artifacts/{report.json,model.quant.json,manifest.json}; stage records: $run_dir/stages/"
echo "   inspect:  $edgedistill inspect $gguf"
exit "$status"
