#!/usr/bin/env bats
# ks-score: usage, bad inputs and their exit codes, and a small ground truth + Phy folder scored
# end to end, with the expected numbers worked out by hand below.
load helpers

setup() {
  common_setup
  KS=$KS_BIN_DIR/ks-score
}

# make_case SIM PHY [uint64]: three true units (ids 0, 1, 2; 500 spikes each, at k*600 + 100,
# + 300, + 500 samples, fs 30000 Hz so 0.4 ms = 12 samples) and a sorting of four units:
#   10 = unit 0 shifted by 5 samples         -> accuracy 1
#   11 = unit 1 without every 5th spike      -> recall 0.8, precision 1, accuracy 0.8
#   12 = unit 2 shifted by 13 samples        -> no match: unit 2 unpaired, 12 a false positive
#   14 = 100 spikes at k*600 + 400           -> 100 samples from any true spike: false positive
make_case() {
  "$PY" - "$@" <<'PY'
import sys, os, json, numpy as np
sim, phy = sys.argv[1], sys.argv[2]
as_u64 = len(sys.argv) > 3
os.makedirs(sim + "/gt", exist_ok=True); os.makedirs(phy, exist_ok=True)
k = np.arange(500)
gt_t = np.concatenate([k * 600 + 100, k * 600 + 300, k * 600 + 500]).astype(np.int64)
gt_c = np.repeat(np.arange(3), 500).astype(np.int32)
o = np.argsort(gt_t, kind="stable")
np.save(sim + "/gt/spike_times.npy", gt_t[o]); np.save(sim + "/gt/spike_clusters.npy", gt_c[o])
json.dump({"fs": 30000.0, "n_chan_bin": 4}, open(sim + "/params.json", "w"))
u0 = k * 600 + 100 + 5
u1 = (k * 600 + 300)[k % 5 != 0]
u2 = k * 600 + 500 + 13
u4 = np.arange(100) * 600 + 400
t = np.concatenate([u0, u1, u2, u4])
c = np.concatenate([np.full(len(u0), 10), np.full(len(u1), 11), np.full(len(u2), 12), np.full(len(u4), 14)])
o = np.argsort(t, kind="stable")
if as_u64:
    np.save(phy + "/spike_times.npy", t[o].astype(np.uint64).reshape(-1, 1))
else:
    np.save(phy + "/spike_times.npy", t[o].astype(np.int64))
np.save(phy + "/spike_clusters.npy", c[o].astype(np.int32))
PY
}

@test "--help prints usage on stdout, exit 0" {
  run --separate-stderr -0 "$KS" --help
  assert_output --partial "Usage: ks-score"
  assert_output --partial "--good-only"
  [ -z "$stderr" ]
}

@test "unknown option: exit 2, one line on stderr, nothing on stdout" {
  run --separate-stderr -2 "$KS" --frobnicate
  [ -z "$output" ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "ks-score: error: unknown option '--frobnicate'"* ]]
}

@test "missing folders: exit 2 naming the path" {
  make_case sim phy
  run --separate-stderr -2 "$KS" --gt nosuchsim --sorting phy
  [[ "$stderr" == *"nosuchsim"* ]]
  [ -z "$output" ]
  run --separate-stderr -2 "$KS" --gt sim --sorting nosuchphy
  [[ "$stderr" == *"nosuchphy"* ]]
  run --separate-stderr -2 "$KS" --gt sim
  [[ "$stderr" == *"--sorting"* ]]
  mkdir empty
  run --separate-stderr -2 "$KS" --gt empty --sorting phy
  [[ "$stderr" == *"empty"*"gt/spike_times.npy"* ]]
}

