#!/usr/bin/env bats
# ks-inspect and the behaviour every tool shares: help, usage errors, settings, recordings,
# probes, device selection, the work folder (config files, lock, no half-written outputs).
load helpers

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-inspect
  make_recording rec.bin 8 3000
  make_probe probe.json 8
}

@test "--help prints usage with settings and exit codes on stdout, exit 0" {
  run --separate-stderr -0 "$KS" --help
  assert_output --partial "Usage: ks-inspect"
  assert_output --partial "n_chan_bin = None"
  assert_output --partial "highpass_cutoff = 300"
  assert_output --partial "6 work folder locked"
  [ -z "$stderr" ]
}

@test "a bare call prints usage, exit 0; --version names the tool" {
  run -0 "$KS"
  assert_output --partial "Usage: ks-inspect"
  run -0 "$KS" --version
  assert_output --regexp "^ks-inspect [0-9]+\.[0-9]+\.[0-9]+"
}

@test "unknown option: exit 2, one line on stderr naming it, nothing on stdout" {
  run --separate-stderr -2 "$KS" --frobnicate
  [ -z "$output" ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "ks-inspect: error: unknown option '--frobnicate'"* ]]
}

@test "summary of a recording and probe; JSON output parses" {
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8
  assert_output --partial "int16, 8 channels in the file, 30000 Hz, 3000 samples"
  assert_output --partial "n_chan_bin = 8 (--set)"
  run -0 bash -c "'$KS' --rec rec.bin --probe probe.json --set n_chan_bin=8 --json > s.json"
  [ "$(json_get s.json "j['recording']['n_samples_file']")" = 3000 ]
  [ "$(json_get s.json "j['probe']['n_chan']")" = 8 ]
  [ "$(json_get s.json "j['settings']['n_chan_bin']")" = 8 ]
}

@test "missing recording: exit 2 naming the file" {
  run --separate-stderr -2 "$KS" --rec nope.bin --probe probe.json --set n_chan_bin=8
  assert_equal "$(echo "$stderr" | wc -l)" 1
  [[ "$stderr" == *"nope.bin"* ]]
}

@test "empty recording: exit 2 naming the file" {
  : > empty.bin
  run --separate-stderr -2 "$KS" --rec empty.bin --probe probe.json --set n_chan_bin=8
  [[ "$stderr" == *"empty.bin"* ]]
}

@test "truncated recording (not a whole number of samples): exit 2 naming file and n_chan_bin" {
  head -c 47999 rec.bin > trunc.bin
  run --separate-stderr -2 "$KS" --rec trunc.bin --probe probe.json --set n_chan_bin=8
  [[ "$stderr" == *"trunc.bin"* ]]
  [[ "$stderr" == *"n_chan_bin"* ]]
}

@test "n_chan_bin missing: exit 2 saying how to give it" {
  run --separate-stderr -2 "$KS" --rec rec.bin --probe probe.json
  [[ "$stderr" == *"n_chan_bin"* ]]
}

@test "wrong n_chan_bin / probe with more channels than the file: exit 2 naming both" {
  run --separate-stderr -2 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=6
  [[ "$stderr" == *"n_chan_bin"* ]]
  make_probe big.json 16
  run --separate-stderr -2 "$KS" --rec rec.bin --probe big.json --set n_chan_bin=8
  [[ "$stderr" == *"big.json"* ]]
}

@test "SpikeGLX metadata: fs and n_chan_bin from the .meta; sync row rejected; fewer channels warn" {
  make_recording run_g0_t0.imec0.ap.bin 9 3000
  printf 'imSampRate=30000\nnSavedChans=9\nsnsApLfSy=8,0,1\nfileSizeBytes=54000\n' > run_g0_t0.imec0.ap.meta
  run -0 "$KS" --rec run_g0_t0.imec0.ap.bin --probe probe.json --json
  assert_output --partial '"n_chan_bin": 9'
  make_probe with_sync.json 9
  run --separate-stderr -2 "$KS" --rec run_g0_t0.imec0.ap.bin --probe with_sync.json
  [[ "$stderr" == *"with_sync.json: uses file row 8"* ]]
  make_probe small.json 4
  run --separate-stderr -0 "$KS" --rec run_g0_t0.imec0.ap.bin --probe small.json
  [[ "$stderr" == *"4 ephys rows will not be sorted"* ]]
}

