#!/usr/bin/env bats
# ks-match-sessions on ks-sim multi-session ground truth: pyKilomatch's input layout made from the
# true templates and spike trains (scripts/sim_sessions_to_kilomatch.py), work folders sorted by the
# pipeline, the result files and their consistency, bad input.
load helpers

setup_file() {
  export PY=${KS_PYTHON:-/usr/bin/python3}
  local d=$BATS_FILE_TMPDIR
  "$KS_BIN_DIR/ks-sim" --preset np64 --sessions 5 --duration 10 --seed 7 --out "$d/sim" -q
  "$PY" "$KS_SOURCE_DIR/scripts/sim_sessions_to_kilomatch.py" "$d/sim" "$d/km" > /dev/null
  "$KS_BIN_DIR/ks-match-sessions" --out "$d/res" --kilomatch "$d/km" -q
}

setup() {
  common_setup
  D=$BATS_FILE_TMPDIR
}

@test "matches the same neurons across 5 sessions: precision and recall >= 0.95 on well-isolated units" {
  run "$PY" "$KS_SOURCE_DIR/scripts/score_sessions.py" "$D/res" "$D/km/gt_global_ids.npy" --subset "$D/km/gt_well_isolated.npy" --json well.json
  assert_success
  run "$PY" "$KS_SOURCE_DIR/scripts/score_sessions.py" "$D/res" "$D/km/gt_global_ids.npy" --json all.json
  assert_success
  run "$PY" - <<'PY'
import json
w, a = json.load(open("well.json")), json.load(open("all.json"))
assert w["neurons_tracked"] >= 30, w
assert w["precision"] >= 0.95 and w["recall"] >= 0.95 and w["identities_intact"] >= 0.9, w
# all units, small, axonal and half-off-probe ones included: few wrong matches, most found
assert a["precision"] >= 0.95 and a["recall"] >= 0.75, a
print("well", w["precision"], w["recall"], w["identities_intact"], "all", a["precision"], a["recall"])
PY
  assert_success
}

@test "estimates the probe's motion between sessions to within 3 µm" {
  run "$PY" - "$D" <<'PY'
import sys, json, numpy as np
d = sys.argv[1]
s = json.load(open(d + "/sim/sessions.json"))
true = -np.array([x["probe_offset_um"][1] for x in s["sessions"]]); true -= true.mean()
m = np.load(d + "/res/motion.npy")
assert m.shape == (5,) and abs(m.mean()) < 1e-9, m
assert np.abs(m - true).max() < 3, (m, true)
assert np.ptp(true) > 30, true   # the sessions really moved
PY
  assert_success
}

