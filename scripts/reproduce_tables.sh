#!/usr/bin/env bash
# Reproduces the README's three results tables from nothing: trains every model they need, measures
# them, and writes the tables (each row with the exact command that produced it, its seeds, mean
# and spread), PNG plots and a machine-readable summary of the headline numbers.
#
#   Table 1  the Hinton et al. (2015) experiment on Fashion-MNIST: the teacher MLP, the student
#            from hard labels, the student distilled at T = 1, 4, 20; test errors per seed, mean,
#            standard deviation and range, beside Hinton's MNIST numbers (67 / 146 / 74).
#   Table 2  language-model distillation on KJV (teacher-s -> student-xs): scratch, forward KL,
#            reverse KL, skew KL, + hidden + contrastive, + layer dropping, teacher queries at
#            25 %; validation perplexity, parameters, training time, teacher FLOPs.
#   Table 3  compressing the KJV teacher: float, q8_0, q4_0 round-to-nearest, GPTQ, AWQ, and
#            pruned + healed + GPTQ q4_0; file size, perplexity, KL to the float teacher, top-1
#            agreement, prefill and decode tokens/s in edgedistill's runtime.
#
# Usage: scripts/reproduce_tables.sh [--quick] [--help]
#
#   (default)  the full tables as the recipes ship: RUN_ROOT runs/reproduce, results in
#              docs/results/ (table1_hinton_fmnist.md, table2_distill_kjv.md,
#              table3_compression.md, *.png, headline.json). About 2 to 2.5 hours on 2 cores
#              from nothing (KJV: 7 rows x 3 seeds of ~5 minutes), less with REUSE.
#   --quick    a reduced version, about 15 minutes on 2 cores: RUN_ROOT runs/reproduce-quick,
#              results in docs/results/quick/ (the canonical tables are never touched). Fashion-MNIST
#              seeds 1 2, teacher 1,000 steps, students 700 (recipes: 6,000 and 3,000), no 2 x 30
#              student; KJV teacher 150 steps (300), students 50 (300), one seed, validation on the
#              first 16,384 tokens every 25 steps; healing 40 steps (200); table 3 scored on the
#              first 8,192 test tokens, speed measured in 1 round (5). Each table says so.
#
# Environment:
#   RUN_ROOT      where the runs go (default above); finished runs there are reused (--resume), so
#                 an interrupted invocation continues where it stopped.
#   RESULTS_DIR   where the tables, plots and headline.json go (default above). Only without it
#                 does the run also write the README's results block (scripts/readme_results.py).
#   TABLES        which tables to run and write (default "1 2 3").
#   THREADS       CPU threads for every command (default: all cores).
#   FMNIST_SEEDS  (full "1 2 3", quick "1 2"), TEMPS (default "1 4 20"), KJV_SEEDS (full
#                 "1234 1 2", quick "1234"; 1234 is the recipes' own seed). KJV seeds vary the
#                 students; the teacher is one run (seed 1234).
#   REUSE         1 (full mode's default): before training a run, reuse a finished run elsewhere on
#                 this machine made by the same command (runs/quickstart/teacher,
#                 runs/bench-techniques/{full,pld,q-entropy-25}, runs/bench-distill-kjv/*,
#                 runs/bench-distill-fmnist/*, runs/bench-prune/structured{,-healed}): it is used
#                 when `--resume` there accepts the same config and teacher without training.
#                 0 (quick's default): train everything in RUN_ROOT.
#   REPORT_ONLY   1: run nothing; write the tables from the runs that exist (missing rows marked;
#                 with REUSE, a finished run elsewhere is taken as found, without the check).
#   EVAL_TOKENS   table 3's test tokens (full 0 = the whole test split, quick 8192).
#   SPEED_ROUNDS  table 3's speed rounds, models measured in turn, median shown (full 5, quick 1).
#   PLOTS         0 to skip the plots. They need gnuplot (Debian's gnuplot-nox), installed here
#                 when missing and run as root; without it the tables are written without plots.
#   EDGEDISTILL_BUILD_DIR, EDGEDISTILL_SKIP_BUILD: as for scripts/setup.sh, which runs first.
#
# Run it on an otherwise idle machine: the time and speed columns are wall-clock.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reproduce_tables: unknown argument '$arg'; usage: scripts/reproduce_tables.sh [--quick] [--help]" >&2; exit 2 ;;
  esac
