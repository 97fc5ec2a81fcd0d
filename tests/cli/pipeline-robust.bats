#!/usr/bin/env bats
# Makefile.pipeline under stress: forced stages (RECOMPUTE), a no-op run that says so, the canary,
# the disk preflight, a run killed mid-stage and resumed, a full disk, two runs on one folder, make -j.
load helpers

setup_file() {
  "$KS_BIN_DIR/ks-sim" --preset smoke --duration 8 --seed 2 --out "$BATS_FILE_TMPDIR/sim" -q
  # The reference: one uninterrupted run.
  make -s --no-print-directory -f "$KS_SOURCE_DIR/Makefile.pipeline" KS_BIN="$KS_BIN_DIR" REC="$BATS_FILE_TMPDIR/sim/recording.bin" \
    PROBE="$BATS_FILE_TMPDIR/sim/probe.json" PARAMS="$BATS_FILE_TMPDIR/sim/params.json" OUT="$BATS_FILE_TMPDIR/ref" > /dev/null 2>&1
}

setup() {
  common_setup
  PY=${KS_PYTHON:-/usr/bin/python3}
  S=$BATS_FILE_TMPDIR/sim
  REF=$BATS_FILE_TMPDIR/ref
  MK="make --no-print-directory -f $KS_SOURCE_DIR/Makefile.pipeline KS_BIN=$KS_BIN_DIR REC=$S/recording.bin PROBE=$S/probe.json PARAMS=$S/params.json"
  # the same through scripts/ks-sort, which exits with the failed tool's code
  SORT="$KS_SOURCE_DIR/scripts/ks-sort KS_BIN=$KS_BIN_DIR REC=$S/recording.bin PROBE=$S/probe.json PARAMS=$S/params.json"
}

ran() { grep -c "$1 --" <<<"$output" || true; }

# The sorting's results are the same as the reference run's.
same_as_ref() {
  for f in final/spike_times.npy final/spike_clusters.npy final/templates.npy match/spike_times.npy curate/metrics.tsv \
           phy/spike_times.npy phy/pc_features.npy; do
    cmp "$REF/$f" "$1/$f" || return 1
  done
}

@test "a second run does nothing and says so; RECOMPUTE forces a stage and what follows" {
  cp -a "$REF" w
  run -0 $MK OUT=w
  assert_output --partial "nothing to do: every stage of w is up to date"
  [ "$(ran ks-filter)" = 0 ] && [ "$(ran ks-report)" = 0 ]
  run -0 $MK OUT=w RECOMPUTE=cluster
  [ "$(ran ks-detect)" = 0 ] && [ "$(ran ks-cluster)" = 2 ] && [ "$(ran ks-match)" = 1 ] && [ "$(ran ks-report)" = 1 ]
  assert_output --partial "ks-tools: ran cluster match final curate phy report"
  same_as_ref w
  run $MK OUT=w RECOMPUTE=clustering
  assert_failure
  assert_output --partial "RECOMPUTE=clustering is not a stage"
  # editing the settings file reruns what the edit touches; touching it reruns nothing
  "$PY" -c "import json; p = json.load(open('$S/params.json')); p['min_snr'] = 3; json.dump(p, open('mine.json', 'w'))"
  run -0 make --no-print-directory -f "$KS_SOURCE_DIR/Makefile.pipeline" KS_BIN="$KS_BIN_DIR" REC="$S/recording.bin" \
    PROBE="$S/probe.json" PARAMS=mine.json OUT=w
  [ "$(ran ks-curate)" = 1 ] && [ "$(ran ks-cluster)" = 0 ] && [ "$(ran ks-filter)" = 0 ]
  touch mine.json
  run -0 make --no-print-directory -f "$KS_SOURCE_DIR/Makefile.pipeline" KS_BIN="$KS_BIN_DIR" REC="$S/recording.bin" \
    PROBE="$S/probe.json" PARAMS=mine.json OUT=w
  assert_output --partial "nothing to do"
}

@test "CANARY sorts the first seconds first, and stops with the real error before the long run" {
  run -0 $MK OUT=w CANARY=2
  [ -f w/canary/report/report.json ] && [ -f w/report/report.json ]
  [ "$(json_get w/canary/filter/filtered.json 'j["n_samples"]')" = 60000 ]
  assert_output --partial "canary of 2 s passed"
  same_as_ref w
  run $MK OUT=w2 CANARY=1 SET="Th_universal=150"
  assert_failure
  assert_output --partial "ks-drift: error: setting Th_universal"
  [ -d w2/canary ] && [ ! -e w2/filter ]
}

@test "preflight: too little disk for the outputs stops before any stage, exit 5 from ks-inspect" {
  KS_PREFLIGHT_FREE_MB=1 run $MK OUT=w
  assert_failure
  assert_output --partial "preflight: w has"
  assert_output --partial "Error 5"
  KS_PREFLIGHT_FREE_MB=1 run $SORT OUT=w
  assert_failure 5
  [ ! -e w/filter ] && [ ! -e w/config ]
  run -0 "$KS_BIN_DIR/ks-inspect" --rec "$S/recording.bin" --probe "$S/probe.json" --params "$S/params.json" --work w
  assert_output --partial "preflight   disk:"
}

