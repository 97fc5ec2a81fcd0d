#!/usr/bin/env bats
# ks-sim: usage, bad options and their exit codes, a short smoke run read back with numpy
# (shapes and invariants of formats/ground-truth.md), identical bytes on rerun, sessions.
load helpers

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-sim
}

@test "--help prints usage on stdout naming the tool, exit 0" {
  run --separate-stderr -0 "$KS" --help
  assert_output --partial "Usage: ks-sim"
  assert_output --partial "--preset"
  assert_output --partial "np64-drift"
  [ -z "$stderr" ]
}

@test "bare call prints usage, exit 0" {
  run -0 "$KS"
  assert_output --partial "Usage: ks-sim"
}

@test "unknown option: exit 2, one line on stderr, nothing on stdout" {
  run --separate-stderr -2 "$KS" --frobnicate
  [ -z "$output" ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "ks-sim: error: "*"--frobnicate"* ]]
}

@test "bad --preset: exit 2 with a one-line message listing the presets, nothing written" {
  run --separate-stderr -2 "$KS" --preset np128 --out sim
  [ -z "$output" ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "ks-sim: error: --preset np128: unknown preset; expected one of smoke, np64, np64-drift, np384" ]]
  [ ! -e sim ]
}

@test "bad values: exit 2 naming the option" {
  run --separate-stderr -2 "$KS" --out sim --duration -5
  [[ "$stderr" == *"--duration"* ]]
  run --separate-stderr -2 "$KS" --out sim --drift sideways
  [[ "$stderr" == *"--drift sideways"* ]]
  run --separate-stderr -2 "$KS" --out sim --noise-corr 2
  [[ "$stderr" == *"--noise-corr"* ]]
  run --separate-stderr -2 "$KS" --out sim --probe nosuch.json
  [[ "$stderr" == *"nosuch.json"* ]]
  run --separate-stderr -2 "$KS" --out sim --set Th_learned=8
  [[ "$stderr" == *"--set"* ]]
  run --separate-stderr -2 "$KS" --duration 1
  [[ "$stderr" == *"--out"* ]]
  [ ! -e sim ]
}

@test "--out holding other files is refused (exit 2), nothing overwritten" {
  mkdir mine && echo keep > mine/notes.txt
  run --separate-stderr -2 "$KS" --out mine --duration 1
  [[ "$stderr" == *"mine"* ]]
  [ "$(ls mine)" = "notes.txt" ]
}

@test "smoke run: every file of the spec, numpy loads them with consistent shapes" {
  run -0 "$KS" --preset smoke --duration 2 --seed 3 --drift rigid,step --out sim -q
  "$PY" - <<'PY'
import json, numpy as np
d = "sim"
p = json.load(open(d + "/params.json"))
assert set(p) == {"n_chan_bin", "fs"}, p
assert p["n_chan_bin"] == 32 and p["fs"] == 30000
probe = json.load(open(d + "/probe.json"))
assert len(probe["chanMap"]) == 32 and len(probe["xc"]) == 32 and len(probe["yc"]) == 32
s = json.load(open(d + "/sim.json"))
assert s["uv_per_bit"] == 2.34375 and s["dtype"] == "int16" and s["seed"] == 3
raw = np.fromfile(d + "/recording.bin", dtype=np.int16)
assert raw.size == 2 * 30000 * 32, raw.size
x = raw.reshape(-1, 32)
assert np.abs(x).max() <= 512  # 10-bit ADC range
g = lambda n: np.load(f"{d}/gt/{n}.npy")
st, sc, sa = g("spike_times"), g("spike_clusters"), g("spike_amplitudes")
pos, tm, fr = g("unit_positions"), g("templates"), g("unit_firing_rates")
mo, mt, md = g("motion"), g("motion_time_s"), g("motion_depth_um")
U = pos.shape[0]
assert st.dtype == np.int64 and sc.dtype == np.int32 and sa.dtype == np.float32
assert st.shape == sc.shape == sa.shape and st.size > 100
assert np.all(np.diff(st) >= 0) and st.min() >= 0 and st.max() < x.shape[0]
assert sc.min() >= 0 and sc.max() < U
assert pos.dtype == np.float32 and pos.shape == (U, 3)
assert tm.dtype == np.float32 and tm.shape == (U, 61, 32)
peak = np.abs(tm).reshape(U, -1).argmax(1) // 32
assert np.all(peak == 20), peak
amp = g("unit_amplitudes_uv")
assert np.allclose(np.abs(tm).max(axis=(1, 2)), amp, rtol=1e-3)
assert fr.shape == (U,) and np.all((fr >= 0.5) & (fr <= 30))
assert np.array_equal(g("unit_ids"), np.arange(U))
assert g("unit_peak_channels").shape == (U,)
assert g("channel_noise_uv").shape == (32,)
assert g("artifacts").shape == (0, 2)
assert mo.shape == (mt.size, md.size) == (20, 16), mo.shape
assert np.allclose(mt, 0.05 + 0.1 * np.arange(20)) and np.allclose(md, 20 + 20 * np.arange(16))
assert np.ptp(mo) > 5  # rigid drift + step
assert len(s["units"]) == U and sum(u["n_spikes"] for u in s["units"]) == st.size
# refractory periods hold
for u in range(U):
    t = st[sc == u]
    assert np.all(np.diff(t) >= s["units"][u]["refractory_samples"]), u
PY
}

