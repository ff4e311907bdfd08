#!/usr/bin/env bash
# K-quants and importance matrices, ours against llama.cpp's own tools on the same machine and
# the same model: every file is judged by both evaluators on the same held-out text, and its size
# and decode speed are measured in both runtimes. Writes docs/results/kquants.md (or
# $RESULTS_DIR/kquants.md) through scripts/bench_kquants.py.
#
#   scripts/bench_kquants.sh                                  # the converged KJV teacher
#   MODEL=runs/my-run/final scripts/bench_kquants.sh
#
# Rows (each a GGUF file from the f32 export of MODEL):
#   ours:      edgedistill quantize --method rtn with --type q4_0 and the pure plan (every matrix
#              q4_0, like llama-quantize --pure), q4_k_m, q4_k_m --imatrix (ours, and llama's),
#              q5_k_m, q6_k; and --type q4_k_m with --method gptq, and with --method awq+gptq
#              --act-order (calibrated on the same 16,384 train tokens as our imatrix)
#   llama.cpp: llama-quantize --pure Q4_0, Q4_K_M, Q4_K_M --imatrix (llama's, and ours), Q5_K_M,
#              Q6_K
# Evaluators: `edgedistill verify` against the float checkpoint on the test split (perplexity
# change, KL, top-1, and the runtime's decode speed), and llama-perplexity on the same split's
# text (corpus/test.txt of the model's data) with the same 128-token windows, the same number of
# them; llama-bench gives llama.cpp's decode speed. The importance matrices come from the train split: ours from
# `edgedistill imatrix` (16,384 tokens in windows of 128), llama's from llama-imatrix on
# corpus/train.txt (128 chunks of 128 tokens).
#
# llama.cpp's tools come from scripts/llama_cpp_build.sh ($EDGEDISTILL_LLAMA_CPP_BUILD_DIR/bin,
# default ~/.cache/edgedistill/llama.cpp-build/bin). Without them the llama.cpp rows and columns
# are left out and the report says so.
#
# Environment: MODEL (default runs/reproduce/kjv/teacher), BENCH_DIR (runs/bench-kquants),
# RESULTS_DIR (docs/results), THREADS (all cores), EVAL_TOKENS (the first test tokens both
# evaluators score, in 128-token windows; default 16384), EDGEDISTILL_BUILD_DIR,
# EDGEDISTILL_LLAMA_CPP_BUILD_DIR; REUSE=1 keeps the files and measurements an earlier run left in
# BENCH_DIR and makes only what is missing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
bin=$build_dir/bin/edgedistill
model=${MODEL:-$repo/runs/reproduce/kjv/teacher}
work=${BENCH_DIR:-$repo/runs/bench-kquants}
results=${RESULTS_DIR:-$repo/docs/results}
threads=${THREADS:-$(nproc)}
eval_tokens=${EVAL_TOKENS:-16384}
llama_bin=${EDGEDISTILL_LLAMA_CPP_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgedistill/llama.cpp-build}/bin

