#!/usr/bin/env bash
# End-to-end speed and accuracy of the whole sorter on ks-sim recordings, stage by stage, optionally
# beside Kilosort4's results on the same recordings.
#
#   scripts/bench_pipeline.sh [--bin DIR] [--out DIR] [--threads N] [--device D]
#                             [--sims "np64:120:1 np64-drift:120:1 np384:60:1"] [--ks4 DIR] [--keep]
#
#   --bin DIR     folder of the ks-* executables [build/bin beside this script, else PATH]
#   --out DIR     scratch folder [./bench_pipeline]
#   --threads N   --threads for the tools [all cores]
#   --device D    auto, cpu or cuda [auto]
#   --sims LIST   recordings to simulate, PRESET:SECONDS:SEED each [np64:120:1 np64-drift:120:1 np384:60:1]
#   --ks4 DIR     folder holding Kilosort4 results per recording, DIR/<PRESET>-<SECONDS>-<SEED>/ as
#                 written by ../shared/scripts/run_ks4.py (its Phy folder and anchor_run.json; a
#                 first_pass/ folder with spike_times.npy and spike_clusters.npy is scored too)
#   --set K=V     a setting for every stage (repeatable), e.g. --set nblocks=5
#   --reuse       reuse recordings already simulated in --out
#   --keep        keep the recordings and work folders
#
# For each recording: ks-sim, then every stage (ks-filter ... ks-cluster --final) timed with
# /usr/bin/time (wall seconds, CPU seconds, peak RSS), then ks-score on the first pass (cluster/), the matched
# templates (match/, each template a unit), the final units (final/) and its good units. Prints
# Markdown tables: time per stage and x real time; accuracy beside Kilosort4's when --ks4 is given.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=""
out=./bench_pipeline
threads=""
device=auto
sims="np64:120:1 np64-drift:120:1 np384:60:1"
ks4=""
keep=0
reuse=0
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --sims) sims=$2; shift 2 ;;
    --ks4) ks4=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --reuse) reuse=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_pipeline.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  if [ -x "$here/../build/bin/ks-match" ]; then bin=$here/../build/bin
  else bin=$(dirname "$(command -v ks-match || echo ./ks-match)"); fi