@test "bad inputs: exit 2 naming the file or option" {
  make_case sim phy
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --delta-ms abc
  [[ "$stderr" == *"--delta-ms"* ]]
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --well-detected 2
  [[ "$stderr" == *"--well-detected"* ]]
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --offset-ms -1
  [[ "$stderr" == *"--offset-ms"* ]]
  "$PY" -c "import numpy as np; np.save('phy/spike_clusters.npy', np.zeros(3, np.int32))"
  run --separate-stderr -2 "$KS" --gt sim --sorting phy
  [[ "$stderr" == *"spike_clusters.npy"* ]]
  make_case sim phy
  # A Phy params.py at another sampling rate: spike times are not comparable.
  printf "dat_path = 'rec.bin'\nn_channels_dat = 4\ndtype = 'int16'\noffset = 0\nsample_rate = 20000.0\nhp_filtered = False\n" > phy/params.py
  run --separate-stderr -2 "$KS" --gt sim --sorting phy
  [[ "$stderr" == *"params.py: sample_rate 20000 Hz"* ]]
  sed -i 's/20000.0/30000.0/' phy/params.py
  run -0 "$KS" --gt sim --sorting phy
  echo '{"n_chan_bin": 4}' > sim/params.json
  run --separate-stderr -2 "$KS" --gt sim --sorting phy
  [[ "$stderr" == *"--fs"* ]]
  run -0 "$KS" --gt sim --sorting phy --fs 30000
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --fs -5
  [[ "$stderr" == *"--fs"* ]]
}

@test "end to end: table and JSON with the expected scores" {
  make_case sim phy
  run --separate-stderr -0 "$KS" --gt sim --sorting phy --json score.json
  assert_output --partial "well detected"
  assert_output --partial "12 samples at 30000 Hz"
  [ ! -e score.json.partial ]
  "$PY" - score.json <<'PY'
import json, sys, math
j = json.load(open(sys.argv[1]))
assert j["format"] == "ks-score" and j["version"] == 1
assert j["params"]["delta_samples"] == 12 and j["params"]["fs_hz"] == 30000
s = j["summary"]
expect = {"n_gt_units": 3, "n_sorted_units": 4, "n_well_detected": 2, "n_false_positive": 2,
          "n_redundant": 0, "n_overmerged": 0, "n_bad": 2}
for k, v in expect.items():
    assert s[k] == v, (k, s[k], v)
assert math.isclose(s["mean_accuracy"], (1 + 0.8 + 0) / 3)
assert math.isclose(s["mean_recall_well_detected"], 0.9)
g = {u["id"]: u for u in j["gt_units"]}
assert g[0]["sorted_unit"] == 10 and g[0]["accuracy"] == 1 and g[0]["tp"] == 500
assert g[1]["sorted_unit"] == 11 and g[1]["tp"] == 400 and g[1]["fn"] == 100 and g[1]["fp"] == 0
assert math.isclose(g[1]["recall"], 0.8) and g[1]["precision"] == 1 and math.isclose(g[1]["accuracy"], 0.8)
assert g[1]["well_detected"] is True
assert g[2]["sorted_unit"] is None and g[2]["accuracy"] == 0 and g[2]["well_detected"] is False
so = {u["id"]: u for u in j["sorted_units"]}
assert so[12]["false_positive"] and so[14]["false_positive"] and so[12]["gt_unit"] is None
assert so[10]["gt_unit"] == 0 and not so[10]["false_positive"]
assert {(p["gt_unit"], p["sorted_unit"]) for p in j["pairs"]} == {(0, 10), (1, 11)}
PY
}

@test "the gt/ folder itself, uint64 (N, 1) spike times, --fs and --delta-ms" {
  make_case sim phy uint64
  run -0 "$KS" --gt sim/gt --sorting phy --json a.json
  [ "$(json_get a.json "j['summary']['n_well_detected']")" = 2 ]
  # A 0.5 ms window (15 samples) also catches unit 2's shifted spikes.
  run -0 "$KS" --gt sim/gt --sorting phy --delta-ms 0.5 --json b.json
  [ "$(json_get b.json "j['summary']['n_well_detected']")" = 3 ]
  # At 20 kHz, 0.4 ms is 8 samples: unit 0's 5-sample shift still matches, unit 2's does not.
  run -0 "$KS" --gt sim/gt --sorting phy --fs 20000 --json c.json
  [ "$(json_get c.json "j['params']['delta_samples']")" = 8 ]
  [ "$(json_get c.json "j['summary']['n_well_detected']")" = 2 ]
}