@test "same seed twice: identical recording.bin; another seed: different" {
  run -0 "$KS" --duration 1 --out a -q --threads 1
  run -0 "$KS" --duration 1 --out b -q --threads 2
  cmp a/recording.bin b/recording.bin
  cmp a/gt/spike_times.npy b/gt/spike_times.npy
  cmp a/gt/templates.npy b/gt/templates.npy
  run -0 "$KS" --duration 1 --out c -q --seed 2
  ! cmp -s a/recording.bin c/recording.bin
  # rerun into a former output folder replaces it
  run -0 "$KS" --duration 1 --out a -q --seed 2
  cmp a/recording.bin c/recording.bin
  [ -z "$(find . -name '*.partial')" ]
}

@test "noise-only recording: RMS and neighbour correlation as configured" {
  run -0 "$KS" --duration 4 --n-units 0 --lfp-uv 0 --noise-uv 15 --noise-corr 0.4 --out n -q
  "$PY" - <<'PY'
import json, numpy as np
s = json.load(open("n/sim.json")); pr = json.load(open("n/probe.json"))
x = np.fromfile("n/recording.bin", dtype=np.int16).reshape(-1, 32).astype(float) * s["uv_per_bit"]
x = x[:, pr["chanMap"]]
want = np.load("n/gt/channel_noise_uv.npy")
r = x.std(0) / np.sqrt(want ** 2 + s["uv_per_bit"] ** 2 / 12)  # + quantisation noise
assert np.all(np.abs(r - 1) < 0.04), r
xc, yc = np.array(pr["xc"]), np.array(pr["yc"])
D = np.hypot(xc[:, None] - xc[None], yc[:, None] - yc[None])
nn = (D > 0) & (D <= D[D > 0].min() * 1.01)
c = np.corrcoef(x.T)[nn].mean()
assert abs(c - 0.4) < 0.04, c
PY
}

@test "--sessions 2: session folders, global unit ids, sessions.json" {
  run -0 "$KS" --duration 1 --sessions 2 --out ms -q
  [ -f ms/sessions.json ] && [ -f ms/session_00/recording.bin ] && [ -f ms/session_01/recording.bin ]
  "$PY" - <<'PY'
import json, numpy as np
j = json.load(open("ms/sessions.json"))
assert j["n_sessions"] == 2 and len(j["sessions"]) == 2
for s in j["sessions"]:
    ids = np.load(f"ms/{s['dir']}/gt/unit_ids.npy")
    assert list(ids) == s["unit_ids"]
    assert np.load(f"ms/{s['dir']}/gt/unit_positions.npy").shape[0] == ids.size
a, b = (set(s["unit_ids"]) for s in j["sessions"])
assert 0 < len(a - b) < 0.3 * len(a), (len(a), len(a - b))
assert abs(j["sessions"][1]["probe_offset_um"][1]) <= 50
PY
  # a single recording written over it replaces the sessions
  run -0 "$KS" --duration 1 --out ms -q
  [ -f ms/sim.json ] && [ ! -e ms/sessions.json ] && [ ! -e ms/session_00 ] && [ ! -e ms/session_01 ]
}
