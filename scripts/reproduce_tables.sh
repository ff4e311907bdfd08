#!/usr/bin/env bash
# Reproduces the results tables in docs/results from nothing: trains every model they need (the
# converged teachers once, then cached in RUN_ROOT), measures them, and writes five tables, each
# with its figures (PNG), the exact commands, mean +- 95 % t-intervals over seeds and findings
# computed from its numbers, plus docs/results/headline.json (with a `findings` object).
#
#   Table 1  Hinton et al. (2015) on Fashion-MNIST: a 2 x 1200 dropout teacher trained 20,000
#            steps (cosine schedule), the 2 x 800 student from hard labels and distilled at T = 1,
#            4, 20.
#   Table 2  KJV language-model distillation: teacher-s trained to convergence (early stopping),
#            student-xs from scratch and with each loss (forward KL at T = 1 and 2, reverse KL,
#            skew KL, JSD, + hidden, + attention relation, + contrastive), at equal steps; gap
#            closed, and out-of-domain perplexity (WordNet glosses, licence texts).
#   Table 3  progressive layer dropping: time to a target perplexity and perplexity at equal
#            training time against forward KL, for a small sweep of theta_bar and gamma.
#   Table 4  teacher queries: random, entropy, margin, dropout disagreement and the learned policy
#            at 10, 25 and 50 % budgets, each against random at the same budget, in and out of domain,
#            and the learned policy's selection score against each sequence's gain from asking.
#   Table 5  quantizing the converged teacher: q8_0, q4_1, q4_0 x round-to-nearest, GPTQ, AWQ
#            (q4_0 calibrated with several seeds), scored in the runtime; speed per type.
#
# Usage: scripts/reproduce_tables.sh [--quick] [--list] [--help]
#
#   (default)  the full tables: RUN_ROOT runs/reproduce, results in docs/results/. Planned for
#              about 4 hours on 2 cores from nothing; the time each run took is kept in
#              RUN_ROOT/timings.json and the tables say it.
#   --quick    the same tables on fewer steps, seeds and tokens (teachers 100 / 1,000 steps,
#              students 20 / 500, seeds 1 2, the 25 % query budget only), 17 minutes measured on 2
#              cores from an empty RUN_ROOT (default runs/reproduce-quick),
#              results in docs/results/quick/ (the canonical tables are never touched). Each table
#              says it is the quick version.
#   --list     print every planned command and exit.
#
# Environment:
#   RUN_ROOT     where the runs go (default above). Finished runs there are reused and interrupted
#                ones resumed, so an interrupted invocation continues where it stopped.
#   RESULTS_DIR  where the tables, figures and headline.json go (default above). Only without it
#                does the run also write the README's results block (scripts/readme_results.py).
#   TABLES       which tables to run and write (default "1 2 3 4 5"; 3, 4 and 5 train table 2's
#                teacher when it is missing).
#   JOBS         runs at a time (default 2): each gets THREADS / JOBS threads, except the timed
#                runs (table 3's rows and the forward-KL baseline, table 5's speed), which run alone
#                with all threads.
#   THREADS      CPU threads in all (default: all cores).
#   ONLY         run only the jobs whose keys (--list shows them) start with one of these
#                comma-separated prefixes, e.g. ONLY=kjv/teacher, and write no tables.
#   REPORT_ONLY  1: run nothing; write the tables from the runs that exist (missing rows marked).
#   PLOTS        0 to skip the figures. They need gnuplot (Debian's gnuplot-nox), installed here
#                when missing and run as root; without it the tables are written without figures.
#   EDGEDISTILL_BUILD_DIR, EDGEDISTILL_SKIP_BUILD: as for scripts/setup.sh, which runs first.
#
# Run it on an otherwise idle machine: table 3's times and table 5's speeds are wall-clock.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

quick=0
list=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --list) list=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reproduce_tables: unknown argument '$arg'; usage: scripts/reproduce_tables.sh [--quick] [--list] [--help]" >&2; exit 2 ;;
  esac
done

if ((quick)); then
  mode=quick
  root=${RUN_ROOT:-$repo/runs/reproduce-quick}
  results=${RESULTS_DIR:-$repo/docs/results/quick}
else
  mode=full
  root=${RUN_ROOT:-$repo/runs/reproduce}
  results=${RESULTS_DIR:-$repo/docs/results}
fi
tables=${TABLES:-1 2 3 4 5}
report_only=${REPORT_ONLY:-0}
plots=${PLOTS:-1}
threads=${THREADS:-$(nproc)}
jobs=${JOBS:-2}

started=$(date +%s)
if [[ $report_only != 1 && $list != 1 ]]; then "$repo/scripts/setup.sh" > /dev/null; fi
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
edgedistill=$build_dir/bin/edgedistill
if [[ ! -x $edgedistill && $list != 1 ]]; then
  echo "reproduce_tables: no $edgedistill; build it with scripts/setup.sh (or set EDGEDISTILL_BUILD_DIR)" >&2
  exit 2
fi
# A full run takes hours and must outlive rebuilds of the tree (a relink removes the binary for a
# while): the runs use a copy of the programs taken now, under the run root.
if [[ $list != 1 && $report_only != 1 ]]; then
  snapshot=$root/.bin
  mkdir -p "$snapshot"
  for program in edgedistill edgedistill-data; do
    [[ -x $build_dir/bin/$program ]] || { echo "reproduce_tables: no $build_dir/bin/$program; build it with scripts/setup.sh" >&2; exit 2; }
    # Copy, then rename: a binary that an earlier run still executes is replaced, not rewritten.
    cp "$build_dir/bin/$program" "$snapshot/.$program.tmp"
    mv -f "$snapshot/.$program.tmp" "$snapshot/$program"
  done
  edgedistill=$snapshot/edgedistill
fi
args=(--repo "$repo" --edgedistill "$edgedistill" --mode "$mode" --run-root "$root" --results "$results"
  --tables "$tables" --jobs "$jobs" --threads "$threads" --plots "$plots")
if ((list)); then exec /usr/bin/python3 "$repo/scripts/reproduce_tables.py" "${args[@]}" --list; fi
if [[ $report_only == 1 ]]; then args+=(--report-only); fi
if [[ -n ${ONLY:-} ]]; then args+=(--only "$ONLY"); fi

if [[ $plots == 1 ]] && ! command -v gnuplot > /dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing gnuplot-nox for the figures"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends gnuplot-nox > /dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends gnuplot-nox > /dev/null; }; } ||
      echo "reproduce_tables: warning: could not install gnuplot-nox; writing the tables without figures" >&2
  else
    echo "reproduce_tables: warning: gnuplot is missing and this is not root; writing the tables without figures (apt-get install gnuplot-nox)" >&2
  fi
fi
/usr/bin/python3 "$repo/scripts/reproduce_tables.py" "${args[@]}" --program "$("$edgedistill" --version)"
# The README's results block comes from the canonical results only, never from a RESULTS_DIR
# elsewhere (a test run's tables would otherwise be linked from the README).
if [[ -z ${RESULTS_DIR:-} && $mode == full && -z ${ONLY:-} ]]; then
  /usr/bin/python3 "$repo/scripts/readme_results.py" "$results/headline.json" "$repo/README.md"
fi
elapsed=$(($(date +%s) - started))
echo "== reproduce_tables ($mode) done in $((elapsed / 60))m$((elapsed % 60))s; results in ${results#"$repo"/}"