@test "--good-only scores the 'good' units of cluster_KSLabel.tsv; cluster_group.tsv wins" {
  make_case sim phy
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --good-only
  [[ "$stderr" == *"cluster_KSLabel.tsv"* ]]
  printf 'cluster_id\tKSLabel\n10\tgood\n11\tmua\n12\tgood\n14\tgood\n' > phy/cluster_KSLabel.tsv
  run -0 "$KS" --gt sim --sorting phy --good-only --json g.json
  assert_output --partial "the 'good' ones of 4"
  [ "$(json_get g.json "j['summary']['n_sorted_units']")" = 3 ]
  [ "$(json_get g.json "j['summary']['n_well_detected']")" = 1 ]
  [ "$(json_get g.json "j['gt_units'][1]['sorted_unit']")" = None ]
  [ "$(json_get g.json "j['inputs']['labels_from']")" = cluster_KSLabel.tsv ]
  printf 'cluster_id\tgroup\n10\tgood\n11\tgood\n12\tnoise\n14\tnoise\n' > phy/cluster_group.tsv
  run -0 "$KS" --gt sim --sorting phy --good-only --json h.json
  [ "$(json_get h.json "j['summary']['n_sorted_units']")" = 2 ]
  [ "$(json_get h.json "j['summary']['n_well_detected']")" = 2 ]
  [ "$(json_get h.json "j['summary']['n_false_positive']")" = 0 ]
}

@test "a rerun writes an identical JSON; an unwritable --json leaves no table and no file" {
  make_case sim phy
  run -0 "$KS" --gt sim --sorting phy --json r.json
  cp r.json r1.json
  run -0 "$KS" --gt sim --sorting phy --json r.json
  cmp r.json r1.json
  run --separate-stderr -2 "$KS" --gt sim --sorting phy --json nodir/out.json
  [ -z "$output" ]
  [[ "$stderr" == *"nodir"* ]]
  [ ! -e nodir ]
}

@test "a ks-tools work folder with phy/ inside is accepted" {
  make_case sim work/phy
  run -0 "$KS" --gt sim --sorting work --json w.json
  [ "$(json_get w.json "j['summary']['n_well_detected']")" = 2 ]
}

