#!/usr/bin/env bats
# ks-filter: the filtered recording against an independent numpy/scipy reference (ref_filter.py),
# batch-size and stdin/stdout invariance, edge cases, bad input and its exit codes, kills.
load helpers

setup_file() {
  PY=${KS_PYTHON:-/usr/bin/python3}
  # A 2-shank probe of 12 channels on rows of a 13-row file (row 12 is a "sync" row), in a
  # scrambled order; 20000 samples with DC offsets, slow waves, noise and spikes.
  "$PY" - "$BATS_FILE_TMPDIR" <<'PY'
import sys, json, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(1)
n, nb = 20000, 13
t = np.arange(n) / 30000.0
x = rng.normal(0, 12, (n, nb)) + rng.integers(-800, 800, nb) + 150 * np.sin(2 * np.pi * 7 * t)[:, None]
for s in rng.integers(100, n - 100, 60):
    x[s:s + 20, rng.integers(0, 12)] -= 250 * np.hanning(20)
x[:, 12] = (np.arange(n) // 500) % 2 * 64
x.astype("<i2").tofile(d + "/rec.bin")
chan = [3, 0, 1, 2, 5, 4, 11, 6, 7, 8, 10, 9]
json.dump({"chanMap": chan, "xc": [0.0] * 12, "yc": [20.0 * i for i in range(12)],
           "kcoords": [0] * 6 + [1] * 6, "n_chan": 12}, open(d + "/probe.json", "w"))
json.dump({"chanMap": [4], "xc": [0.0], "yc": [0.0], "kcoords": [0], "n_chan": 1}, open(d + "/one.json", "w"))
json.dump({"common_reference": "none"}, open(d + "/none.json", "w"))
PY
}

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-filter
  REF=("$PY" "$KS_SOURCE_DIR/tests/cli/ref_filter.py")
  cp "$BATS_FILE_TMPDIR"/{rec.bin,probe.json,one.json,none.json} .
  ARGS=(--rec rec.bin --probe probe.json --set n_chan_bin=13 -q)
}

@test "--help prints usage, options and settings on stdout, exit 0" {
  run --separate-stderr -0 "$KS" --help
  assert_output --partial "Usage: ks-filter"
  assert_output --partial "--stdout"
  assert_output --partial "highpass_cutoff = 300"
  assert_output --partial "common_reference = median"
  [ -z "$stderr" ]
}

@test "unknown option: exit 2, one line on stderr, nothing on stdout" {
  run --separate-stderr -2 "$KS" --frobnicate
  [ -z "$output" ]
  [[ "$stderr" == "ks-filter: error: unknown option '--frobnicate'"* ]]
}

@test "filtered recording matches the scipy reference, middle and both ends; stage record written last" {
  run -0 "$KS" "${ARGS[@]}" --work w --set batch_size=7000
  [ -f w/filter/filtered.bin ] && [ -f w/filter/filtered.json ] && [ -f w/filter/filter.json ]
  [ -z "$(ls w/filter | grep partial)" ]
  run -0 "${REF[@]}" --raw rec.bin --probe probe.json --n-chan-bin 13 --batch-size 7000 --filtered w --edge 2000
  assert_output --partial "ok: 20000 samples x 12 channels"
  [ "$(json_get w/filter/filter.json "j['stage']")" = filter ]
  [ "$(json_get w/filter/filter.json "j['settings']['highpass_cutoff']")" = 300 ]
  [ "$(json_get w/filter/filter.json "j['outputs'][0]['path'].endswith('filtered.bin')")" = True ]
  [ "$(json_get w/filter/filtered.json "j['dtype'], j['n_channels'], j['n_samples'], j['imin']")" = "float16 12 20000 0" ]
  # filter.json is the newest file: the stage record is written after the data it describes.
  [ "$(ls -t w/filter | head -1)" = filter.json ]
  [ -f w/probe.json ]
}

@test "the output does not depend on batch_size (identical bits)" {
  run -0 "$KS" "${ARGS[@]}" --work a --set batch_size=3001
  run -0 "$KS" "${ARGS[@]}" --work b --set batch_size=60000
  cmp a/filter/filtered.bin b/filter/filtered.bin
}

@test "standard input and standard output give the samples of file mode" {
  run -0 "$KS" "${ARGS[@]}" --work f
  run -0 bash -c "cat rec.bin | '$KS' --rec - --probe probe.json --set n_chan_bin=13 --set batch_size=4321 --stdout -q > out.f32"
  [ "$(stat -c %s out.f32)" -eq $((20000 * 12 * 4)) ]
  # filtered.bin holds exactly the float16 rounding of the float32 stream
  run -0 "$PY" -c "
import numpy as np
s = np.fromfile('out.f32', '<f4'); f = np.fromfile('f/filter/filtered.bin', '<f2')
assert np.array_equal(s.astype(np.float16).view(np.uint16), f.view(np.uint16))"
  run -0 "${REF[@]}" --raw rec.bin --probe probe.json --n-chan-bin 13 --float32 out.f32 --edge 1000
  # stdin into a work folder: the same file as from the recording file
  run -0 bash -c "'$KS' --rec - --probe probe.json --set n_chan_bin=13 --work s -q < rec.bin"
  cmp f/filter/filtered.bin s/filter/filtered.bin
  [ "$(json_get s/filter/filter.json "j['inputs'][0]['path'], j['inputs'][0]['size']")" = "- $((20000 * 13 * 2))" ]
}

