#!/usr/bin/env bats
# ks-whiten: usage, bad inputs and their exit codes, and runs on small work folders whose filtered
# recording is spatially correlated Gaussian noise made here with numpy, checked against numpy:
# the covariance, identity whitened covariance over each neighbourhood, the whitened copy.
load helpers

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-whiten
}

# make_work DIR N_SAMPLES [DTYPE [N_SHANKS [N_CHAN]]]: DIR/probe.json (2 columns 32 µm apart,
# 20 µm rows), DIR/filter/filtered.{bin,json} (formats/filtered.md) holding noise with covariance
# 100 exp(-d / 40 µm) + 30 I (same shank only), and a stand-in DIR/filter/filter.json.
make_work() {
  "$PY" - "$@" <<'PY'
import sys, os, json, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
dtype = sys.argv[3] if len(sys.argv) > 3 else "float16"
shanks = int(sys.argv[4]) if len(sys.argv) > 4 else 1
C = int(sys.argv[5]) if len(sys.argv) > 5 else 32
os.makedirs(d + "/filter", exist_ok=True)
per = C // shanks
k = np.arange(C) // per
xc = (np.arange(C) % 2) * 32.0 + k * 200.0
yc = ((np.arange(C) % per) // 2) * 20.0
json.dump({"chanMap": list(range(C)), "xc": xc.tolist(), "yc": yc.tolist(),
           "kcoords": k.tolist(), "n_chan": C}, open(d + "/probe.json", "w"))
dist = np.hypot(xc[:, None] - xc[None, :], yc[:, None] - yc[None, :])
K = 100 * np.exp(-dist / 40) * (k[:, None] == k[None, :]) + 30 * np.eye(C)
rng = np.random.default_rng(1)
X = np.linalg.cholesky(K) @ rng.standard_normal((C, n))
scale = 0.25 if dtype == "int16" else 1.0   # int16: stored = round(x / scale)
stored = np.round(X.T / scale) if dtype == "int16" else X.T
stored.astype(dtype).tofile(d + "/filter/filtered.bin")
json.dump({"format": "ks-filtered", "version": 1, "dtype": dtype, "n_channels": C, "n_samples": n,
           "imin": 0, "fs": 30000.0, "scale": scale}, open(d + "/filter/filtered.json", "w"))
json.dump({"format": "ks-provenance", "version": 1, "stage": "filter"}, open(d + "/filter/filter.json", "w"))
PY
}

# check_run DIR USED_SAMPLES RANGE: numpy checks of DIR/whiten/ against DIR/filter/.
check_run() {
  "$PY" - "$@" <<'PY'
import sys, json, numpy as np
d, used, R = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
info = json.load(open(d + "/filter/filtered.json"))
C, n = info["n_channels"], info["n_samples"]
X = np.fromfile(d + "/filter/filtered.bin", dtype=info["dtype"]).reshape(n, C).T.astype(np.float64) * info["scale"]
Xu = X[:, :used]
ref = Xu @ Xu.T / used
cc = np.load(d + "/whiten/covariance.npy")
W = np.load(d + "/whiten/whiten.npy")
Wi = np.load(d + "/whiten/whiten_inv.npy")
assert cc.dtype == np.float64 and cc.shape == (C, C), (cc.dtype, cc.shape)
assert W.dtype == np.float32 and W.shape == (C, C) and Wi.dtype == np.float32
assert np.isfinite(W).all() and np.isfinite(Wi).all()
cov_err = np.abs(cc - ref).max() / np.abs(ref).max()
assert cov_err < 1e-13, cov_err
# Neighbourhoods as formats/whiten.md defines them: same shank, (distance, index) order.
p = json.load(open(d + "/probe.json"))
xc, yc, k = map(np.asarray, (p["xc"], p["yc"], p["kcoords"]))
Y = W.astype(np.float64) @ Xu
wc = Y @ Y.T / used
worst_diag, worst_off = 0.0, 0.0
for j in range(C):
    cand = [c for c in range(C) if k[c] == k[j]]
    d2 = [(xc[c] - xc[j]) ** 2 + (yc[c] - yc[j]) ** 2 for c in cand]
    nb = [c for _, c in sorted(zip(d2, cand))][:R]
    assert set(np.flatnonzero(W[j])) <= set(nb), (j, np.flatnonzero(W[j]), nb)
    worst_diag = max(worst_diag, abs(wc[j, j] - 1))
    worst_off = max(worst_off, max(abs(wc[j, c]) for c in nb if c != j) if len(nb) > 1 else 0)
assert worst_diag < 1e-4, worst_diag
assert worst_off < 0.1, worst_off
assert np.abs((W.astype(np.float64) + 1e-5 * np.eye(C)) @ Wi - np.eye(C)).max() < 1e-4
print(f"covariance rel err {cov_err:.2e}; whitened cov: max |diag-1| {worst_diag:.2e}, "
      f"max |offdiag| within neighbourhoods {worst_off:.4f}")
PY
}

@test "--help prints usage on stdout, exit 0" {
  run --separate-stderr -0 "$KS" --help
  assert_output --partial "Usage: ks-whiten"
  assert_output --partial "--write-whitened"
  assert_output --partial "whitening_range"
  [ -z "$stderr" ]
}

@test "unknown option: exit 2, one line on stderr, nothing on stdout" {
  run --separate-stderr -2 "$KS" --frobnicate
  [ -z "$output" ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "ks-whiten: error: unknown option '--frobnicate'"* ]]
}