done

if ((quick)); then
  mode=quick
  root=${RUN_ROOT:-$repo/runs/reproduce-quick}
  results=${RESULTS_DIR:-$repo/docs/results/quick}
  fmnist_seeds=${FMNIST_SEEDS:-1 2}
  kjv_seeds=${KJV_SEEDS:-1234}
  reuse=${REUSE:-0}
  eval_tokens=${EVAL_TOKENS:-8192}
  rounds=${SPEED_ROUNDS:-1}
  small=0
  # The --set overrides of the quick version, per kind of run (the recipes' values in brackets).
  fmnist_teacher_sets=(--set train.steps=1000)        # 6000
  fmnist_student_sets=(--set train.steps=700)         # 3000
  kjv_teacher_sets=(--set train.steps=150 --set train.eval_every=25 --set train.eval_tokens=16384)  # 300, 50, all
  kjv_student_sets=(--set train.steps=50 --set train.eval_every=25 --set train.eval_tokens=16384)   # 300, 100, all
  heal_sets=(--set train.steps=40 --set train.eval_every=0 --set train.eval_tokens=16384)           # 200, 100, all
  prune_eval=(--eval-tokens 16384)
else
  mode=full
  root=${RUN_ROOT:-$repo/runs/reproduce}
  results=${RESULTS_DIR:-$repo/docs/results}
  fmnist_seeds=${FMNIST_SEEDS:-1 2 3}
  kjv_seeds=${KJV_SEEDS:-1234 1 2}
  reuse=${REUSE:-1}
  eval_tokens=${EVAL_TOKENS:-0}
  rounds=${SPEED_ROUNDS:-5}
  small=1
  fmnist_teacher_sets=() fmnist_student_sets=() kjv_teacher_sets=() kjv_student_sets=() heal_sets=()
  prune_eval=()
fi
temps=${TEMPS:-1 4 20}
tables=${TABLES:-1 2 3}
report_only=${REPORT_ONLY:-0}
plots=${PLOTS:-1}
threads=${THREADS:-0}
# bench takes no 0 for "all cores"; every command gets --threads only when THREADS is set.
threads_flag=()
if ((threads > 0)); then threads_flag=(--threads "$threads"); fi

started=$(date +%s)
if [[ $report_only != 1 ]]; then "$repo/scripts/setup.sh" > /dev/null; fi
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
edgedistill=$build_dir/bin/edgedistill
if [[ ! -x $edgedistill ]]; then
  echo "reproduce_tables: no $edgedistill; build it with scripts/setup.sh (or set EDGEDISTILL_BUILD_DIR)" >&2
  exit 2
fi
recipes=$repo/configs/recipes
mkdir -p "$root" "$results"
manifest=$root/manifest.tsv
: > "$manifest"

selected() { [[ " $tables " == *" $1 "* ]]; }

# The command as a reader would type it: repository paths relative, the program as `edgedistill`.
show() {
  local text="edgedistill" arg
  for arg in "$@"; do text+=" ${arg//"$repo/"/}"; done
  printf '%s' "$text"
}

