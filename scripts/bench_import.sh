#!/usr/bin/env bash
# Real-sized pretrained teachers, end to end: a SmolLM2-135M-shaped and a Qwen2.5-0.5B-shaped
# Hugging Face folder (random weights from tests/python/hf_model.py: no weights can be downloaded
# here, and the shapes, not the values, set the costs) are imported, distilled into a ~30M student
# for a few steps with the live teacher and with a top-k cache, and the student and teacher are
# quantized to q4_0 and run. Writes docs/results/import.md (or $RESULTS_DIR/import.md).
#
#   scripts/bench_import.sh            # both models
#   MODELS=smollm2-135m STEPS=4 scripts/bench_import.sh
#
# Environment: BENCH_DIR (default runs/bench-import; the folders and runs stay there), STEPS
# (distillation steps per run, default 6), MODELS (default "smollm2-135m qwen2.5-0.5b"),
# EDGEDISTILL_BUILD_DIR. Needs /usr/bin/time (package time) for peak RSS.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
bin=$build_dir/bin/edgedistill
work=${BENCH_DIR:-$repo/runs/bench-import}
results=${RESULTS_DIR:-$repo/docs/results}
steps=${STEPS:-6}
models=${MODELS:-smollm2-135m qwen2.5-0.5b}
export EDGEDISTILL_CACHE_DIR=${EDGEDISTILL_CACHE_DIR:-$work/cache}

if [[ ! -x /usr/bin/time ]]; then
  echo "bench_import: /usr/bin/time is missing; apt-get install time" >&2
  exit 2
fi
[[ -x $bin ]] || EDGEDISTILL_TARGETS="edgedistill edgedistill-data" "$repo/scripts/setup.sh"
mkdir -p "$work" "$results"

# name -> hf_model.py options: the published shapes of the two models (config.json of
# HuggingFaceTB/SmolLM2-135M and Qwen/Qwen2.5-0.5B); the tokenizers are synthetic byte-level BPE
# vocabularies of the real sizes (Qwen2.5's has 151,665 tokens for 151,936 embedding rows).
declare -A shape=(
  [smollm2-135m]="dim=576 layers=30 heads=9 kv_heads=3 ffn=1536 vocab=49152 tied=1 theta=100000 dtype=bf16 context=8192 std=0.05 embed_std=0.05"
  [qwen2.5-0.5b]="dim=896 layers=24 heads=14 kv_heads=2 ffn=4864 vocab=151936 tokens=151665 tied=1 theta=1000000 eps=1e-6 dtype=bf16 context=32768 std=0.05 embed_std=0.05"
)
declare -A arch=([smollm2-135m]=llama [qwen2.5-0.5b]=qwen2)
# Students of ~30M parameters with the teacher's vocabulary: most of them are the embedding, so the
# Qwen-vocabulary student is narrower.
declare -A student=(
  [smollm2-135m]='"dim": 384, "n_layers": 4, "n_heads": 6, "n_kv_heads": 2, "ffn_dim": 1024'
  [qwen2.5-0.5b]='"dim": 192, "n_layers": 4, "n_heads": 3, "n_kv_heads": 1, "ffn_dim": 512'
)

