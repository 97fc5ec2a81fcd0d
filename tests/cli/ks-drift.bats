#!/usr/bin/env bats
# ks-drift end to end on ks-sim recordings with known motion: the estimate against the truth, the
# files of formats/motion.md, external motion, nblocks = 0, too few spikes, bad input.
load helpers

setup_file() {
  export KS_BIN_DIR PY=${KS_PYTHON:-/usr/bin/python3}
  local d=$BATS_FILE_TMPDIR
  # 60 s of the 32-channel smoke probe with a slow rigid drift of +-30 µm: filtered and whitened once.
  "$KS_BIN_DIR/ks-sim" --preset smoke --duration 60 --drift rigid --seed 3 --out "$d/sim" -q
  "$KS_BIN_DIR/ks-filter" --rec "$d/sim/recording.bin" --probe "$d/sim/probe.json" \
    --params "$d/sim/params.json" --work "$d/w" -q
  "$KS_BIN_DIR/ks-whiten" --work "$d/w" -q
}

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-drift
  W=$BATS_FILE_TMPDIR/w
  SIM=$BATS_FILE_TMPDIR/sim
}

# copy_work NAME: a private copy of the filtered, whitened work folder (tests may run in any order).
copy_work() {
  rm -rf "$BATS_TEST_TMPDIR/$1"
  cp -r "$W" "$BATS_TEST_TMPDIR/$1"
  rm -rf "$BATS_TEST_TMPDIR/$1/drift"
  echo "$BATS_TEST_TMPDIR/$1"
}

# motion_error WORK: RMS and max error (µm) of dshift against -(true motion averaged over each batch
# and over each block's depth range), after removing the mean difference of each block.
motion_error() {
  "$PY" - "$1" "$SIM" <<'PY'
import sys, json, numpy as np
w, sim = sys.argv[1], sys.argv[2]
d = np.load(w + "/drift/dshift.npy"); yblk = np.load(w + "/drift/yblk.npy")
j = json.load(open(w + "/drift/drift.json"))["extra"]
mo = np.load(sim + "/gt/motion.npy"); mt = np.load(sim + "/gt/motion_time_s.npy"); md = np.load(sim + "/gt/motion_depth_um.npy")
B = j["batch_size"] / 30000.0
truth = np.zeros_like(d)
for b in range(d.shape[0]):
    rows = (mt >= b * B) & (mt < (b + 1) * B)
    for k, y in enumerate(yblk):
        col = np.argmin(abs(md - y)) if len(yblk) > 1 else slice(None)
        truth[b, k] = -np.mean(mo[rows][:, col])
err = d - truth
err -= err.mean(axis=0)
print("%.3f %.3f" % (np.sqrt(np.mean(err ** 2)), np.abs(err).max()))
PY
}

@test "ks-drift --help names the options, the drift settings and the outputs" {
  run "$KS" --help
  assert_success
  assert_output --partial "--motion PATH"
  assert_output --partial "--no-map"
  assert_output --partial "nblocks"
  assert_output --partial "sig_interp"
  assert_output --partial "drift_map.png"
}

@test "ks-drift without a whitened work folder is a usage error naming what to run" {
  mkdir -p empty
  run "$KS" --work empty
  assert_failure 2
  assert_output --partial "probe.json"
  run "$KS" --no-map
  assert_failure 2
  assert_output --partial "--work"
}

