#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with libFuzzer: builds the targets in fuzz/ with clang,
# AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage (a separate build tree of
# the LibTorch-free libraries), makes seed corpora from the project's own files
# (fuzz/make_seeds.py), runs each target for SECONDS and exits 1 when any of them found a crash,
# a leak, a sanitizer report, an uncaught exception or a timeout. Bad input may only end in
# edgedistill's typed errors (the one-line exit-2 messages).
#
#   scripts/fuzz.sh 20                 # about 20 s per target
#   TARGETS="fuzz_gguf" scripts/fuzz.sh 3600
#
# Targets: fuzz_gguf (GGUF reader and GGUF vocabularies), fuzz_safetensors, fuzz_tokenizer_json
# (tokenizer.json + tokenizer_config.json), fuzz_sentencepiece (SentencePiece models), fuzz_config
# (the config binding with --set overrides and its to_json round trip).
# Environment: TARGETS (all), FUZZ_BUILD_DIR (build-fuzz), FUZZ_DIR (runs/fuzz: corpora, logs,
# crash inputs under crashes/), FUZZ_JOBS (compile jobs, nproc). Installs clang and
# libclang-rt-14-dev when missing and run as root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-20}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "fuzz: SECONDS must be a whole number >= 1; usage: scripts/fuzz.sh SECONDS" >&2
  exit 2
fi
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
work=${FUZZ_DIR:-$repo/runs/fuzz}
targets=${TARGETS:-fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_sentencepiece fuzz_config}

missing=()
command -v clang++ > /dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a > /dev/null 2>&1 ||
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-aarch64.a > /dev/null 2>&1 ||
  missing+=(libclang-rt-14-dev)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "fuzz: missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

mkdir -p "$work/logs"
if [[ ! -f $build/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DEDGEDISTILL_RUNTIME_ONLY=ON -DEDGEDISTILL_TESTS=OFF -DEDGEDISTILL_SANITIZE=ON \
    -DEDGEDISTILL_FUZZ=ON > "$work/logs/configure.log" 2>&1 ||
    { echo "fuzz: configuring $build failed; see $work/logs/configure.log" >&2; exit 1; }
fi
# shellcheck disable=SC2086
cmake --build "$build" --parallel "${FUZZ_JOBS:-$(nproc)}" --target $targets > "$work/logs/build.log" 2>&1 ||
  { echo "fuzz: building the targets failed; see $work/logs/build.log" >&2; exit 1; }

rm -rf "$work/seeds"
/usr/bin/python3 "$repo/fuzz/make_seeds.py" "$work/seeds"
mkdir -p "$work/crashes"
failed=()
for target in $targets; do
  corpus=$work/corpus/$target
  mkdir -p "$corpus"
  cp -n "$work/seeds/$target"/* "$corpus"/ 2> /dev/null || true
  log=$work/logs/$target.log
  # -timeout: one input may take at most 10 s; -rss_limit_mb: a reader that allocates what a
  # corrupt count says is a finding; leaks are findings (ASan's leak check at exit).
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$build/bin/$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/crashes/$target-" > "$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  printf 'fuzz: %-22s %-6s %10s execs  cov %6s  corpus %5d  (log %s)\n' "$target" "$status" \
    "$execs" "$cov" "$(ls "$corpus" | wc -l)" "$log" >&2
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]}: inputs under $work/crashes, details in $work/logs" >&2
  exit 1
fi
echo "fuzz: no findings in ${seconds} s per target" >&2