fi
[ -x "$bin/ks-match" ] || { echo "bench_pipeline.sh: no ks-match in $bin (use --bin)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_pipeline.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
PY=${KS_PYTHON:-/usr/bin/python3}
mkdir -p "$out"
args=(--device "$device" -q "${sets[@]}")
[ -n "$threads" ] && args+=(--threads "$threads")

# timed NAME LOG cmd...: runs cmd, appends "NAME wall_s peak_mib" to LOG
timed() {
  local name=$1 log=$2; shift 2
  /usr/bin/time -f "%e %M %U %S" -o "$log.t" "$@"
  echo "$name $(awk '{printf "%s %.0f %.2f", $1, $2/1024, $3 + $4}' "$log.t")" >> "$log"
}

score() {  # score SIM SORTING OUT.json [--good-only]
  "$bin/ks-score" --gt "$1" --sorting "$2" --json "$3" ${4:-} > /dev/null
}

stage_rows=()
acc_rows=()
for spec in $sims; do
  IFS=: read -r preset dur seed <<<"$spec"
  name=$preset-$dur-$seed
  sim=$out/$name
  work=$out/$name.ks
  log=$out/$name.times
  if [ "$reuse" = 0 ] || [ ! -f "$sim/recording.bin" ]; then
    "$bin/ks-sim" --preset "$preset" --duration "$dur" --seed "$seed" --out "$sim" -q
  fi
  rm -rf "$work" "$log"
  timed filter "$log" "$bin/ks-filter" --rec "$sim/recording.bin" --probe "$sim/probe.json" --params "$sim/params.json" --work "$work" "${args[@]}"
  timed whiten "$log" "$bin/ks-whiten" --work "$work" "${args[@]}"
  timed drift "$log" "$bin/ks-drift" --work "$work" --no-map "${args[@]}"
  timed detect "$log" "$bin/ks-detect" --work "$work" "${args[@]}"
  timed cluster "$log" "$bin/ks-cluster" --work "$work" "${args[@]}"
  timed match "$log" "$bin/ks-match" --work "$work" "${args[@]}"
  timed final "$log" "$bin/ks-cluster" --work "$work" --final "${args[@]}"
  # the matched templates as units
  mkdir -p "$work/match_units"
  cp "$work/match/spike_times.npy" "$work/match_units/"
  cp "$work/match/spike_templates.npy" "$work/match_units/spike_clusters.npy"
  score "$sim" "$work/cluster" "$out/$name.first.json"
  score "$sim" "$work/match_units" "$out/$name.match.json"
  score "$sim" "$work/final" "$out/$name.final.json"
  score "$sim" "$work/final" "$out/$name.good.json" --good-only
  if [ -n "$ks4" ] && [ -f "$ks4/$name/anchor_run.json" ]; then
    score "$sim" "$ks4/$name" "$out/$name.ks4.json"
    score "$sim" "$ks4/$name" "$out/$name.ks4good.json" --good-only
    [ -d "$ks4/$name/first_pass" ] && score "$sim" "$ks4/$name/first_pass" "$out/$name.ks4first.json"
  fi
  stage_rows+=("$name $dur $log")
  acc_rows+=("$name")
done

echo
echo "### Time per stage (wall seconds; peak memory MiB)"
echo
"$PY" - "$out" "$ks4" "${stage_rows[@]}" <<'PY'
import sys, os, json
out, ks4 = sys.argv[1], sys.argv[2]
print("| recording | filter | whiten | drift | detect | cluster | match | final | total | x real time | CPU s | peak MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for row in sys.argv[3:]:
    name, dur, log = row.split()
    t = {}
    for line in open(log):
        s, w, m, c = line.split()
        t[s] = (float(w), int(m), float(c))
    tot = sum(v[0] for v in t.values())
    cpu = sum(v[2] for v in t.values())
    cells = [f"{t[s][0]:.1f}" for s in ["filter", "whiten", "drift", "detect", "cluster", "match", "final"]]
    print(f"| {name} | " + " | ".join(cells) + f" | {tot:.1f} | {float(dur) / tot:.2f} | {cpu:.0f} | {max(v[1] for v in t.values())} |")
    f = os.path.join(ks4, name, "anchor_run.json") if ks4 else ""
    if f and os.path.exists(f):
        j = json.load(open(f)); st = j["stage_times_s"]
        fin = st.get("final_clustering", 0) + st.get("merging", 0) + st.get("save_to_phy_postproc", 0)
        cells = [f"{st.get('preprocessing', 0):.1f} (both)", "", f"{st.get('drift_correction', 0):.1f}",
                 f"{st.get('spike_detection_universal_templates', 0):.1f}", f"{st.get('first_clustering', 0):.1f}",
                 f"{st.get('template_matching', 0):.1f}", f"{fin:.1f}"]
        tot = st.get("kilosort_total", sum(st.values()))
        cpu = j.get("cpu_time_s", {})
        print(f"| Kilosort4 {j.get('kilosort_version', '')} ({j.get('torch_num_threads', '?')} torch threads) | " + " | ".join(cells) +
              f" | {tot:.1f} | {float(dur) / tot:.3f} | {cpu.get('user', 0) + cpu.get('sys', 0):.0f} | {j.get('peak_rss_mib', 0):.0f} |")
PY
echo
echo "### Accuracy (ks-score: well detected = accuracy >= 0.8)"
echo
"$PY" - "$out" "${acc_rows[@]}" <<'PY'
import sys, os, json
out = sys.argv[1]
print("| recording | sorting | units | well detected | mean acc. (well det.) | mean precision | mean recall | false-positive units (of which offset) | redundant |")
print("|---|---|---|---|---|---|---|---|---|")
labels = [("first", "ks-tools first pass"), ("match", "ks-tools matched templates"), ("final", "ks-tools final"),
          ("good", "ks-tools final, good"), ("ks4first", "Kilosort4 first pass"), ("ks4", "Kilosort4 final"),
          ("ks4good", "Kilosort4 final, good")]
for name in sys.argv[2:]:
    for key, label in labels:
        f = f"{out}/{name}.{key}.json"
        if not os.path.exists(f):
            continue
        s = json.load(open(f))["summary"]
        print(f"| {name} | {label} | {s['n_sorted_units']} | {s['n_well_detected']} | "
              f"{s.get('mean_accuracy_well_detected', 0):.3f} | {s.get('mean_precision_well_detected', 0):.3f} | "
              f"{s.get('mean_recall_well_detected', 0):.3f} | {s['n_false_positive']} ({s.get('n_false_positive_offset', 0)}) | "
              f"{s.get('n_redundant', 0)} |")
PY
if [ "$keep" = 0 ]; then
  for row in "${acc_rows[@]}"; do rm -rf "$out/$row.ks"; done
fi