@test "ks-drift estimates a rigid drift within a few µm and writes every file of formats/motion.md" {
  w=$(copy_work rigid)
  run "$KS" --work "$w" -q
  assert_success
  run "$PY" - "$w" <<'PY'
import sys, json, numpy as np
w = sys.argv[1]
j = json.load(open(w + "/drift/drift.json"))
e = j["extra"]
assert j["stage"] == "drift" and e["format"] == "ks-motion" and e["version"] == 1, e
assert e["status"] == "ok" and e["source"] == "estimated", e
d = np.load(w + "/drift/dshift.npy"); y = np.load(w + "/drift/yblk.npy")
assert d.dtype == np.float64 and d.shape == (30, 1) and y.shape == (1,), (d.shape, y.shape)
t = np.load(w + "/drift/spikes_times.npy"); z = np.load(w + "/drift/spikes_depth_um.npy")
a = np.load(w + "/drift/spikes_amplitudes.npy")
assert t.dtype == np.int64 and z.dtype == np.float32 and a.dtype == np.float32
assert len(t) == len(z) == len(a) == e["n_spikes"] > 1000, (len(t), e["n_spikes"])
assert t.min() >= 0 and t.max() < 60 * 30000 and (a > e["Th_universal"]).all()
probe = json.load(open(w + "/probe.json"))
assert z.min() >= min(probe["yc"]) - 1 and z.max() <= max(probe["yc"]) + 1
wt = np.load(w + "/drift/wTEMP.npy"); wp = np.load(w + "/drift/wPCA.npy")
assert wt.shape == (6, 61) and np.allclose((wt ** 2).sum(1), 1, atol=1e-4)
assert np.allclose(wp @ wp.T, np.eye(6), atol=1e-4)
png = open(w + "/drift/drift_map.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
assert int.from_bytes(png[16:20], "big") == 1800 and int.from_bytes(png[20:24], "big") == 900
outs = [o["path"].split("/")[-1] for o in j["outputs"]]
assert "dshift.npy" in outs and "drift_map.png" in outs, outs
PY
  assert_success
  read -r rms max < <(motion_error "$w")
  echo "rigid: RMS $rms µm, max $max µm"
  "$PY" -c "import sys; sys.exit(0 if $rms < 3 and $max < 8 else 1)"
}

@test "ks-drift nonrigid (nblocks=5) follows the same rigid drift in every block" {
  w=$(copy_work nonrigid)
  run "$KS" --work "$w" -q --set nblocks=5 --no-map
  assert_success
  assert [ ! -e "$w/drift/drift_map.png" ]
  run json_get "$w/drift/drift.json" 'j["extra"]["n_blocks"], j["extra"]["status"]'
  assert_output "9 ok"
  read -r rms max < <(motion_error "$w")
  echo "nonrigid: RMS $rms µm, max $max µm"
  "$PY" -c "import sys; sys.exit(0 if $rms < 5 and $max < 15 else 1)"
}

@test "ks-drift --motion takes the ks-sim truth: dshift is minus the batch mean, exactly as documented" {
  w=$(copy_work external)
  run "$KS" --work "$w" -q --motion "$SIM/gt" --no-map
  assert_success
  run "$PY" - "$w" "$SIM" <<'PY'
import sys, json, numpy as np
w, sim = sys.argv[1], sys.argv[2]
e = json.load(open(w + "/drift/drift.json"))["extra"]
assert e["source"] == "external" and e["status"] == "ok" and e["n_spikes"] == 0, e
d = np.load(w + "/drift/dshift.npy"); y = np.load(w + "/drift/yblk.npy")
mo = np.load(sim + "/gt/motion.npy").astype(float); mt = np.load(sim + "/gt/motion_time_s.npy").astype(float)
md = np.load(sim + "/gt/motion_depth_um.npy")
assert np.allclose(y, md) and d.shape == (30, len(md)), (y, d.shape)
# Batch mean of the piecewise-linear displacement, sampled finely.
for b in (0, 7, 29):
    ts = b * 2.0 + (np.arange(4000) + 0.5) / 4000 * 2.0
    want = -np.array([np.interp(ts, mt, mo[:, k]).mean() for k in range(len(md))])
    assert np.allclose(d[b], want, atol=0.05), (b, d[b] - want)
PY
  assert_success
}

@test "ks-drift --motion reads a JSON file and a SpikeInterface folder; bad ones are usage errors" {
  w=$(copy_work json)
  cat > m.json <<'EOF'
{"time_bins_s": [0, 60], "depth_bins_um": [0], "displacement_um": [0, 12]}
EOF
  run "$KS" --work "$w" -q --motion m.json --no-map
  assert_success
  run "$PY" -c "import numpy as np; d = np.load('$w/drift/dshift.npy'); print(d.shape, round(d[0,0],3), round(d[29,0],3))"
  assert_output "(30, 1) -0.2 -11.8"
  mkdir si
  "$PY" -c "
import numpy as np
np.save('si/spatial_bins_um.npy', np.array([100.0, 300.0]))
np.save('si/temporal_bins_s_seg0.npy', np.array([1.0]))
np.save('si/displacement_seg0.npy', np.array([[4.0, 8.0]]))"
  run "$KS" --work "$w" -q --motion si --no-map
  assert_success
  run "$PY" -c "import numpy as np; print(np.load('$w/drift/dshift.npy')[3].tolist(), np.load('$w/drift/yblk.npy').tolist())"
  assert_output "[-4.0, -8.0] [100.0, 300.0]"
  echo '{"time_bins_s": [1, 0], "depth_bins_um": [0], "displacement_um": [0, 1]}' > bad.json
  run "$KS" --work "$w" -q --motion bad.json
  assert_failure 2
  assert_output --partial "bad.json"
  run "$KS" --work "$w" -q --motion nowhere.json
  assert_failure 2
  assert_output --partial "nowhere.json"
  # Bad input is found before anything is touched: the previous result stays, whole.
  run json_get "$w/drift/drift.json" 'j["extra"]["motion_file"]'
  assert_output "si"
}

@test "ks-drift with nblocks=0 writes a disabled, all-zero motion without detecting" {
  w=$(copy_work off)
  run "$KS" --work "$w" -q --set nblocks=0
  assert_success
  run json_get "$w/drift/drift.json" 'j["extra"]["status"], j["extra"]["source"], j["extra"]["n_spikes"]'
  assert_output "disabled none 0"
  run "$PY" -c "import numpy as np; d = np.load('$w/drift/dshift.npy'); print(d.shape, abs(d).max())"
  assert_output "(30, 1) 0.0"
  assert [ ! -e "$w/drift/drift_map.png" ]
}

@test "ks-drift on a recording without spikes: zero motion and a warning, or exit 3 when nblocks was asked for" {
  make_recording noise.bin 32 300000
  make_probe probe.json 32
  "$KS_BIN_DIR/ks-filter" --rec noise.bin --probe probe.json --set n_chan_bin=32 --work quiet -q
  "$KS_BIN_DIR/ks-whiten" --work quiet -q
  run "$KS" --work quiet
  assert_success
  assert_output --partial "too few"
  run json_get quiet/drift/drift.json 'j["extra"]["status"]'
  assert_output "too_few_spikes"
  run "$PY" -c "import numpy as np; print(abs(np.load('quiet/drift/dshift.npy')).max())"
  assert_output "0.0"
  run "$KS" --work quiet -q --set nblocks=1
  assert_failure 3
  assert_output --partial "nblocks=0"
  assert [ ! -e quiet/drift/drift.json ]
}

@test "ks-drift rejects out-of-range drift settings naming them" {
  w=$(copy_work bad)
  run "$KS" --work "$w" --set nblocks=-1
  assert_failure 2
  assert_output --partial "nblocks"
  run "$KS" --work "$w" --set Th_universal=100
  assert_failure 2
  assert_output --partial "Th_universal"
  run "$KS" --work "$w" --set sig_interp=0
  assert_failure 2
  assert_output --partial "sig_interp"
}