@test "a recording shorter than one batch is filtered whole" {
  head -c $((500 * 13 * 2)) rec.bin > short.bin
  run -0 "$KS" --rec short.bin --probe probe.json --set n_chan_bin=13 --work w -q
  run -0 "${REF[@]}" --raw short.bin --probe probe.json --n-chan-bin 13 --filtered w
  assert_output --partial "ok: 500 samples"
}

@test "a one-channel probe gets no common reference, with a warning" {
  run --separate-stderr -0 "$KS" --rec rec.bin --probe one.json --set n_chan_bin=13 --work w
  [[ "$stderr" == *"shank 0 has 1 channel: no common reference there"* ]]
  run -0 "${REF[@]}" --raw rec.bin --probe one.json --n-chan-bin 13 --filtered w
  [ "$(json_get w/filter/filtered.json "j['unreferenced_shanks']")" = "[0]" ]
}

@test "mean reference and no reference match the reference" {
  run -0 "$KS" "${ARGS[@]}" --work m --set common_reference=mean
  run -0 "${REF[@]}" --raw rec.bin --probe probe.json --n-chan-bin 13 --reference mean --filtered m
  run -0 "$KS" "${ARGS[@]}" --work n --params none.json
  run -0 "${REF[@]}" --raw rec.bin --probe probe.json --n-chan-bin 13 --reference none --filtered n
}

@test "all-zero channels and an all-zero recording give zeros, never NaN" {
  "$PY" -c "
import numpy as np
x = np.fromfile('rec.bin', '<i2').reshape(-1, 13); x[:, [0, 1, 2]] = 0; x.tofile('zch.bin')
np.zeros_like(x).tofile('zero.bin')"
  run -0 "$KS" --rec zch.bin --probe probe.json --set n_chan_bin=13 --work z -q
  run -0 "${REF[@]}" --raw zch.bin --probe probe.json --n-chan-bin 13 --filtered z
  run -0 "$KS" --rec zero.bin --probe probe.json --set n_chan_bin=13 --work zz -q
  run -0 "$PY" -c "
import numpy as np
f = np.fromfile('zz/filter/filtered.bin', '<f2'); assert f.size == 20000 * 12 and not np.any(f), f[f != 0][:5]"
}

@test "artifact batches are zeroed, counted and reported" {
  "$PY" -c "
import numpy as np
x = np.fromfile('rec.bin', '<i2').reshape(-1, 13); x[12345, 5] = 30000; x.tofile('art.bin')"
  run --separate-stderr -0 "$KS" --rec art.bin --probe probe.json --set n_chan_bin=13 --work w \
      --set batch_size=5000 --set artifact_threshold=5000
  [[ "$stderr" == *"1 of 4 batches had |values| >= artifact_threshold 5000 and were zeroed (batches 2)"* ]]
  [ "$(json_get w/filter/filtered.json "j['zeroed_batches']")" = "[2]" ]
  [ "$(json_get w/filter/filter.json "j['extra']['zeroed_batches']")" = 1 ]
  run -0 "${REF[@]}" --raw art.bin --probe probe.json --n-chan-bin 13 --filtered w --batch-size 5000 \
      --artifact-threshold 5000
  assert_output --partial "zeroed batches [2]"
}

@test "float32 and uint16 input with scale, shift, invert_sign, tmin and tmax" {
  "$PY" -c "
import numpy as np
x = np.fromfile('rec.bin', '<i2').reshape(-1, 13)
(x * 0.25).astype('<f4').tofile('f32.bin'); (x.astype(np.int32) + 32768).astype('<u2').tofile('u16.bin')"
  run -0 "$KS" --rec f32.bin --probe probe.json --set n_chan_bin=13 --set data_dtype=float32 --set scale=4 \
      --set shift=-3 --set invert_sign=true --set tmin=0.1 --set tmax=0.5 --work a -q
  run -0 "${REF[@]}" --raw f32.bin --probe probe.json --n-chan-bin 13 --dtype float32 --scale 4 --shift -3 \
      --invert --tmin 0.1 --tmax 0.5 --filtered a
  assert_output --partial "ok: 12000 samples"
  [ "$(json_get a/filter/filtered.json "j['imin'], j['imax']")" = "3000 15000" ]
  run -0 "$KS" --rec u16.bin --probe probe.json --set n_chan_bin=13 --set data_dtype=uint16 --work b -q
  run -0 "${REF[@]}" --raw u16.bin --probe probe.json --n-chan-bin 13 --dtype uint16 --filtered b
}