# record TABLE ROW SEED LABEL PATH COMMAND...: one manifest line (tab-separated) for the formatter.
record() {
  local table=$1 row=$2 seed=$3 label=$4 path=$5
  shift 5
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$table" "$row" "$seed" "$label" "${path#"$repo"/}" "$(show "$@")" >> "$manifest"
}

# logged LOG ARGS...: runs `edgedistill ARGS` with its output in LOG; on failure shows the end of
# LOG and stops with the command's exit status.
logged() {
  local log=$1 status=0
  shift
  mkdir -p "$(dirname "$log")"
  "$edgedistill" "$@" > "$log" 2>&1 || status=$?
  if ((status != 0)); then
    tail -n 20 "$log" >&2
    echo "reproduce_tables: exit $status from: $(show "$@")  (log: $log)" >&2
    exit "$status"
  fi
}

# Finished runs elsewhere that run_row may reuse for its next run (set just before calling it).
reuse_from=()

# run_row TABLE ROW SEED LABEL DIR ARGS...: makes sure the run `edgedistill ARGS --run-dir DIR
# --resume` is finished, or finds a finished run in reuse_from that the same command accepts
# without training (`--resume` refuses a different config or teacher), and records it. Sets `run`
# to the run directory used.
run_row() {
  local table=$1 row=$2 seed=$3 label=$4 dir=$5
  shift 5
  local candidate name=$label
  if [[ $seed != - ]]; then name+=" (seed $seed)"; fi
  run=$dir
  if [[ ! -f $dir/result.json ]]; then
    for candidate in "${reuse_from[@]}"; do
      [[ $reuse == 1 && -f $candidate/result.json ]] || continue
      if [[ $report_only == 1 ]] || "$edgedistill" -q "$@" --run-dir "$candidate" --resume > /dev/null 2>&1; then
        run=$candidate
        echo "== $name: $([[ $report_only == 1 ]] && echo using || echo reusing) ${candidate#"$repo"/}"
        break
      fi
    done
  fi
  reuse_from=()
  if [[ $run == "$dir" && $report_only != 1 ]]; then
    echo "== $name: ${dir#"$repo"/}"
    logged "$root/logs/table$table-$row-s$seed.log" "$@" --run-dir "$dir" --resume "${threads_flag[@]}"
    grep -E '^ +(accuracy|perplexity|teacher):' "$root/logs/table$table-$row-s$seed.log" || true
  fi
  record "$table" "$row" "$seed" "$label" "$run" "$@" --run-dir "$run" --resume
}

# ---- Table 1: the Hinton experiment on Fashion-MNIST ------------------------------------------
if selected 1; then
  fm=$root/fmnist
  bench=$repo/runs/bench-distill-fmnist
  for seed in $fmnist_seeds; do
    reuse_from=("$bench/teacher-s$seed")
    run_row 1 teacher "$seed" "teacher 2 x 1200, dropout" "$fm/teacher-s$seed" \
      train --config "$recipes/teacher-fmnist.json" --set seed="$seed" "${fmnist_teacher_sets[@]}"
    teacher=$run
    reuse_from=("$bench/scratch-s$seed")
    run_row 1 scratch "$seed" "student 2 x 800, hard labels" "$fm/scratch-s$seed" \
      train --config "$recipes/student-fmnist-scratch.json" --set seed="$seed" "${fmnist_student_sets[@]}"
    for t in $temps; do
      reuse_from=("$bench/distill-T$t-s$seed")
      run_row 1 "distill-T$t" "$seed" "student 2 x 800, distilled at T = $t" "$fm/distill-T$t-s$seed" \
        distill --config "$recipes/distill-fmnist.json" --set seed="$seed" \
        --set "distill.losses[0].temperature=$t" "${fmnist_student_sets[@]}" --teacher "$teacher"
    done
    if ((small)); then
      reuse_from=("$bench/small-scratch-s$seed")
      run_row 1 small-scratch "$seed" "student 2 x 30, hard labels" "$fm/small-scratch-s$seed" \
        train --config "$recipes/student-fmnist-scratch.json" --set seed="$seed" \
        --set model="$repo/configs/models/mlp-30.json" "${fmnist_student_sets[@]}"
      reuse_from=("$bench/small-distill-s$seed")
      run_row 1 small-distill "$seed" "student 2 x 30, distilled at T = 1" "$fm/small-distill-s$seed" \
        distill --config "$recipes/distill-fmnist.json" --set seed="$seed" \
        --set model="$repo/configs/models/mlp-30.json" "${fmnist_student_sets[@]}" --teacher "$teacher"
    fi
  done
fi

# ---- Table 2: language-model distillation on KJV ----------------------------------------------
kjv=$root/kjv
teacher=
if selected 2 || selected 3; then
  reuse_from=("$repo/runs/quickstart/teacher" "$repo/runs/bench-distill-kjv/teacher")
  run_row 2 teacher 1234 "teacher (teacher-s)" "$kjv/teacher" \
    train --config "$recipes/teacher-kjv.json" "${kjv_teacher_sets[@]}"
  teacher=$run
fi
if selected 2; then
  techniques=$repo/runs/bench-techniques
  distill_kjv=$repo/runs/bench-distill-kjv
  # row | label | recipe | runs elsewhere made by the same recipe at seed 1234
  kjv_rows=(
    "forward-kl|forward KL + CE|distill-kjv|$techniques/full $distill_kjv/distill-kjv"
    "reverse-kl|reverse KL + CE|distill-kjv-reverse-kl|$distill_kjv/distill-kjv-reverse-kl"
    "skew-kl|skew KL + CE|distill-kjv-skew-kl|$distill_kjv/distill-kjv-skew-kl"
    "hidden-contrastive|forward KL + CE + hidden + contrastive|distill-kjv-hidden-contrastive|$distill_kjv/distill-kjv-hidden-contrastive"
    "layer-drop|forward KL + CE, progressive layer dropping|distill-kjv-pld|$techniques/pld"
    "queries-25|forward KL + CE, teacher queried for 25 % of sequences (entropy)|distill-kjv-queries|$techniques/q-entropy-25"
  )
  for seed in $kjv_seeds; do
    reuse_from=()
    if [[ $seed == 1234 ]]; then reuse_from=("$distill_kjv/scratch"); fi
    run_row 2 scratch "$seed" "student from scratch (hard labels)" "$kjv/scratch-s$seed" \
      train --config "$recipes/student-kjv-scratch.json" --set seed="$seed" "${kjv_student_sets[@]}"
    for row in "${kjv_rows[@]}"; do
      IFS='|' read -r name label recipe candidates <<< "$row"
      reuse_from=()
      # shellcheck disable=SC2206  # the candidates are space-separated paths
      if [[ $seed == 1234 ]]; then reuse_from=($candidates); fi
      run_row 2 "$name" "$seed" "$label" "$kjv/$name-s$seed" \
        distill --config "$recipes/$recipe.json" --set seed="$seed" "${kjv_student_sets[@]}" \
        --teacher "$teacher"
    done
  done
fi

# ---- Table 3: compressing the KJV teacher -----------------------------------------------------
if selected 3; then
  compress=$root/compress
  mkdir -p "$compress"
  teacher_final=$(cd "$teacher/final" && pwd -P)
  # The pruned teacher: reused when a prune.json there says it was cut from this teacher the same way.
  pruned=$compress/pruned
  prune_args=(prune --model "$teacher" --method structured --ffn 0.25 --heads 0.25 "${prune_eval[@]}")
  pruned_by_us() {
    /usr/bin/python3 - "$1/prune.json" "$teacher_final" <<'PY'
import json, os, sys
try:
    report = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(1)
same = (report.get("method") == "structured" and report.get("target") == "heads 0.25, ffn 0.25, layers 0"
        and os.path.realpath(report.get("model", "")) == sys.argv[2])
sys.exit(0 if same else 1)
PY
  }
  if [[ $reuse == 1 ]] && ! pruned_by_us "$pruned" && pruned_by_us "$repo/runs/bench-prune/structured"; then
    pruned=$repo/runs/bench-prune/structured
    echo "== pruned teacher: reusing ${pruned#"$repo"/}"
  elif [[ $report_only != 1 ]] && ! pruned_by_us "$pruned"; then
    echo "== pruning the teacher (structured, FFN 25 %, heads 25 %)"
    rm -rf "$pruned"
    logged "$root/logs/prune.log" "${prune_args[@]}" "${threads_flag[@]}" --out "$pruned"
  fi
  record 3-prep prune - "structured pruning" "$pruned" "${prune_args[@]}" --out "$pruned"
  if [[ $pruned == "$repo/runs/bench-prune/structured" ]]; then reuse_from=("$repo/runs/bench-prune/structured-healed"); fi
  run_row 3-prep heal - "healing by distillation from the teacher" "$compress/healed" \
    distill --config "$recipes/heal-kjv.json" --teacher "$teacher" --student "$pruned" "${heal_sets[@]}"
  healed=$run