@test "malformed probe files (.json, .prb, .mat): exit 2 naming the file" {
  echo '{"chanMap": [0, 1' > bad.json
  run --separate-stderr -2 "$KS" --probe bad.json
  [[ "$stderr" == *"bad.json"* ]]
  echo "channel_groups = {0: {'channels': __import__('os').listdir('.')}}" > bad.prb
  run --separate-stderr -2 "$KS" --probe bad.prb
  [[ "$stderr" == *"bad.prb"* ]]
  echo "not a mat file" > bad.mat
  run --separate-stderr -2 "$KS" --probe bad.mat
  [[ "$stderr" == *"bad.mat"* ]]
  run --separate-stderr -2 "$KS" --probe no-such-probe
  [[ "$stderr" == *"no-such-probe"* ]]
}

@test "out-of-range and unknown settings: exit 2 naming the setting" {
  run --separate-stderr -2 "$KS" --set batch_size=0
  [[ "$stderr" == *"batch_size"*"[1, inf]"* ]]
  run --separate-stderr -2 "$KS" --set Th_lerned=7
  [[ "$stderr" == *"did you mean 'Th_learned'"* ]]
  echo '{"nblocks": -1}' > p.json
  run --separate-stderr -2 "$KS" --params p.json
  [[ "$stderr" == *"p.json"*"nblocks"* ]]
  echo '{"nblocks": ' > broken.json
  run --separate-stderr -2 "$KS" --params broken.json
  [[ "$stderr" == *"broken.json"* ]]
}

@test "the CPU path runs without a GPU; --device cuda there is a one-line exit 4" {
  run -0 "$KS" --list-probes
  run --separate-stderr -0 "$KS" --probe probe.json --json
  [[ "$output" == *'"kind": "cpu"'* ]]
  if [ -e /dev/nvidiactl ]; then skip "a GPU driver is present"; fi
  run --separate-stderr -4 "$KS" --probe probe.json --device cuda
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == *"--device cuda: no usable GPU"* ]]
}

@test "--work records run.json, probe.json and per-stage configs; rerun rewrites nothing" {
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  [ -f w/run.json ] && [ -f w/probe.json ] && [ -f w/config/filter.json ] && [ -f w/config/match.json ]
  [ -f w/ks-tools.log ]
  [ ! -e w/.lock ]
  before=$(mtime w/config/filter.json)
  sleep 1.1
  touch rec.bin   # a touched but unchanged recording changes nothing
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  assert_output --partial "0 of 10 stage configs changed"
  [ "$(mtime w/config/filter.json)" = "$before" ]
}

@test "a changed setting rewrites the config of its stage and later ones only" {
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  f=$(mtime w/config/filter.json); d=$(mtime w/config/detect.json); m=$(mtime w/config/match.json)
  sleep 1.1
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --set Th_learned=7 --work w
  [ "$(mtime w/config/filter.json)" = "$f" ]
  [ "$(mtime w/config/detect.json)" = "$d" ]
  [ "$(mtime w/config/match.json)" != "$m" ]
  [ "$(json_get w/config/match.json "j['settings']['Th_learned']")" = 7 ]
}

@test "a changed recording content rewrites every stage config" {
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  f=$(mtime w/config/filter.json)
  sleep 1.1
  printf '\x01\x00' | dd of=rec.bin bs=1 seek=100 conv=notrunc status=none
  run -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  [ "$(mtime w/config/filter.json)" != "$f" ]
}

@test "a held work-folder lock: exit 6 naming the holder; a dead holder's lock is taken over" {
  mkdir w
  echo '{"tool":"ks-other","pid":4242,"host":"h","since":"2026-01-01T00:00:00Z","token":"t"}' > w/.lock
  flock -o w/.lock sleep 5 >/dev/null 2>&1 3>&- &
  holder=$!
  sleep 0.3
  run --separate-stderr -6 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  [[ "$stderr" == *"ks-other (pid 4242"* ]]
  [ ! -e w/run.json ]
  kill $holder; wait $holder 2>/dev/null || true
  # the record is still there but nobody holds it: taken over with a warning
  run --separate-stderr -0 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=8 --work w
  [[ "$stderr" == *"taking over the lock of ks-other"* ]]
  [ -f w/run.json ]
}

@test "bad input with --work leaves no output that looks complete, and no new folder" {
  mkdir w
  run -2 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=7 --work w
  [ ! -e w/run.json ]
  [ ! -e w/config ]
  [ -z "$(find w -name '*.partial')" ]
  run -2 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=7 --work new
  [ ! -e new ]
}

@test "--list-settings lists every Kilosort4 setting with its range" {
  run -0 "$KS" --list-settings
  assert_output --partial "Th_universal"
  assert_output --partial "max_peels"
  assert_line --regexp "^batch_size +60000 +int +filter +\[1, inf\]"
}
