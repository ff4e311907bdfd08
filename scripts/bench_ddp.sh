#!/usr/bin/env bash
# Data-parallel training on this machine, measured in one run: training throughput of 1 rank x
# all threads against N ranks x (threads / N) at the same global batch, the share of the
# data-parallel step spent in collectives, the all-reduce bandwidth between the ranks, and a
# projection of step time and efficiency at 8 and 64 ranks for the 8M KJV teacher and a 135M
# model from those measurements and stated network bandwidths. Writes docs/results/ddp.md (or
# $RESULTS_DIR/ddp.md).
#
#   scripts/bench_ddp.sh
#   RECIPE=configs/recipes/teacher-kjv.json STEPS=40 ROUNDS=3 scripts/bench_ddp.sh
#
# Each round trains RECIPE for STEPS steps (no evaluation or checkpoints; the rate excludes the
# start) once as 1 rank with THREADS threads and batch B x N, once as `edgedistill launch --nproc
# N` with THREADS / N threads per rank and batch B, interleaved; the report takes the medians.
# Environment: RECIPE (configs/recipes/teacher-kjv.json), STEPS (40), ROUNDS (3), RANKS (2),
# BATCH (per-rank batch, 8), THREADS (all cores), BENCH_DIR (runs/bench-ddp), RESULTS_DIR
# (docs/results), EDGEDISTILL_BUILD_DIR; REPORT_ONLY=1 rewrites the report from the runs in
# BENCH_DIR. Run it on an otherwise idle machine.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${EDGEDISTILL_BUILD_DIR:-$repo/build}
bin=$build_dir/bin/edgedistill
recipe=${RECIPE:-$repo/configs/recipes/teacher-kjv.json}
steps=${STEPS:-40}
rounds=${ROUNDS:-3}
ranks=${RANKS:-2}
batch=${BATCH:-8}
threads=${THREADS:-$(nproc)}
work=${BENCH_DIR:-$repo/runs/bench-ddp}
results=${RESULTS_DIR:-$repo/docs/results}

if [[ ! -x $bin ]]; then
  echo "bench_ddp: no $bin; build with scripts/setup.sh (or set EDGEDISTILL_BUILD_DIR)" >&2
  exit 2
fi
if ((threads % ranks != 0)); then
  echo "bench_ddp: THREADS=$threads is not a multiple of RANKS=$ranks" >&2
  exit 2
fi
common=(--config "$recipe" --set "train.steps=$steps" --set train.eval_every=0
  --set train.checkpoint_every=0 --set train.log_every=10)
mkdir -p "$results"
if [[ ${REPORT_ONLY:-0} != 1 ]]; then
  rm -rf "$work"
  mkdir -p "$work"
  cut -d' ' -f1 /proc/loadavg > "$work/load_before"
  for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds: 1 rank x $threads threads, batch $((batch * ranks))" >&2
    "$bin" -q train "${common[@]}" --run-dir "$work/one-r$round" --threads "$threads" \
      --set "train.batch_size=$((batch * ranks))" > /dev/null
    echo "== round $round of $rounds: $ranks ranks x $((threads / ranks)) threads, batch $batch" >&2
    "$bin" -q launch --nproc "$ranks" -- train "${common[@]}" --run-dir "$work/ddp-r$round" \
      --threads "$((threads / ranks))" --set "train.batch_size=$batch" > /dev/null
  done
  echo "== all-reduce bandwidth, $ranks ranks" >&2
  "$bin" -q launch --nproc "$ranks" -- bench --allreduce -r 20 --json \
    --report "$work/allreduce.json" > /dev/null
  cut -d' ' -f1 /proc/loadavg > "$work/load_after"
fi
load_before=$(cat "$work/load_before")
load_after=$(cat "$work/load_after")

/usr/bin/python3 - "$work" "$results/ddp.md" "$rounds" "$ranks" "$threads" "$batch" "$steps" \
  "$recipe" "$load_before" "$load_after" "$repo" <<'EOF'
import json, os, platform, statistics, struct, subprocess, sys
work, out, rounds, ranks, threads, batch, steps, recipe, load_before, load_after, repo = sys.argv[1:]
rounds, ranks, threads, batch, steps = map(int, (rounds, ranks, threads, batch, steps))

def result(name):
    return json.load(open(os.path.join(work, name, "result.json")))

one = [result(f"one-r{r}") for r in range(1, rounds + 1)]
ddp = [result(f"ddp-r{r}") for r in range(1, rounds + 1)]
one_rate = statistics.median(r["tok_per_s"] for r in one)
ddp_rate = statistics.median(r["tok_per_s"] for r in ddp)
one_step = statistics.median(r["step_s"] for r in one)
ddp_step = statistics.median(r["step_s"] for r in ddp)
comm = statistics.median(r["communication_s"] / max(1e-9, r["train_seconds"]) for r in ddp)
allreduce = json.load(open(os.path.join(work, "allreduce.json")))
sizes = allreduce["sizes"]
# The smallest buffer is nearly all latency, the largest nearly all bandwidth.
small, large = sizes[0], sizes[-1]
bus_bw = large["busbw_gb_s"] * 1e9
latency = small["seconds"] / (2 * (ranks - 1))  # per ring hop
# Parameters: counted from the final weights' safetensors header.
with open(os.path.join(work, "one-r1", "final", "weights.safetensors"), "rb") as w:
    header = json.loads(w.read(struct.unpack("<Q", w.read(8))[0]))
params = 0
for name, entry in header.items():
    if name != "__metadata__":
        count = 1
        for d in entry["shape"]:
            count *= d
        params += count
git = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                     text=True).stdout.strip()

