#!/usr/bin/env bash
# Benchmark of the preprocessing stages (ks-filter, and ks-whiten when built) on simulated
# 64- and 384-channel recordings: throughput as multiples of real time and MB/s of raw input,
# peak memory (/usr/bin/time -v), and the disk's own read rate for comparison.
#
#   scripts/bench_preprocess.sh [--bin DIR] [--duration S] [--out DIR] [--threads N] [--device D] [--keep]
#
#   --bin DIR      folder of the ks-* executables [build/bin beside this script, else PATH]
#   --duration S   seconds of recording per probe [60]
#   --out DIR      scratch folder for recordings and work folders [./bench_preprocess]
#   --threads N    --threads for the tools [all cores]
#   --device D     auto, cpu or cuda [auto]
#   --keep         keep the recordings and outputs (default: delete them at the end)
#
# Recordings come from ks-sim (presets np64, np384) when it is built, else from numpy (random
# int16, /usr/bin/python3). Each tool runs once with a warm page cache (the recording was just
# written), so "x real time" is the compute-bound figure; the direct-I/O read rate says what a
# cold read from this disk would allow.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=""
duration=60
out=./bench_preprocess
threads=""
device=auto
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_preprocess.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  if [ -x "$here/../build/bin/ks-filter" ]; then bin=$here/../build/bin
  else bin=$(dirname "$(command -v ks-filter || echo ./ks-filter)"); fi
fi
[ -x "$bin/ks-filter" ] || { echo "bench_preprocess.sh: no ks-filter in $bin (use --bin)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_preprocess.sh: /usr/bin/time is needed for peak memory" >&2; exit 4; }
PY=${KS_PYTHON:-/usr/bin/python3}
mkdir -p "$out"
tool_args=(--device "$device")
[ -n "$threads" ] && tool_args+=(--threads "$threads")

# make_recording PRESET DIR: DIR/recording.bin, DIR/probe.json, DIR/params.json
make_recording() {
  local preset=$1 dir=$2
  [ -s "$dir/recording.bin" ] && return 0
  if [ -x "$bin/ks-sim" ]; then
    "$bin/ks-sim" --preset "$preset" --duration "$duration" --seed 1 --out "$dir" -q
  else
    local nch=64 nbin=64
    [ "$preset" = np384 ] && nch=384 nbin=385
    mkdir -p "$dir"
    "$PY" - "$dir" "$nch" "$nbin" "$duration" <<'PY'
import sys, json, numpy as np
d, nch, nbin, dur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
n = int(dur * 30000); rng = np.random.default_rng(1)
with open(d + "/recording.bin", "wb") as f:
    for t0 in range(0, n, 300000):
        rng.normal(0, 20, (min(300000, n - t0), nbin)).astype("<i2").tofile(f)
json.dump({"chanMap": list(range(nch)), "xc": [16.0 * (i % 2) for i in range(nch)],
           "yc": [20.0 * (i // 2) for i in range(nch)], "kcoords": [0] * nch, "n_chan": nch},
          open(d + "/probe.json", "w"))
json.dump({"n_chan_bin": nbin, "fs": 30000}, open(d + "/params.json", "w"))
PY
  fi
}

# timed LOG CMD...: runs CMD under /usr/bin/time -v; sets wall_s, rss_mb
timed() {
  local log=$1; shift
  /usr/bin/time -v "$@" 2> "$log" > /dev/null || { cat "$log" >&2; echo "bench_preprocess.sh: $1 failed" >&2; exit 1; }
  wall_s=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$log")
  rss_mb=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log")
}

# direct_read_mb_s FILE: read rate bypassing the page cache (dd iflag=direct), MB/s
direct_read_mb_s() {
  local r
  r=$(dd if="$1" of=/dev/null bs=8M iflag=direct 2>&1 | awk '/copied/ {print $(NF-1), $NF}') || true
  case "$r" in
    *GB/s) echo "$r" | awk '{printf "%.0f", $1 * 1000}' ;;
    *MB/s) echo "$r" | awk '{printf "%.0f", $1}' ;;
    *kB/s) echo "$r" | awk '{printf "%.1f", $1 / 1000}' ;;
    *) echo "?" ;;
  esac
}

printf '%s\n' "ks-tools preprocessing benchmark: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), device $device, $duration s per recording"
printf '%-8s %-10s %9s %9s %11s %9s %9s\n' probe tool wall_s x_realtime MB/s_input peak_MB disk_MB/s
rows=()
for preset in np64 np384; do
  dir=$out/$preset
  make_recording "$preset" "$dir"
  size=$(stat -c %s "$dir/recording.bin")
  disk=$(direct_read_mb_s "$dir/recording.bin")
  cat "$dir/recording.bin" > /dev/null  # warm the page cache again after the direct read
  work=$out/$preset.ks
  rm -rf "$work"
  timed "$out/$preset.filter.time" "$bin/ks-filter" --rec "$dir/recording.bin" --probe "$dir/probe.json" \
        --params "$dir/params.json" --work "$work" -q "${tool_args[@]}"
  awk -v p="$preset" -v w="$wall_s" -v d="$duration" -v s="$size" -v m="$rss_mb" -v k="$disk" \
      'BEGIN {printf "%-8s %-10s %9.2f %9.1f %11.0f %9s %9s\n", p, "ks-filter", w, d / w, s / 1e6 / w, m, k}'
  if [ -x "$bin/ks-whiten" ]; then
    timed "$out/$preset.whiten.time" "$bin/ks-whiten" --work "$work" --params "$dir/params.json" -q "${tool_args[@]}"
    awk -v p="$preset" -v w="$wall_s" -v d="$duration" -v s="$size" -v m="$rss_mb" \
        'BEGIN {printf "%-8s %-10s %9.2f %9.1f %11.0f %9s %9s\n", p, "ks-whiten", w, d / w, s / 1e6 / w, m, "-"}'
  fi
done
echo "x_realtime = recording seconds / wall seconds; MB/s_input = raw recording bytes / wall seconds;"
echo "disk_MB/s = dd iflag=direct read rate of the recording (what a cold, disk-limited run could reach)."
[ "$keep" = 1 ] || rm -rf "$out"
