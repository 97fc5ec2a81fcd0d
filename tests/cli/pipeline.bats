#!/usr/bin/env bats
# Makefile.pipeline: a run, a no-op rerun, and stage-selective reruns decided by settings and
# recording content (not timestamps).
load helpers

setup() {
  common_setup
  MK="make --no-print-directory -f $KS_SOURCE_DIR/Makefile.pipeline KS_BIN=$KS_BIN_DIR"
  "$KS_BIN_DIR/ks-sim" --preset smoke --duration 3 --seed 2 --out sim -q
}

ran() { grep -c "$1 --" <<<"$output" || true; }

@test "a run makes the stages; an identical rerun runs none" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  [ "$(ran ks-filter)" = 1 ] && [ "$(ran ks-whiten)" = 1 ] && [ "$(ran ks-drift)" = 1 ]
  [ -f w/filter/filter.json ] && [ -f w/whiten/whiten.npy ] && [ -f w/whiten/whiten.json ]
  [ -f w/drift/dshift.npy ] && [ -f w/drift/drift.json ] && [ -f w/detect/detect.json ] && [ -f w/cluster/cluster.json ]
  [ -f w/match/match.json ] && [ -f w/final/final.json ] && [ "$(ran ks-match)" = 1 ] && [ "$(ran ks-cluster)" = 2 ]
  [ -f w/phy/params.py ] && [ -f w/phy/ks-phy.json ] && [ "$(ran ks-phy)" = 1 ] && [ -f w/curate/metrics.tsv ]
  [ -f w/report/sorting_report.md ] && [ -f w/report/report.json ] && [ "$(ran ks-report)" = 1 ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  [ "$(ran ks-filter)" = 0 ] && [ "$(ran ks-whiten)" = 0 ] && [ "$(ran ks-drift)" = 0 ] && [ "$(ran ks-detect)" = 0 ]
  [ "$(ran ks-cluster)" = 0 ] && [ "$(ran ks-match)" = 0 ] && [ "$(ran ks-phy)" = 0 ] && [ "$(ran ks-report)" = 0 ]
}

@test "touching the recording reruns nothing; a whitening setting reruns whitening and what follows" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  touch sim/recording.bin
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  [ "$(ran ks-filter)" = 0 ] && [ "$(ran ks-whiten)" = 0 ] && [ "$(ran ks-drift)" = 0 ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="whitening_range=8"
  [ "$(ran ks-filter)" = 0 ] && [ "$(ran ks-whiten)" = 1 ] && [ "$(ran ks-drift)" = 1 ]
}

@test "a drift setting reruns drift and what follows; the drift target is a motion-only run" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w drift
  [ -f w/drift/drift.json ] && [ ! -e w/detect ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="nblocks=0"
  [ "$(ran ks-filter)" = 0 ] && [ "$(ran ks-whiten)" = 0 ] && [ "$(ran ks-drift)" = 1 ] && [ "$(ran ks-detect)" = 1 ]
  [ "$(json_get w/drift/drift.json 'j["extra"]["status"]')" = disabled ]
}

@test "a filter setting reruns filtering and what follows" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="highpass_cutoff=250"
  [ "$(ran ks-filter)" = 1 ] && [ "$(ran ks-whiten)" = 1 ]
}

@test "a clustering setting reruns clustering and what follows, nothing before" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="cluster_neighbors=12"
  [ "$(ran ks-detect)" = 0 ] && [ "$(ran ks-drift)" = 0 ] && [ "$(ran ks-cluster)" = 2 ] && [ "$(ran ks-match)" = 1 ]
}

@test "Th_learned reruns matching onward; ccg_threshold and acg_threshold the final clustering; min_snr only curation" {
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="Th_learned=7"
  [ "$(ran ks-detect)" = 0 ] && [ "$(ran ks-match)" = 1 ] && [ "$(ran 'ks-cluster --work w --final')" = 1 ]
  [ "$(ran ks-cluster)" = 1 ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="Th_learned=7 ccg_threshold=0.3"
  [ "$(ran ks-match)" = 0 ] && [ "$(ran 'ks-cluster --work w --final')" = 1 ] && [ "$(ran ks-cluster)" = 1 ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="Th_learned=7 ccg_threshold=0.3 acg_threshold=0.1"
  [ "$(ran ks-match)" = 0 ] && [ "$(ran ks-cluster)" = 1 ]
  run -0 $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="Th_learned=7 ccg_threshold=0.3 acg_threshold=0.1 min_snr=4"
  [ "$(ran ks-cluster)" = 0 ] && [ "$(ran ks-curate)" = 1 ] && [ "$(ran ks-match)" = 0 ] && [ "$(ran ks-report)" = 1 ]
  grep -q "| min_snr | 4 |" w/report/sorting_report.md
}

@test "a bad setting stops the pipeline with exit code and message, and no stage output" {
  run $MK REC=sim/recording.bin PROBE=sim/probe.json PARAMS=sim/params.json OUT=w SET="nskip=0"
  [ "$status" -ne 0 ]
  [[ "$output" == *"nskip"* ]]
  [ ! -e w/filter/filter.json ]
}