@test "a random case agrees with an independent numpy/scipy reference of the definitions" {
  "$PY" - <<'PY'
import json, os, subprocess, sys
import numpy as np
from scipy.optimize import linear_sum_assignment

rng = np.random.default_rng(20261122)
fs, delta = 30000.0, 12   # int(0.4 / 1000 * 30000)
# True spikes on one grid with gaps >= 30 samples (> 2 * delta), so within any pair of units each
# spike has at most one candidate and a matching count is a nearest-neighbour test.
n_gt = 8
t = np.cumsum(rng.integers(30, 900, 6000))
c = rng.integers(0, n_gt, len(t))
gt = {u: t[c == u] for u in range(n_gt)}
ids = [3, 9, 10, 11, 20, 21, 40, 41]          # not contiguous
gt = {ids[u]: gt[u] for u in range(n_gt)}
def jit(x, p_drop, lim):
    x = x[rng.random(len(x)) >= p_drop]
    return x + rng.integers(-lim, lim + 1, len(x))
so = {}
so[100] = jit(gt[3], 0.05, 10)                      # good
so[101] = jit(gt[9], 0.10, 14)                      # some beyond the window
s = jit(gt[10], 0.0, 8); h = rng.random(len(s)) < 0.3
so[102], so[103] = s[~h], s[h]                      # split 70 / 30
so[104] = np.sort(np.concatenate([jit(gt[11], 0, 5), jit(gt[20], 0, 5)]))   # merged
so[105] = jit(gt[21], 0.6, 5)                       # weak
so[106] = np.cumsum(rng.integers(30, 2000, 800))   # noise
so[107] = jit(gt[40], 0.0, 3)[::2]                  # half of a unit: 0.5
os.makedirs("sim/gt"); os.makedirs("phy")
def save(folder, trains):
    tt = np.concatenate([trains[k] for k in trains]).astype(np.int64)
    cc = np.concatenate([np.full(len(trains[k]), k) for k in trains]).astype(np.int32)
    o = np.argsort(tt, kind="stable")
    np.save(folder + "/spike_times.npy", tt[o]); np.save(folder + "/spike_clusters.npy", cc[o])
save("sim/gt", gt); save("phy", so)
json.dump({"fs": fs}, open("sim/params.json", "w"))
subprocess.run([os.environ["KS_BIN_DIR"] + "/ks-score", "--gt", "sim", "--sorting", "phy", "--json", "out.json", "-q"],
               check=True, stdout=subprocess.DEVNULL)
j = json.load(open("out.json"))

G, S = sorted(gt), sorted(so)
M = np.zeros((len(G), len(S)), np.int64)
for a, g in enumerate(G):
    for b, s in enumerate(S):
        x, y = gt[g], np.sort(so[s])
        if len(y) == 0: continue
        i = np.clip(np.searchsorted(x, y), 1, len(x) - 1)
        near = np.minimum(np.abs(x[i] - y), np.abs(x[i - 1] - y))
        M[a, b] = np.sum(near <= delta)
ng = np.array([len(gt[g]) for g in G]); ns = np.array([len(so[s]) for s in S])
den = ng[:, None] + ns[None, :] - M
A = np.where(den > 0, M / np.maximum(den, 1), 0.0)
W = np.where(A >= 0.5, A, 0.0)
r, cc = linear_sum_assignment(-W)
pair = {r_: c_ for r_, c_ in zip(r, cc) if A[r_, c_] >= 0.5}
pair_inv = {v: k for k, v in pair.items()}
best12 = {a: int(np.argmax(A[a])) for a in range(len(G)) if A[a].max() >= 0.1}
best21 = {b: int(np.argmax(A[:, b])) for b in range(len(S)) if A[:, b].max() >= 0.1}

ju = {u["id"]: u for u in j["gt_units"]}
acc = []
for a, g in enumerate(G):
    u = ju[g]
    if a in pair:
        b = pair[a]; tp = M[a, b]
        assert u["sorted_unit"] == S[b], (g, u)
        assert (u["tp"], u["fn"], u["fp"]) == (tp, ng[a] - tp, ns[b] - tp), (g, u)
        assert abs(u["accuracy"] - tp / (ng[a] + ns[b] - tp)) < 1e-12
        assert abs(u["recall"] - tp / ng[a]) < 1e-12 and abs(u["precision"] - tp / ns[b]) < 1e-12
        acc.append(tp / (ng[a] + ns[b] - tp))
    else:
        assert u["sorted_unit"] is None and u["accuracy"] == 0, (g, u)
        acc.append(0.0)
    assert u["well_detected"] == (acc[-1] >= 0.8)
js = {u["id"]: u for u in j["sorted_units"]}
fp = red = over = bad = 0
for b, s in enumerate(S):
    u = js[s]
    is_bad = b not in pair_inv
    is_fp = is_bad and (b not in best21 or A[best21[b], b] < 0.2)
    is_red = is_bad and not is_fp and best12.get(best21[b]) != b
    is_over = int(np.sum(A[:, b] > 0.2)) > 1
    assert (u["bad"], u["false_positive"], u["redundant"], u["overmerged"]) == (is_bad, is_fp, is_red, is_over), (s, u)
    fp += is_fp; red += is_red; over += is_over; bad += is_bad
sm = j["summary"]
assert (sm["n_false_positive"], sm["n_redundant"], sm["n_overmerged"], sm["n_bad"]) == (fp, red, over, bad), sm
assert sm["n_well_detected"] == sum(x >= 0.8 for x in acc)
assert abs(sm["mean_accuracy"] - np.mean(acc)) < 1e-12
# The case exercises every class.
assert fp >= 1 and red >= 1 and over >= 1 and sm["n_well_detected"] >= 1, sm
print(sm)
PY
}
