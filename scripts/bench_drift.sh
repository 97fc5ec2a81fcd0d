#!/usr/bin/env bash
# Accuracy and speed of ks-drift on ks-sim recordings with known motion.
#
#   scripts/bench_drift.sh [--bin DIR] [--duration S] [--duration384 S] [--out DIR] [--threads N]
#                          [--device D] [--kinds "none rigid jitter step nonrigid"] [--keep]
#
#   --bin DIR         folder of the ks-* executables [build/bin beside this script, else PATH]
#   --duration S      seconds of each 64-channel recording [300]
#   --duration384 S   seconds of the 384-channel recording used for throughput (0: skip) [60]
#   --out DIR         scratch folder [./bench_drift]
#   --threads N       --threads for the tools [all cores]
#   --device D        auto, cpu or cuda [auto]
#   --kinds LIST      motion kinds to simulate on np64 (ks-sim --drift) [none rigid jitter step nonrigid]
#   --keep            keep the recordings and work folders
#
# For each kind: ks-sim --preset np64 --drift KIND, ks-filter, ks-whiten, then ks-drift with
# nblocks=1 (rigid) and nblocks=5 (nonrigid); scripts/drift_accuracy.py compares the motion with
# the truth (RMS and max error in µm, after removing each block's constant offset) and reports how
# much the units' depth wanders before and after correction. ks-drift's wall time gives × real time.
# Prints a Markdown table.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=""
duration=300
duration384=60
out=./bench_drift
threads=""
device=auto
kinds="none rigid jitter step nonrigid"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --duration384) duration384=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_drift.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  if [ -x "$here/../build/bin/ks-drift" ]; then bin=$here/../build/bin
  else bin=$(dirname "$(command -v ks-drift || echo ./ks-drift)"); fi
fi
[ -x "$bin/ks-drift" ] || { echo "bench_drift.sh: no ks-drift in $bin (use --bin)" >&2; exit 2; }
PY=${KS_PYTHON:-/usr/bin/python3}
mkdir -p "$out"
args=(--device "$device" -q)
[ -n "$threads" ] && args+=(--threads "$threads")

now() { date +%s.%N; }

# prepare PRESET KIND DURATION DIR: simulated recording, filtered and whitened work folder
prepare() {
  local preset=$1 kind=$2 dur=$3 dir=$4
  "$bin/ks-sim" --preset "$preset" --drift "$kind" --duration "$dur" --seed 1 --out "$dir/sim" -q
  "$bin/ks-filter" --rec "$dir/sim/recording.bin" --probe "$dir/sim/probe.json" --params "$dir/sim/params.json" \
    --work "$dir/w" "${args[@]}"
  "$bin/ks-whiten" --work "$dir/w" "${args[@]}"
}

echo "ks-drift on ks-sim np64 (${duration} s), $(nproc) cores, device $device"
echo
echo "| motion | nblocks | RMS error (µm) | max error (µm) | dshift RMS (µm) | true range (µm) | unit depth spread before → after (median, µm) | × real time |"
echo "|---|---|---|---|---|---|---|---|"
for kind in $kinds; do
  dir=$out/np64-$kind
  prepare np64 "$kind" "$duration" "$dir"
  for nb in 1 5; do
    t0=$(now)
    "$bin/ks-drift" --work "$dir/w" --set nblocks=$nb "${args[@]}"
    t1=$(now)
    "$PY" "$here/drift_accuracy.py" "$dir/sim" "$dir/w" --json > "$dir/acc$nb.json"
    "$PY" - "$dir/acc$nb.json" "$kind" "$nb" "$t0" "$t1" "$duration" <<'PY'
import sys, json
a = json.load(open(sys.argv[1])); kind, nb = sys.argv[2], sys.argv[3]
wall = float(sys.argv[5]) - float(sys.argv[4]); dur = float(sys.argv[6])
spread = "%.1f → %.1f" % (a["spread_before_median_um"], a["spread_after_median_um"]) if "units_tracked" in a else "-"
print("| %s | %s | %.2f | %.2f | %.2f | %.1f | %s | %.1f× |" % (kind, nb, a["motion_rms_um"], a["motion_max_um"],
      a["dshift_rms_um"], a["true_motion_range_um"], spread, dur / wall))
PY
  done
  [ "$keep" = 1 ] || rm -rf "$dir"
done

if [ "$duration384" != 0 ]; then
  dir=$out/np384
  prepare np384 mixed "$duration384" "$dir"
  t0=$(now)
  /usr/bin/time -f "%M" -o "$dir/rss" "$bin/ks-drift" --work "$dir/w" "${args[@]}"
  t1=$(now)
  "$PY" -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); print('\nnp384 (384 channels, %s s): ks-drift %.1f s wall, %.2f× real time, peak RSS %.0f MB' % (sys.argv[3], w, float(sys.argv[3])/w, float(open(sys.argv[4]).read())/1024))" \
    "$t0" "$t1" "$duration384" "$dir/rss"
  [ "$keep" = 1 ] || rm -rf "$dir"
fi
