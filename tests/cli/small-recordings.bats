#!/usr/bin/env bats
# What Kilosort4 users hit on small or empty recordings: a 4-channel probe and a few seconds, and a
# recording of noise only. The pipeline must finish (or stop with a clear message), never crash, and
# its motion must stay within the probe.
load helpers

setup() {
  common_setup
  MK="make --no-print-directory -f $KS_SOURCE_DIR/Makefile.pipeline KS_BIN=$KS_BIN_DIR"
}

@test "a 4-channel, 5-second recording is sorted end to end, with a motion inside the probe" {
  "$KS_BIN_DIR/ks-sim" --preset smoke --probe linear4 --duration 5 --seed 3 --out sim -q
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  [ -f w/final/final.json ] && [ -f w/phy/params.py ] && [ -f w/curate/metrics.tsv ]
  run "$KS_PYTHON" -c "
import numpy as np, json
d = np.abs(np.load('w/drift/dshift.npy')).max()
print('max |dshift|', d)
assert d < 30, d        # the probe spans 60 um; Kilosort4's rule, unbounded, ran to -630 um here
assert json.load(open('w/final/final.json'))['extra']['n_clusters'] >= 1
"
  assert_success
}

@test "a recording of noise only finishes with no good unit, or stops saying why" {
  "$KS_BIN_DIR/ks-sim" --preset smoke --duration 10 --seed 3 --n-units 0 --out sim0 -q
  run $MK REC=sim0/recording.bin PROBE=sim0/probe.json PARAMS=sim0/params.json OUT=w0
  if [ "$status" -eq 0 ]; then
    [ "$(json_get w0/final/final.json 'j["extra"]["n_good"]')" = 0 ]
  else
    [[ "$output" == *"exit"* || "$output" == *"no spike"* || "$output" == *"Error 3"* ]]
  fi
  # No template could be learned from noise: the predefined shapes were used, and the records say so.
  [ "$(json_get w0/detect/detect.json 'j["extra"]["templates"]')" = predefined ] || [ ! -f w0/detect/detect.json ]
}