die() { echo "bench_kquants: $*" >&2; exit 2; }
[[ -x $bin ]] || EDGEDISTILL_TARGETS="edgedistill edgedistill-data" "$repo/scripts/setup.sh"
meta=$model/model.json
[[ -f $meta ]] || meta=$model/final/model.json  # a run directory
[[ -f $meta ]] || die "no checkpoint at $model (model.json or final/model.json); train it (scripts/reproduce_tables.sh) or set MODEL"
data_dir=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_dir"])' "$meta")
[[ $data_dir == /* ]] || data_dir=$(dirname "$meta")/$data_dir
[[ -f $data_dir/corpus/test.txt && -f $data_dir/corpus/train.txt ]] ||
  die "the model's data $data_dir has no corpus/test.txt and corpus/train.txt"
have_llama=1
for tool in llama-quantize llama-imatrix llama-perplexity llama-bench; do
  [[ -x $llama_bin/$tool ]] || have_llama=0
done
if ((!have_llama)); then
  echo "bench_kquants: llama.cpp's tools are not built ($llama_bin); measuring ours only." >&2
  echo "  build them with: scripts/llama_cpp_build.sh SRC_DIR  (or --from-node-llama-cpp)" >&2
fi
mkdir -p "$work" "$results"
log=$work/bench.log
reuse=${REUSE:-0}
((reuse)) || : >"$log"
# True when REUSE=1 and every named file exists: the step is skipped.
done_already() {
  ((reuse)) || return 1
  local f
  for f in "$@"; do [[ -f $f ]] || return 1; done
}
step() { echo "== $*" | tee -a "$log"; }
run() { echo "\$ $*" >>"$log"; "$@" >>"$log" 2>&1 || die "failed: $* (see $log)"; }

float=$work/float-f32.gguf
step "f32 export of $model"
done_already "$float" || run "$bin" export --model "$model" --type f32 --out "$float"

step "importance matrices"
done_already "$work/ours.imatrix.gguf" ||
  run "$bin" imatrix --model "$model" --out "$work/ours.imatrix.gguf" --threads "$threads"
if ((have_llama)) && ! done_already "$work/llama.imatrix.gguf"; then
  run "$llama_bin/llama-imatrix" -m "$float" -f "$data_dir/corpus/train.txt" -c 128 --chunks 128 \
    -t "$threads" -o "$work/llama.imatrix.gguf"
fi

quantize_ours() {  # NAME METHOD ARGS...
  local name=$1 method=$2
  shift 2
  # Round-to-nearest needs no calibration; GPTQ calibrates on quantize's default 16,384 train
  # tokens, the budget of our imatrix.
  [[ $method == rtn ]] && set -- --calib-tokens 0 "$@"
  step "ours: $name"
  done_already "$work/ours-$name.gguf" ||
    run "$bin" quantize --model "$model" --method "$method" --no-eval --threads "$threads" \
      --out "$work/ours-$name.gguf" "$@"
}
quantize_ours q4_0-pure rtn --type q4_0 --plan "$repo/configs/quant/pure-q4_0.json"
quantize_ours q4_k_m rtn --type q4_k_m
quantize_ours q4_k_m-imatrix rtn --type q4_k_m --imatrix "$work/ours.imatrix.gguf"
if ((have_llama)); then
  quantize_ours q4_k_m-llama-imatrix rtn --type q4_k_m --imatrix "$work/llama.imatrix.gguf"
fi
quantize_ours q5_k_m rtn --type q5_k_m
quantize_ours q6_k rtn --type q6_k
quantize_ours q4_k_m-gptq gptq --type q4_k_m
quantize_ours q4_k_m-awq-gptq awq+gptq --type q4_k_m --act-order

if ((have_llama)); then
  quantize_llama() {  # NAME TYPE ARGS...
    local name=$1 type=$2
    shift 2
    step "llama.cpp: $name"
    done_already "$work/llama-$name.gguf" || run "$llama_bin/llama-quantize" "$@" "$float" "$work/llama-$name.gguf" "$type" "$threads"
  }
  quantize_llama q4_0-pure Q4_0 --pure
  quantize_llama q4_k_m Q4_K_M
  quantize_llama q4_k_m-imatrix Q4_K_M --imatrix "$work/llama.imatrix.gguf"
  quantize_llama q4_k_m-our-imatrix Q4_K_M --imatrix "$work/ours.imatrix.gguf"
  quantize_llama q5_k_m Q5_K_M
  quantize_llama q6_k Q6_K
fi

# Every file, in both evaluators and both runtimes.
for file in "$float" "$work"/ours-*.gguf "$work"/llama-*.gguf; do
  [[ -f $file ]] || continue
  stem=${file%.gguf}
  step "evaluate $(basename "$file")"
  if ((have_llama)); then
    done_already "$stem.verify.json" "$stem.llama-perplexity.txt" "$stem.llama-bench.json" &&
      grep -q "Final estimate" "$stem.llama-perplexity.txt" && continue
  else
    done_already "$stem.verify.json" && continue
  fi
  run "$bin" verify --model "$file" --reference "$model" --max-tokens "$eval_tokens" \
    --threads "$threads" --report "$stem.verify.json"
  if ((have_llama)); then
    echo "\$ llama-perplexity -m $file" >>"$log"
    # llama.cpp logs from a worker thread and now and then exits before the last lines (the
    # final estimate) are written, with status 0: run it again then.
    for attempt in 1 2 3; do
      "$llama_bin/llama-perplexity" -m "$file" -f "$data_dir/corpus/test.txt" -c 128 -b 128 \
        --chunks $((eval_tokens / 128)) -t "$threads" >"$stem.llama-perplexity.txt" 2>&1 ||
        die "llama-perplexity failed on $file (see $stem.llama-perplexity.txt)"
      grep -q "Final estimate" "$stem.llama-perplexity.txt" && break
    done
    grep -q "Final estimate" "$stem.llama-perplexity.txt" ||
      die "llama-perplexity printed no final estimate for $file three times (see $stem.llama-perplexity.txt)"
    echo "\$ llama-bench -m $file" >>"$log"
    "$llama_bin/llama-bench" -m "$file" -p 64 -n 32 -r 3 -t "$threads" -o json \
      >"$stem.llama-bench.json" 2>>"$log" || die "llama-bench failed on $file (see $log)"
  fi
done

/usr/bin/python3 "$repo/scripts/bench_kquants.py" --work "$work" --model "$model" \
  --threads "$threads" --llama "$((have_llama))" --out "$results/kquants.md"
echo "bench_kquants: wrote $results/kquants.md (files and logs in $work)"