# Peak RSS (kB) and wall seconds of a command, appended as JSON to $work/measure.jsonl.
measure() {
  local label=$1
  shift
  local log="$work/time-$label.txt"
  /usr/bin/time -v -o "$log" "$@"
  python3 - "$label" "$log" >> "$work/measure.jsonl" <<'EOF'
import json, sys
label, log = sys.argv[1], sys.argv[2]
values = {}
for line in open(log):
    key, _, value = line.strip().rpartition(": ")
    values[key] = value
wall = values["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall)))
print(json.dumps({"label": label, "seconds": seconds, "max_rss_kb": int(values["Maximum resident set size (kbytes)"])}))
EOF
}

rm -f "$work/measure.jsonl"
for name in $models; do
  dir=$work/$name
  hf=$dir/hf
  mkdir -p "$dir"
  if [[ ! -f $hf/config.json ]]; then
    echo "bench_import: writing the $name-shaped folder"
    # shellcheck disable=SC2086 # the options are words
    /usr/bin/python3 "$repo/tests/python/hf_model.py" write "$hf" "${arch[$name]}" 1 ${shape[$name]}
  fi
  echo "bench_import: $name: import"
  measure "$name-import" "$bin" import "$hf" --out "$dir/imported" --force

  # The student: ~30M parameters with the teacher's tokenizer (most of them in the embedding).
  cat > "$dir/recipe.json" <<EOF
{
  "name": "import-bench-$name",
  "seed": 1,
  "data": "$repo/configs/data/kjv.json",
  "model": {"arch": "llama", ${student[$name]}, "max_seq_len": 128, "tie_embeddings": true},
  "train": {"steps": $steps, "batch_size": 4, "seq_len": 128, "lr": 0.001, "warmup_steps": 1,
            "eval_every": 0, "eval_tokens": 4096, "checkpoint_every": 1000, "log_every": 1},
  "distill": {"losses": [{"kind": "forward_kl", "temperature": 1.0, "alpha": 0.5}]}
}
EOF
  rm -rf "$dir/live" "$dir/cached" "$dir/cache"
  echo "bench_import: $name: distill with the live teacher"
  # The data: KJV with the teacher's tokenizer, cut to 48 documents (~25k tokens) so that the top-k
  # cache of the whole train split takes minutes, not hours, with a 0.5B teacher on 2 cores.
  data=(--set data.tokenizer.from="$dir/imported" --set data.max_documents=48)
  measure "$name-distill-live" "$bin" distill --config "$dir/recipe.json" --teacher "$hf" \
    "${data[@]}" --run-dir "$dir/live"
  echo "bench_import: $name: teacher cache and distill from it"
  measure "$name-cache" "$bin" teacher-cache --teacher "$hf" --config "$dir/recipe.json" \
    "${data[@]}" --top-k 32 --out "$dir/cache"
  measure "$name-distill-cached" "$bin" distill --config "$dir/recipe.json" --teacher-cache "$dir/cache" \
    "${data[@]}" --run-dir "$dir/cached"
  echo "bench_import: $name: quantize and run"
  measure "$name-quantize-student" "$bin" quantize --model "$dir/live" --method rtn --type q4_0 \
    --out "$dir/student-q4_0.gguf"
  measure "$name-export-teacher" "$bin" export --model "$hf" --type q4_0 --out "$dir/teacher-q4_0.gguf"
  measure "$name-run-teacher" "$bin" run --model "$dir/teacher-q4_0.gguf" --prompt "In the beginning" -n 16 --threads 2
  "$bin" bench --model "$dir/teacher-q4_0.gguf" --threads 2 -p 64 -n 32 -r 3 --json > "$dir/bench-teacher.json"
  "$bin" bench --model "$dir/student-q4_0.gguf" --threads 2 -p 64 -n 32 -r 3 --json > "$dir/bench-student.json"
done

# shellcheck disable=SC2086 # the models are words
python3 - "$work" "$results/import.md" "$steps" "$(git -C "$repo" rev-parse --short=12 HEAD)" $models <<'EOF'
import datetime, json, os, sys
work, out, steps, revision, models = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
measured = {}
for line in open(os.path.join(work, "measure.jsonl")):
    row = json.loads(line)
    measured[row["label"]] = row

def metrics(run):
    rows = [json.loads(l) for l in open(os.path.join(work, run, "metrics.jsonl"))]
    steps = [r for r in rows if "tok_per_s" in r]
    # Step 1 includes warm-up (first allocations); the rate is the mean over the later steps.
    later = steps[1:] or steps
    return sum(r["tok_per_s"] for r in later) / len(later), sum(r["step_s"] for r in later) / len(later)

def params(run):
    return json.load(open(os.path.join(work, run, "final", "model.json")))["parameters"]

def gib(kb):
    return kb / 1024 / 1024

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    "# Importing real-sized teachers",
    "",
    f"From `scripts/bench_import.sh`, {datetime.date.today()}, git {revision}, {cpu}, "
    f"{os.cpu_count()} cores. Random-weight Hugging Face folders of the published shapes (bf16, synthetic "
    "tokenizers of the real sizes; no weights can be downloaded here), written by "
    "tests/python/hf_model.py. Students: 4 blocks, tied, 384 wide (SmolLM2 vocabulary) or 192 wide "
    "(Qwen2.5 vocabulary), distilled with forward KL + CE "
    f"for {steps} steps of 4 × 128 tokens; tokens/s is the mean over steps 2..{steps}. "
    "The teacher's share of a step is 1 − (step time with the cache) / (step time with the live "
    "teacher): reading the top-k cache costs next to nothing.",
    "",
    "| teacher | params | import s | import peak RSS | student params | live: tokens/s | live: peak RSS | cache build s | cached: tokens/s | teacher share of step | teacher q4_0 MB | teacher decode tok/s | student q4_0 decode tok/s |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for name in models:
    imported = json.load(open(os.path.join(work, name, "imported", "model.json")))
    live_rate, live_step = metrics(os.path.join(name, "live"))
    cached_rate, cached_step = metrics(os.path.join(name, "cached"))
    teacher_bench = json.load(open(os.path.join(work, name, "bench-teacher.json")))
    student_bench = json.load(open(os.path.join(work, name, "bench-student.json")))
    size = os.path.getsize(os.path.join(work, name, "teacher-q4_0.gguf")) / 1e6
    lines.append(
        f"| {name} | {imported['parameters'] / 1e6:.1f}M | {measured[name + '-import']['seconds']:.1f} | "
        f"{gib(measured[name + '-import']['max_rss_kb']):.2f} GiB | {params(os.path.join(name, 'live')) / 1e6:.1f}M | "
        f"{live_rate:,.0f} | {gib(measured[name + '-distill-live']['max_rss_kb']):.2f} GiB | "
        f"{measured[name + '-cache']['seconds']:.0f} | {cached_rate:,.0f} | {100 * (1 - cached_step / live_step):.0f} % | "
        f"{size:.0f} | {teacher_bench['decode_tokens_per_s']:,.0f} | {student_bench['decode_tokens_per_s']:,.0f} |")
lines += ["", "Peak RSS of every step (GiB):", ""]
lines += [f"- {row['label']}: {gib(row['max_rss_kb']):.2f} GiB, {row['seconds']:.1f} s" for row in measured.values()]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