@test "killed at any stage (SIGKILL) and run again: the same results as an uninterrupted run" {
  local cut=0
  for pattern in "ks-filter --rec" "ks-detect --work w " "ks-cluster --work w --params" "ks-match --work w " \
                 "ks-cluster --work w --final" "ks-phy --work w "; do
    for attempt in 1 2 3; do
      rm -rf w
      setsid bash -c "exec $MK OUT=w > /dev/null 2>&1" &
      local pid=$!
      # wait until that stage's tool runs, then kill the whole run (make and the tool)
      for _ in $(seq 1 500); do
        pgrep -f -- "$pattern" > /dev/null 2>&1 && break
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.01
      done
      kill -KILL -- -"$pid" 2> /dev/null || true
      wait "$pid" 2> /dev/null || true
      [ -e w/report/report.json ] && continue   # the stage was over before we saw it: again
      cut=$((cut + 1))
      run -0 $MK OUT=w
      assert_output --partial "ks-tools: ran"
      same_as_ref w
      break
    done
  done
  [ "$cut" -ge 4 ]   # most stages really were interrupted
}

@test "a full disk (a failed write) gives exit code 5, no output taken as complete, and a clean rerun" {
  mkdir -p w
  run bash -c "trap '' XFSZ; ulimit -f 200; exec \"$KS_BIN_DIR/ks-filter\" --rec \"$S/recording.bin\" --probe \"$S/probe.json\" --params \"$S/params.json\" --work w"
  assert_failure 5
  [ ! -e w/filter/filter.json ] && [ ! -e w/filter/filtered.bin ]
  run bash -c "trap '' XFSZ; ulimit -f 200; exec $SORT OUT=w2"
  assert_failure 5
  assert_output --partial "Error 5"
  [ ! -e w2/filter/filter.json ]
  run -0 $MK OUT=w2
  same_as_ref w2
}

@test "two runs on one folder: the second stops with exit code 6 naming the holder; make -j gives the same results" {
  cp -a "$REF" w
  # another run holds the folder (the lock record plus the lock held, as a running tool does)
  echo '{"tool":"ks-cluster","pid":4242,"host":"h","since":"2026-01-01T00:00:00Z","token":"t"}' > w/.lock
  flock -o w/.lock sleep 30 > /dev/null 2>&1 3>&- &
  local holder=$!
  sleep 0.3
  cp w/curate/curate.json curate.before
  run $SORT OUT=w SET="min_snr=3"
  assert_failure 6
  assert_output --partial "Error 6"
  assert_output --partial "in use by ks-cluster (pid 4242"
  cmp w/curate/curate.json curate.before
  kill $holder; wait $holder 2> /dev/null || true
  # the holder is gone: its lock is taken over and the run goes on
  run -0 $MK OUT=w SET="min_snr=3"
  [ "$(ran ks-curate)" = 1 ] && [ "$(ran ks-filter)" = 0 ]
  run -0 $MK OUT=wj -j4
  same_as_ref wj
}

@test "several files sorted as one recording (REC list or folder): the same sorting, spikes split back per file" {
  mkdir parts
  "$PY" -c "
import numpy as np
x = np.fromfile('$S/recording.bin', dtype=np.int16).reshape(-1, 32)
x[:100000].tofile('parts/a.bin'); x[100000:].tofile('parts/b.bin')"
  run -0 $MK REC="parts/a.bin parts/b.bin" OUT=wl
  same_as_ref wl
  cmp "$REF/filter/filtered.bin" wl/filter/filtered.bin
  run -0 $MK REC=parts OUT=wd
  assert_output --partial "--rec parts/a.bin --rec parts/b.bin"
  same_as_ref wd
  run "$PY" - wl "$REF" <<'PY'
import sys, numpy as np
w, ref = sys.argv[1], sys.argv[2]
t = np.load(ref + "/phy/spike_times.npy"); c = np.load(ref + "/phy/spike_clusters.npy")
rows = [l.split("\t") for l in open(w + "/phy/per_file/files.tsv").read().splitlines()[1:]]
assert [r[2:4] for r in rows] == [["0", "100000"], ["100000", "140000"]], rows
for k, (first, n) in enumerate([(0, 100000), (100000, 140000)]):
    ft = np.load(w + "/phy/per_file/file_%d/spike_times.npy" % k); fc = np.load(w + "/phy/per_file/file_%d/spike_clusters.npy" % k)
    m = (t >= first) & (t < first + n)
    assert np.array_equal(ft, t[m] - first) and np.array_equal(fc, c[m]) and int(rows[k][4]) == m.sum()
    assert ft.min() >= 0 and ft.max() < n
params = {}
exec(open(w + "/phy/params.py").read(), {}, params)
assert [p.split("/")[-1] for p in params["dat_path"]] == ["a.bin", "b.bin"], params
print("ok")
PY
  assert_success
  assert_output --partial "ok"
  run "$PY" "$KS_SOURCE_DIR/tests/cli/phy_check.py" wl/phy wl
  assert_success
  # a different file set is another recording: everything reruns
  run -0 $MK REC="parts/b.bin parts/a.bin" OUT=wl
  [ "$(ran ks-filter)" = 1 ]
}