@test "values beyond float16's range are clamped to +-65504, counted and warned" {
  run --separate-stderr -0 "$KS" "${ARGS[@]}" --work w --set scale=1000
  [[ "$stderr" == *"values beyond +-65504 were clamped"* ]]
  n=$(json_get w/filter/filtered.json "j['n_saturated']")
  [ "$n" -gt 0 ]
  run -0 "$PY" -c "
import numpy as np
f = np.fromfile('w/filter/filtered.bin', '<f2').astype(float)
assert np.isfinite(f).all() and np.abs(f).max() == 65504 and (np.abs(f) == 65504).sum() >= $n"
}

@test "non-finite float32 input: exit 2 naming the sample" {
  "$PY" -c "
import numpy as np
x = np.fromfile('rec.bin', '<i2').reshape(-1, 13).astype('<f4'); x[777, 3] = np.nan; x.tofile('nan.bin')"
  run --separate-stderr -2 "$KS" --rec nan.bin --probe probe.json --set n_chan_bin=13 --set data_dtype=float32 --work w
  [[ "$stderr" == *"nan.bin: sample 777, row 3 is NaN"* ]]
  [ ! -e w/filter/filtered.bin ] && [ ! -e w/filter/filter.json ]
}

@test "bad settings and input: exit 2 naming the setting or file, no output" {
  for kv in highpass_cutoff=0 highpass_cutoff=15000 highpass_cutoff=0.01 batch_size=0 common_reference=foo \
            tmin=5 data_dtype=int8; do
    run --separate-stderr -2 "$KS" "${ARGS[@]}" --work w --set "$kv"
    [[ "$stderr" == *"${kv%%=*}"* ]] || { echo "$kv: $stderr"; false; }
    [ ! -e w/filter/filter.json ]
  done
  run --separate-stderr -2 "$KS" --rec rec.bin --probe probe.json --work w
  [[ "$stderr" == *"n_chan_bin"* ]]
  run --separate-stderr -2 "$KS" --rec nope.bin --probe probe.json --set n_chan_bin=13 --work w
  [[ "$stderr" == *"nope.bin"* ]]
  run --separate-stderr -2 "$KS" --rec rec.bin --probe probe.json --set n_chan_bin=13
  [[ "$stderr" == *"--stdout"* ]]
  run --separate-stderr -2 "$KS" --rec rec.bin --set n_chan_bin=13 --work fresh
  [[ "$stderr" == *"--probe"* ]]
  run --separate-stderr -2 bash -c "head -c 1001 rec.bin | '$KS' --rec - --probe probe.json --set n_chan_bin=13 --stdout > /dev/null"
  [[ "$stderr" == *"standard input: "*"not a whole number of samples"* ]]
  run --separate-stderr -2 bash -c "'$KS' --rec - --probe probe.json --set n_chan_bin=13 --stdout < /dev/null"
  [[ "$stderr" == *"standard input: no samples"* ]]
}

@test "--device cuda without a usable GPU: exit 4" {
  KS_FORCE_CPU=1 run --separate-stderr -4 "$KS" "${ARGS[@]}" --work w --device cuda
  [[ "$stderr" == *"no usable GPU"* ]]
}

@test "a killed run leaves nothing complete-looking, even over a finished one" {
  run -0 "$KS" "${ARGS[@]}" --work w
  mkfifo fifo
  "$KS" --rec - --probe probe.json --set n_chan_bin=13 --set batch_size=2000 --work w -q < fifo &
  pid=$!
  exec 8> fifo   # (bats itself uses fd 3)
  head -c $((8000 * 13 * 2)) rec.bin >&8   # a few batches in, then the input stalls
  for _ in $(seq 50); do [ -e w/filter/filtered.bin.partial ] && [ ! -e w/filter/filter.json ] && break; sleep 0.1; done
  sleep 0.3
  [ -e w/filter/filtered.bin.partial ]
  kill -0 "$pid"   # still running, waiting for more input
  kill -9 "$pid"
  wait "$pid" || true
  exec 8>&-
  [ ! -e w/filter/filter.json ]
  [ ! -e w/filter/filtered.bin ]
  [ ! -e w/filter/filtered.json ]
}

@test "a rerun writes identical files; --probe defaults to the work folder's probe.json" {
  run -0 "$KS" "${ARGS[@]}" --work w
  cp w/filter/filtered.bin first.bin
  cp w/filter/filtered.json first.json
  run -0 "$KS" --rec rec.bin --set n_chan_bin=13 --work w -q
  cmp first.bin w/filter/filtered.bin
  cmp first.json w/filter/filtered.json
}
