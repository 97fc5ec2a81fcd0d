#!/usr/bin/env bats
# scripts/Snakefile with Debian's snakemake: two simulated sessions sorted through Makefile.pipeline
# and matched by ks-match-sessions; the caching carries through.
load helpers

setup() {
  common_setup
  command -v snakemake > /dev/null || skip "snakemake is not installed (Debian package snakemake)"
  "$KS_BIN_DIR/ks-sim" --preset smoke --sessions 2 --duration 8 --seed 3 --out sim -q
  write_config ""
}

write_config() {
  cat > cfg.yaml <<YAML
out: sorted
ks_bin: $KS_BIN_DIR
threads: 1
match_units: all
set: "$1"
recordings:
  s0: {rec: sim/session_00/recording.bin, probe: sim/session_00/probe.json, params: sim/session_00/params.json}
  s1: {rec: sim/session_01/recording.bin, probe: sim/session_01/probe.json, params: sim/session_01/params.json}
subjects:
  m1: [s0, s1]
YAML
}

@test "sorts every recording, matches the subject's sessions; a rerun does nothing; a curation setting reruns curation onward" {
  run -0 snakemake -s "$KS_SOURCE_DIR/scripts/Snakefile" --configfile cfg.yaml -j2
  for s in s0 s1; do
    [ -f sorted/$s.ks/report/sorting_report.md ] && [ -f sorted/$s.ks/phy/params.py ]
  done
  [ "$(json_get sorted/m1.match/match-sessions.json 'j["extra"]["n_sessions"]')" = 2 ]
  # the same sorting as Makefile.pipeline run by hand
  run -0 make --no-print-directory -f "$KS_SOURCE_DIR/Makefile.pipeline" KS_BIN="$KS_BIN_DIR" REC=sim/session_00/recording.bin \
    PROBE=sim/session_00/probe.json PARAMS=sim/session_00/params.json OUT=byhand
  cmp sorted/s0.ks/final/spike_times.npy byhand/final/spike_times.npy
  cmp sorted/s0.ks/final/spike_clusters.npy byhand/final/spike_clusters.npy
  run -0 snakemake -s "$KS_SOURCE_DIR/scripts/Snakefile" --configfile cfg.yaml -j2
  assert_output --partial "Nothing to be done"
  write_config "min_snr=3"
  run -0 snakemake -s "$KS_SOURCE_DIR/scripts/Snakefile" --configfile cfg.yaml -j2
  grep -q "ks-curate --work" sorted/s0.ks.log
  ! grep -q "ks-filter --" sorted/s0.ks.log
  ! grep -q "ks-cluster --" sorted/s0.ks.log
}