@test "no --work: exit 2" {
  run --separate-stderr -2 "$KS" --set nskip=2
  [[ "$stderr" == *"--work"* ]]
}

@test "missing filter/: exit 2 naming it; missing probe.json: exit 2 naming it" {
  mkdir w
  run --separate-stderr -2 "$KS" --work w
  [[ "$stderr" == *"w/filter/filter.json: not found"* ]]
  make_work w2 1000
  rm w2/probe.json
  run --separate-stderr -2 "$KS" --work w2
  [[ "$stderr" == *"w2/probe.json: not found"* ]]
  [ ! -e w2/whiten/whiten.json ]
}

@test "bad filtered recording: truncated .bin, channel count unlike the probe: exit 2" {
  make_work w 1000
  truncate -s 100 w/filter/filtered.bin
  run --separate-stderr -2 "$KS" --work w
  [[ "$stderr" == *"filtered.bin"* ]]
  make_work v 1000 float16 1 8
  "$PY" -c "import json; p=json.load(open('v/probe.json')); p['chanMap']=p['chanMap'][:6]; p['xc']=p['xc'][:6]; p['yc']=p['yc'][:6]; p['kcoords']=p['kcoords'][:6]; p['n_chan']=6; json.dump(p, open('v/probe.json','w'))"
  run --separate-stderr -2 "$KS" --work v
  [[ "$stderr" == *"8 channels, but"*"probe.json has 6"* ]]
}

@test "settings out of range: exit 2 naming the setting" {
  make_work w 1000
  run --separate-stderr -2 "$KS" --work w --set nskip=0
  [[ "$stderr" == *"nskip"* ]]
  run --separate-stderr -2 "$KS" --work w --set whitening_range=0
  [[ "$stderr" == *"whitening_range"* ]]
  run --separate-stderr -2 "$KS" --work w --set batch_size=-5
  [[ "$stderr" == *"batch_size"* ]]
  [ ! -e w/whiten/whiten.json ]
}

@test "run: covariance equals numpy's, whitened covariance is identity over each neighbourhood" {
  make_work w 50000
  # batch_size 20000: 3 batches, the last (10000 samples) left out; nskip 1: batches 0 and 1.
  run --separate-stderr -0 "$KS" --work w --set batch_size=20000 --set nskip=1 --set whitening_range=8 --device cpu
  run -0 check_run w 40000 8
  echo "$output"
  [ -f w/whiten/whiten.json ]
  [ "$(json_get w/whiten/whiten.json 'j["stage"]')" = whiten ]
  [ "$(json_get w/whiten/whiten.json 'j["extra"]["batches"]')" = "[0, 1]" ]
  [ "$(json_get w/whiten/whiten.json 'j["settings"]["whitening_range"]')" = 8 ]
  [ "$(json_get w/whiten/whiten.json 'len(j["outputs"])')" = 3 ]
  [ -z "$(find w -name '*.partial')" ]
}

@test "int16 filtered data with a scale; two shanks get no weight across" {
  make_work w 30000 int16 2
  run --separate-stderr -0 "$KS" --work w --set batch_size=30000 --set whitening_range=32
  run -0 check_run w 30000 32
  echo "$output"
  "$PY" -c "
import numpy as np; W = np.load('w/whiten/whiten.npy')
assert (W[:16, 16:] == 0).all() and (W[16:, :16] == 0).all()"
}

@test "--write-whitened: int16 copy equals round(200 x whiten.npy @ filtered)" {
  make_work w 12345
  run --separate-stderr -0 "$KS" --work w --write-whitened --set batch_size=5000 --set whitening_range=6
  "$PY" - <<'PY'
import json, numpy as np
info = json.load(open("w/filter/filtered.json")); C, n = info["n_channels"], info["n_samples"]
X = np.fromfile("w/filter/filtered.bin", dtype=info["dtype"]).reshape(n, C).T.astype(np.float64)
W = np.load("w/whiten/whiten.npy").astype(np.float64)
side = json.load(open("w/whiten/whitened.json"))
assert side["format"] == "ks-whitened" and side["dtype"] == "int16"
assert (side["n_channels"], side["n_samples"], side["scale"]) == (C, n, 0.005), side
q = np.fromfile("w/whiten/whitened.bin", dtype="<i2").reshape(n, C).T
want = np.clip(np.round(200 * (W @ X)), -32768, 32767)
diff = np.abs(q - want)
assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
PY
  [ "$(json_get w/whiten/whiten.json 'len(j["outputs"])')" = 5 ]
  # A rerun without the option removes the now possibly stale copy.
  run --separate-stderr -0 "$KS" --work w --set batch_size=5000 --set whitening_range=6
  [ ! -e w/whiten/whitened.bin ] && [ ! -e w/whiten/whitened.json ]
}