@test "writes pyKilomatch's result set, consistent, one unit per session per identity" {
  run "$PY" - "$D/res" "$D/km" <<'PY'
import sys, json, numpy as np
r, k = sys.argv[1] + "/", sys.argv[2] + "/"
n = np.load(k + "waveform_all.npy").shape[0]
idx = np.load(r + "IdxCluster.npy"); cm = np.load(r + "ClusterMatrix.npy"); mp = np.load(r + "MatchedPairs.npy")
S = np.load(r + "SimilarityMatrix.npy"); w = np.load(r + "SimilarityWeights.npy"); thr = np.load(r + "SimilarityThreshold.npy")
ses = np.load(r + "session_index.npy"); loc = np.load(r + "locations.npy"); wf = np.load(r + "waveforms.npy")
wc = np.load(r + "waveforms_corrected.npy"); ch = np.load(r + "waveform_channels.npy")
acg = np.load(r + "auto_corr.npy"); isi = np.load(r + "isi.npy")
assert idx.shape == (n,) and idx.dtype == np.int32 and cm.shape == (n, n) and cm.dtype == bool
assert np.array_equal(ses, np.load(k + "session_index.npy"))
assert S.shape == (n, n) and S.dtype == np.float32 and np.array_equal(np.isnan(S), np.isnan(S.T)) and np.allclose(np.nan_to_num(S), np.nan_to_num(S.T))
assert w.shape == (2,) and abs(w.sum() - 1) < 1e-9 and w[0] > 0.5, w   # waveform weighs most
assert loc.shape == (n, 3) and wf.shape == wc.shape == (n, 38, 61) and ch.shape == (n, 38)
assert acg.shape == (n, 600) and isi.shape == (n, 100) and np.allclose(isi.sum(1)[isi.sum(1) > 0], 1)
# identities: numbered 1..K, at least two units, at most one per session, ClusterMatrix and
# MatchedPairs say the same, every pair inside an identity was compared
K = idx.max()
assert set(idx[idx > 0]) == set(range(1, K + 1))
for c in range(1, K + 1):
    m = np.flatnonzero(idx == c)
    assert len(m) >= 2 and len(set(ses[m])) == len(m), (c, m, ses[m])
same = (idx[:, None] == idx[None, :]) & (idx[:, None] > 0)
assert np.array_equal(cm, same)
assert set(map(tuple, mp.tolist())) == {(i, j) for i, j in zip(*np.nonzero(np.triu(same, 1)))}
# auto-curation split identities on the threshold: each member has a partner above it
for c in range(1, K + 1):
    m = np.flatnonzero(idx == c)
    sub = np.nan_to_num(S[np.ix_(m, m)], nan=-np.inf)
    assert np.all((sub > thr[0]).any(axis=1)), (c, sub)
# the same unit's waveform on its own channels: raw = the input, on the listed channels
W = np.load(k + "waveform_all.npy")
assert np.allclose(wf[0], W[0][ch[0]])
assert ch[0][0] == np.argmax(np.ptp(W[0], axis=1))   # the peak channel first
e = json.load(open(r + "match-sessions.json"))["extra"]
assert e["format"] == "ks-session-matches" and e["n_identities"] == K and e["features"] == ["Waveform", "AutoCorr"]
rows = open(r + "identities.tsv").read().splitlines()
assert len(rows) == K + 1 and rows[0].split("\t")[:3] == ["identity", "n_sessions", "depth_um"]
assert len(open(r + "units.tsv").read().splitlines()) == n + 1
assert open(r + "tracking.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
print("ok", K, "identities")
PY
  assert_success
  assert_output --partial "ok"
}

@test "the same input gives the same result" {
  run -0 "$KS_BIN_DIR/ks-match-sessions" --out res2 --kilomatch "$D/km" -q
  for f in IdxCluster SimilarityMatrix motion SimilarityWeights waveforms_corrected; do
    cmp "$D/res/$f.npy" "res2/$f.npy"
  done
}

@test "a PETH becomes a third similarity" {
  cp -r "$D/km" kp
  "$PY" -c "
import numpy as np
g = np.load('kp/gt_global_ids.npy'); rng = np.random.default_rng(0)
base = rng.random((g.max() + 1, 50))
np.save('kp/peth.npy', base[g] + 0.05 * rng.random((len(g), 50)))"
  run -0 "$KS_BIN_DIR/ks-match-sessions" --out rp --kilomatch kp -q
  [ "$(json_get rp/match-sessions.json 'len(j["extra"]["weights"])')" = 3 ]
  [ -f rp/peth.npy ]
  run "$PY" "$KS_SOURCE_DIR/scripts/score_sessions.py" rp kp/gt_global_ids.npy --subset kp/gt_well_isolated.npy
  assert_success
}

@test "bad input: gaps in sessions, missing spike times, one session, a unit without spikes" {
  cp -r "$D/km" kb
  "$PY" -c "
import numpy as np
s = np.load('kb/session_index.npy'); s[s == 3] = 2; np.save('kb/session_index.npy', s)"
  run "$KS_BIN_DIR/ks-match-sessions" --out rb --kilomatch kb
  assert_failure 2
  assert_output --partial "session 3 has no units"
  [ ! -e rb/match-sessions.json ]
  cp "$D/km/session_index.npy" kb/
  mv kb/spike_times/Unit7.npy u7.npy
  run "$KS_BIN_DIR/ks-match-sessions" --out rb --kilomatch kb
  assert_failure 2
  assert_output --partial "Unit7.npy"
  # a unit without spikes: no ACG (zeros), matched on its waveform alone
  "$PY" -c "import numpy as np; np.save('kb/spike_times/Unit7.npy', np.zeros(0))"
  run -0 "$KS_BIN_DIR/ks-match-sessions" --out rb --kilomatch kb -q
  [ "$("$PY" -c "import numpy as np; print(np.load('rb/auto_corr.npy')[7].sum())")" = 0.0 ]
  run "$KS_BIN_DIR/ks-match-sessions" --out rb sessionA
  assert_failure 2
  assert_output --partial "at least two sessions"
}
