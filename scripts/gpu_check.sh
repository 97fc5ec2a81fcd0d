#!/usr/bin/env bash
# Runs on a machine with an NVIDIA GPU: every GoogleTest binary (their GPU tests do not skip
# there), then the whole pipeline on simulated recordings twice, --device cpu and --device cuda,
# comparing each stage's outputs and timing each stage. CI has no GPU and does not run this.
#
#   scripts/gpu_check.sh [--bin DIR] [--tests DIR] [--out DIR] [--sims "PRESET:SECONDS:SEED ..."]
#                        [--no-unit] [--threads N]
# DIR defaults: build/bin, build/tests, gpu-check/. Exit status: number of failed checks (max 100).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=build/bin TESTS=build/tests OUT=gpu-check SIMS="smoke:60:3 np64-drift:60:1" UNIT=1 THREADS=""
PY=${KS_PYTHON:-python3}
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sims) SIMS=$2; shift 2 ;;
    --threads) THREADS="--threads $2"; shift 2 ;;
    --no-unit) UNIT=0; shift ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=$(cd "$BIN" && pwd); mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
fails=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"

if [ "$UNIT" = 1 ]; then
  for t in "$TESTS"/test_*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=$(basename "$t")
    if "$t" --gtest_brief=1 > "$OUT/$name.log" 2>&1; then r=ok; else r=FAILED; fails=$((fails + 1)); fi
    skipped=$(grep -c "^\[  SKIPPED" "$OUT/$name.log")
    echo "unit $name: $r ($skipped skipped)"
    [ "$r" = ok ] || tail -30 "$OUT/$name.log"
  done
fi

now() { date +%s.%N; }
# run_stage DEV WORK NAME CMD...: runs one stage, appends "NAME seconds" to WORK/times.txt
run_stage() {
  local dev=$1 work=$2 name=$3; shift 3
  local t0; t0=$(now)
  if ! "$@" --work "$work" --device "$dev" $THREADS -q > "$work.$name.log" 2>&1; then
    echo "stage $name ($dev) FAILED:"; tail -5 "$work.$name.log"; return 1
  fi
  awk -v a="$t0" -v b="$(now)" -v n="$name" 'BEGIN { printf "%s %.2f\n", n, b - a }' >> "$work/times.txt"
}

for spec in $SIMS; do
  IFS=: read -r preset secs seed <<< "$spec"
  sim=$OUT/sim-$preset-$secs-$seed
  [ -f "$sim/recording.bin" ] || "$BIN/ks-sim" --preset "$preset" --duration "$secs" --seed "$seed" --out "$sim" -q
  for dev in cpu cuda; do
    w=$OUT/w-$preset-$secs-$seed-$dev
    rm -rf "$w" "$w".*.log; mkdir -p "$w"
    ok=1
    run_stage "$dev" "$w" filter "$BIN/ks-filter" --rec "$sim/recording.bin" --probe "$sim/probe.json" \
      --params "$sim/params.json" || ok=0
    for st in "whiten ks-whiten" "drift ks-drift --no-map" "detect ks-detect" "cluster ks-cluster" \
              "match ks-match" "final ks-cluster --final"; do
      set -- $st; name=$1; shift; tool=$1; shift
      [ $ok = 1 ] && { run_stage "$dev" "$w" "$name" "$BIN/$tool" "$@" || ok=0; }
    done
    [ $ok = 1 ] || { fails=$((fails + 1)); continue; }
    "$BIN/ks-score" --gt "$sim" --sorting "$w/final" --json "$w/score.json" > "$w.score.txt" 2>&1 || true
  done
  "$PY" "$here/gpu_compare.py" "$OUT/w-$preset-$secs-$seed-cpu" "$OUT/w-$preset-$secs-$seed-cuda" \
    | tee "$OUT/compare-$preset-$secs-$seed.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))
done
echo "gpu_check: $fails failed check(s)"
exit $(( fails > 100 ? 100 : fails ))