@test "shorter than one batch: all samples used; one channel; all-zero channel: finite outputs" {
  make_work w 3000
  run --separate-stderr -0 "$KS" --work w --set whitening_range=8   # default batch_size 60000
  [[ "$stderr" == *"shorter than one batch"* ]]
  run -0 check_run w 3000 8

  make_work one 2000 float32 1 1
  run --separate-stderr -0 "$KS" --work one
  "$PY" -c "
import numpy as np
x = np.fromfile('one/filter/filtered.bin', dtype='<f4').astype(np.float64)
W = np.load('one/whiten/whiten.npy'); Wi = np.load('one/whiten/whiten_inv.npy')
assert W.shape == (1, 1) and abs(W[0,0] - 1/np.sqrt((x*x).mean() + 1e-6)) < 1e-6 * W[0,0], W
assert abs(Wi[0,0] - 1/(W[0,0].astype(np.float64) + 1e-5)) < 1e-6 * Wi[0,0], Wi"

  make_work z 4000 float32 1 8
  "$PY" -c "
import numpy as np
x = np.fromfile('z/filter/filtered.bin', dtype='<f4').reshape(4000, 8); x[:, 3] = 0; x.tofile('z/filter/filtered.bin')"
  run --separate-stderr -0 "$KS" --work z --write-whitened
  [[ "$stderr" == *"1 of 8 channels are flat"* ]]
  "$PY" -c "
import numpy as np
W = np.load('z/whiten/whiten.npy'); Wi = np.load('z/whiten/whiten_inv.npy')
assert np.isfinite(W).all() and np.isfinite(Wi).all()
assert abs(W[3, 3] - 1000) < 1e-3, W[3, 3]
q = np.fromfile('z/whiten/whitened.bin', dtype='<i2').reshape(4000, 8)
assert (q[:, 3] == 0).all()"
  [ "$(json_get z/whiten/whiten.json 'j["extra"]["flat_channels"]')" = "[3]" ]
}

@test "identical outputs on rerun and with another thread count" {
  make_work w 20000
  run -0 "$KS" --work w --set batch_size=4000 --set nskip=2 --threads 1
  cp -r w/whiten first
  run -0 "$KS" --work w --set batch_size=4000 --set nskip=2 --threads 2
  for f in covariance.npy whiten.npy whiten_inv.npy; do cmp "first/$f" "w/whiten/$f"; done
}

@test "--device cuda without a usable GPU (KS_FORCE_CPU hides it): exit 4, nothing written" {
  make_work w 1000
  KS_FORCE_CPU=1 run --separate-stderr -4 "$KS" --work w --device cuda
  [[ "$stderr" == *"--device cuda"* ]]
  [ ! -e w/whiten/whiten.json ]
}

@test "pipeline: ks-sim -> ks-filter -> ks-whiten; whitened noise near identity per neighbourhood" {
  [ -x "$KS_BIN_DIR/ks-sim" ] && [ -x "$KS_BIN_DIR/ks-filter" ] || skip "ks-sim or ks-filter not built"
  run -0 "$KS_BIN_DIR/ks-sim" --out sim --preset smoke --duration 4 --seed 3 -q
  run -0 "$KS_BIN_DIR/ks-filter" --rec sim/recording.bin --probe sim/probe.json --work w --params sim/params.json \
    --set batch_size=30000 -q
  run --separate-stderr -0 "$KS" --work w --params sim/params.json --set batch_size=30000 --set nskip=2
  [ "$(json_get w/whiten/whiten.json 'j["extra"]["batches"]')" = "[0, 2]" ]
  # batches 0 and 2 are not contiguous: check_run takes the first samples, so compare here.
  "$PY" - <<'PY'
import json, numpy as np
info = json.load(open("w/filter/filtered.json")); C, n = info["n_channels"], info["n_samples"]
X = np.fromfile("w/filter/filtered.bin", dtype=info["dtype"]).reshape(n, C).T.astype(np.float64) * info["scale"]
Xu = np.concatenate([X[:, 0:30000], X[:, 60000:90000]], axis=1)
ref = Xu @ Xu.T / Xu.shape[1]
cc = np.load("w/whiten/covariance.npy")
assert np.abs(cc - ref).max() / np.abs(ref).max() < 1e-13
W = np.load("w/whiten/whiten.npy").astype(np.float64)
wc = (W @ Xu) @ (W @ Xu).T / Xu.shape[1]
assert np.abs(np.diag(wc) - 1).max() < 1e-4, np.diag(wc)
nz = W != 0
assert np.abs(wc - np.eye(C))[nz].max() < 0.1, np.abs(wc - np.eye(C))[nz].max()
PY
}