def ring(n, grad_bytes, bw, lat):
    return 2 * (n - 1) / n * grad_bytes / bw + 2 * (n - 1) * lat

# Compute time per step per rank at `batch` sequences: the measured 1-rank step at batch x ranks
# with all threads, scaled to one rank's share; a 135M model scales it by the parameter ratio
# (training FLOPs ~ 6 x parameters x tokens).
compute_8m = one_step / ranks
models = [("KJV teacher-s", params, compute_8m),
          ("135M (SmolLM2-135M-sized)", 135e6, compute_8m * 135e6 / params)]
networks = [("measured here (localhost, Gloo)", bus_bw, latency),
            ("10 GbE", 1.25e9, 50e-6),
            ("100 GbE / IB", 12.5e9, 10e-6)]
lines = []
add = lines.append
add("# Data-parallel training (c10d, Gloo)")
add("")
add(f"Generated by `scripts/bench_ddp.sh` at {git} on {platform.node()}: {os.cpu_count()} "
    f"cores, load average {load_before} before and {load_after} after. Recipe "
    f"`{os.path.relpath(recipe, repo)}` ({params / 1e6:.1f}M parameters), {steps} steps per run, "
    f"{rounds} interleaved rounds, medians. Rates exclude start-up; no evaluation or "
    f"checkpoints.")
add("")
add("## Throughput at equal total threads")
add("")
add("| layout | global batch | tokens/s | step (s) | ratio |")
add("|---|---|---|---|---|")
add(f"| 1 rank x {threads} threads | {batch * ranks} | {one_rate:,.0f} | {one_step:.3f} | 1.00 |")
add(f"| {ranks} ranks x {threads // ranks} thread{'s' if threads // ranks > 1 else ''} | "
    f"{batch} x {ranks} | {ddp_rate:,.0f} | {ddp_step:.3f} | {ddp_rate / one_rate:.2f} |")
add("")
goal = "meets" if ddp_rate / one_rate >= 0.9 else "misses"
add(f"{ranks} ranks reach **{ddp_rate / one_rate:.2f}x** the 1-rank throughput (goal >= 0.9x: "
    f"{goal} it). Rank 0 spends **{100 * comm:.1f} %** of its training time in collectives "
    f"(the step agreement and the gradient all-reduce, {4 * params / 1e6:.0f} MB of float32 "
    f"gradients per step, after the backward pass).")
add("")
add(f"## All-reduce between {ranks} ranks (`edgedistill launch --nproc {ranks} -- bench "
    f"--allreduce -r 20`)")
add("")
add("| bytes | time (us) | algbw (GB/s) | busbw (GB/s) |")
add("|---|---|---|---|")
for row in sizes:
    add(f"| {row['bytes']:,} | {row['seconds'] * 1e6:,.1f} | {row['algbw_gb_s']:.3f} | "
        f"{row['busbw_gb_s']:.3f} |")
add("")
add("busbw = 2(n - 1)/n x bytes / time, the rate each link carries in a ring all-reduce.")
add("")
add("## Projection to 8 and 64 ranks")
add("")
add("Step time per rank = compute + ring all-reduce of the float32 gradients, "
    "2(n - 1)/n x bytes / bandwidth + 2(n - 1) x latency, not overlapped with the backward pass "
    "(as implemented); efficiency = compute / step. Compute per rank at batch "
    f"{batch}: the measured 1-rank step above divided by {ranks} ({compute_8m * 1e3:.0f} ms) for "
    "the KJV teacher; for 135M parameters scaled by the parameter ratio (training FLOPs ~ 6 x "
    "parameters x tokens), i.e. this CPU's rate. Latencies: measured (smallest buffer over "
    f"2(n - 1) hops: {latency * 1e6:.0f} us), 50 us for 10 GbE, 10 us for 100 GbE / IB (stated, "
    "not measured).")
add("")
add("| model | gradients | network | ranks | compute (s) | all-reduce (s) | step (s) | efficiency |")
add("|---|---|---|---|---|---|---|---|")
for name, n_params, compute in models:
    grad_bytes = 4 * n_params
    for net, bw, lat in networks:
        for n in (8, 64):
            t = ring(n, grad_bytes, bw, lat)
            add(f"| {name} | {grad_bytes / 1e6:,.0f} MB | {net} ({bw / 1e9:.2f} GB/s) | {n} | "
                f"{compute:.3f} | {t:.3f} | {compute + t:.3f} | {100 * compute / (compute + t):.0f} % |")
add("")
reading = []
for name, n_params, compute in models:
    t = ring(64, 4 * n_params, 1.25e9, 50e-6)
    reading.append(f"{name}: {t:.2f} s of all-reduce on a {compute:.2f} s step "
                   f"({100 * compute / (compute + t):.0f} % efficiency)")
add("Reading: at 64 ranks on 10 GbE, " + "; ".join(reading) + ". Overlapping the all-reduce "
    "with the backward pass (about two thirds of the compute) would hide all of it in both "
    "cases; it is not implemented, since here, with one core per rank, Gloo's transfers would "
    "compete with the backward pass for the same cores.")
add("")
add(f"The {100 * comm:.1f} % of rank 0's time in collectives measured above is more than its "
    f"share of the bandwidth ({4 * params / 1e6:.0f} MB at {bus_bw / 1e9:.2f} GB/s = "
    f"{4 * params / bus_bw * 1e3:.0f} ms of a {ddp_step * 1e3:.0f} ms step): it includes the "
    "time a rank waits for the other to finish its backward pass.")
open(out + ".tmp", "w").write("\n".join(lines) + "\n")
os.replace(out + ".tmp", out)
print(f"bench_ddp: wrote {out}", file=sys.stderr)
EOF