  # row | label | model | edgedistill command writing OUT
  compress_rows=(
    "float|float32 (GGUF f32)|$teacher|export --type f32"
    "q8_0|q8_0 round-to-nearest|$teacher|quantize --method rtn --type q8_0 --no-eval"
    "q4_0-rtn|q4_0 round-to-nearest|$teacher|quantize --method rtn --type q4_0 --no-eval"
    "q4_0-gptq|q4_0 GPTQ|$teacher|quantize --method gptq --type q4_0 --no-eval"
    "q4_0-awq|q4_0 AWQ|$teacher|quantize --method awq --type q4_0 --no-eval"
    "pruned-healed-q4_0-gptq|pruned + healed, q4_0 GPTQ|$healed|quantize --method gptq --type q4_0 --no-eval"
  )
  verify_args=(verify --reference "$teacher" --split test --max-tokens "$eval_tokens" --no-bench)
  bench_args=(bench -p 64 -n 64 -r 5 --json)
  for row in "${compress_rows[@]}"; do
    IFS='|' read -r name label model how <<< "$row"
    out=$compress/$name
    # shellcheck disable=SC2206  # how holds whole options
    make_args=($how --model "$model" --out "$out/model.gguf")
    # export has no --threads; quantize does.
    make_threads=()
    if [[ $how == quantize* ]]; then make_threads=("${threads_flag[@]}"); fi
    if [[ $report_only != 1 ]]; then
      echo "== $label: $(show "${make_args[@]}")"
      mkdir -p "$out"
      rm -f "$out"/bench-round-*.json
      logged "$out/make.log" "${make_args[@]}" "${make_threads[@]}"
      logged "$out/verify.log" "${verify_args[@]}" --model "$out/model.gguf" --report "$out/verify.json" \
        "${threads_flag[@]}"
    fi
    record 3 "$name" - "$label" "$out" "${make_args[@]}"
  done
  record 3-prep verify - "accuracy against the float teacher" "$compress" "${verify_args[@]}" --model ROW/model.gguf
  record 3-prep bench - "speed" "$compress" "${bench_args[@]}" --model ROW/model.gguf
  # Speed: the models measured in turn, round after round, so a slow spell of a shared machine falls
  # on all of them alike; the table shows each model's median round and the rounds' range.
  if [[ $report_only != 1 ]]; then
    for round in $(seq "$rounds"); do
      echo "== speed, round $round of $rounds"
      for row in "${compress_rows[@]}"; do
        out=$compress/${row%%|*}
        "$edgedistill" "${bench_args[@]}" --model "$out/model.gguf" "${threads_flag[@]}" > "$out/bench-round-$round.json"
      done
    done
  fi
fi

# ---- the tables, plots and headline summary ---------------------------------------------------
if [[ $plots == 1 ]] && ! command -v gnuplot > /dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing gnuplot-nox for the plots"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends gnuplot-nox > /dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends gnuplot-nox > /dev/null; }; } ||
      echo "reproduce_tables: warning: could not install gnuplot-nox; writing the tables without plots" >&2
  else
    echo "reproduce_tables: warning: gnuplot is missing and this is not root; writing the tables without plots (apt-get install gnuplot-nox)" >&2
  fi
fi
elapsed=$(($(date +%s) - started))
/usr/bin/python3 "$repo/scripts/reproduce_tables.py" --repo "$repo" --manifest "$manifest" \
  --results "$results" --mode "$mode" --tables "$tables" --plots "$plots" --eval-tokens "$eval_tokens" \
  --rounds "$rounds" --threads "$threads" --seconds "$elapsed" --report-only "$report_only" \
  --program "$("$edgedistill" --version)"
# The README's results block comes from the canonical results only, never from a RESULTS_DIR
# elsewhere (a test run's tables would otherwise be linked from the README).
if [[ -z ${RESULTS_DIR:-} ]]; then
  /usr/bin/python3 "$repo/scripts/readme_results.py" "$results/headline.json" "$repo/README.md"
fi
echo "== reproduce_tables ($mode) done in $((elapsed / 60))m$((elapsed % 60))s; results in ${results#"$repo"/}"
