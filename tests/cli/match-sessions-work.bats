#!/usr/bin/env bats
# ks-match-sessions on ks-tools work folders: two sessions of a ks-sim recording sorted by the
# pipeline; what it reads from them, what it refuses.
load helpers

setup_file() {
  export PY=${KS_PYTHON:-/usr/bin/python3}
  local d=$BATS_FILE_TMPDIR
  "$KS_BIN_DIR/ks-sim" --preset smoke --sessions 2 --duration 40 --seed 4 --out "$d/sim" -q
  for s in 0 1; do
    local r=$d/sim/session_0$s
    make -s --no-print-directory -f "$KS_SOURCE_DIR/Makefile.pipeline" KS_BIN="$KS_BIN_DIR" REC=$r/recording.bin \
      PROBE=$r/probe.json PARAMS=$r/params.json OUT="$d/w$s" curate > /dev/null 2>&1
    "$KS_BIN_DIR/ks-score" --gt "$r" --sorting "$d/w$s/final" --json "$d/score$s.json" > /dev/null
    "$KS_BIN_DIR/ks-phy" --work "$d/w$s" -q
  done
  "$KS_BIN_DIR/ks-match-sessions" --out "$d/res" "$d/w0" "$d/w1" -q
}

setup() {
  common_setup
  D=$BATS_FILE_TMPDIR
}

@test "reads each session's good units, their spike times and mean waveforms (µV when the recording says)" {
  run "$PY" - "$D" <<'PY'
import sys, json, numpy as np
d = sys.argv[1]
rows = [l.split("\t") for l in open(d + "/res/units.tsv").read().splitlines()[1:]]
wf = np.load(d + "/res/waveforms.npy"); ch = np.load(d + "/res/waveform_channels.npy")
for s in (1, 2):
    w = "%s/w%d" % (d, s - 1)
    lab = dict(l.split("\t") for l in open(w + "/final/cluster_KSLabel.tsv").read().splitlines()[1:])
    cur = {l.split("\t")[0]: l.split("\t")[2] for l in open(w + "/curate/metrics.tsv").read().splitlines()[1:]}
    good = sorted(int(k) for k in lab if lab[k] == "good" and cur[k] == "pass")
    mine = [int(r[3]) for r in rows if int(r[1]) == s]
    assert mine == good, (s, mine, good)
    assert all(r[2] == w for r in rows if int(r[1]) == s)
    t = np.load(w + "/final/spike_times.npy"); c = np.load(w + "/final/spike_clusters.npy")
    for r in rows:
        if int(r[1]) == s:
            assert int(r[9]) == (c == int(r[3])).sum()
    # the mean waveform on the peak channel agrees with ks-curate's (both from the filtered recording)
    mw = np.load(w + "/curate/mean_waveforms.npy"); wc = np.load(w + "/curate/waveform_channels.npy")
    for u, r in enumerate(rows):
        if int(r[1]) != s: continue
        k = int(r[3]); peak = wc[k][0]
        if peak in ch[u]:
            j = list(ch[u]).index(peak)
            assert np.corrcoef(mw[k][0], wf[u][j])[0, 1] > 0.99, (s, k)
            assert abs(np.ptp(mw[k][0]) / np.ptp(wf[u][j]) - 1) < 0.1, (s, k)
print("ok", len(rows))
PY
  assert_success
  assert_output --partial "ok"
}

@test "finds the probe's motion and matches the well-detected units seen in both sessions" {
  run "$PY" "$KS_SOURCE_DIR/scripts/sorted_sessions_gt.py" "$D/res" "$D/sim" "$D/score0.json" "$D/score1.json" gt
  assert_success
  run "$PY" "$KS_SOURCE_DIR/scripts/score_sessions.py" "$D/res" gt_ids.npy --subset gt_well.npy --json s.json
  assert_success
  run "$PY" - "$D" <<'PY'
import sys, json, numpy as np
d = sys.argv[1]
s = json.load(open("s.json"))
assert s["pairs_true"] >= 3 and s["recall"] >= 0.8, s
t = -np.array([x["probe_offset_um"][1] for x in json.load(open(d + "/sim/sessions.json"))["sessions"]]); t -= t.mean()
m = np.load(d + "/res/motion.npy")
assert np.abs(m - t).max() < 5 and abs(t[0]) > 5, (m, t)
print("ok", s, m, t)
PY
  assert_success
}

@test "Phy folders plus their recordings give what the work folders give" {
  run -0 "$KS_BIN_DIR/ks-match-sessions" --out rp "$D/w0/phy" "$D/w1/phy" -q
  run "$PY" - "$D/res" rp <<'PY'
import sys, numpy as np
a, b = sys.argv[1] + "/", sys.argv[2] + "/"
ua = [l.split("\t")[3] for l in open(a + "units.tsv").read().splitlines()[1:]]
ub = [l.split("\t")[3] for l in open(b + "units.tsv").read().splitlines()[1:]]
assert ua == ub, (ua, ub)
# the raw recording filtered here, as ks-filter filtered it (float16 storage aside)
wa, wb = np.load(a + "waveforms.npy"), np.load(b + "waveforms.npy")
assert np.allclose(wa, wb, rtol=0, atol=1e-2 * np.abs(wa).max()), np.abs(wa - wb).max()
# The tracking iterates (motion, similarity weights, threshold), so the float16 difference can tip the
# pairs that sit at the threshold: the same motion to within 2 µm, and at most 15 % of the matched pairs
# (at least one) found by one route only.
ma, mb = np.load(a + "motion.npy"), np.load(b + "motion.npy")
assert np.abs(ma - mb).max() < 2, (ma, mb)
pa = {tuple(sorted(p)) for p in np.load(a + "MatchedPairs.npy").tolist()}
pb = {tuple(sorted(p)) for p in np.load(b + "MatchedPairs.npy").tolist()}
assert len(pa ^ pb) <= max(1, 0.15 * len(pa | pb)), (pa, pb)
print("ok")
PY
  assert_success
  assert_output --partial "ok"
}

@test "refuses sessions from another probe layout, an unfinished sorting, a session without good units" {
  cp -r "$D/w1" wx
  "$PY" -c "
import json; p = json.load(open('wx/probe.json')); p['xc'][0] += 100; json.dump(p, open('wx/probe.json', 'w'))"
  run "$KS_BIN_DIR/ks-match-sessions" --out r "$D/w0" wx
  assert_failure 2
  assert_output --partial "same probe"
  cp -r "$D/w1" wy && rm wy/final/final.json
  run "$KS_BIN_DIR/ks-match-sessions" --out r "$D/w0" wy
  assert_failure 2
  assert_output --partial "did not finish"
  cp -r "$D/w1" wz
  run -0 "$KS_BIN_DIR/ks-curate" --work wz -q --set min_spikes=1000000
  run "$KS_BIN_DIR/ks-match-sessions" --out r "$D/w0" wz
  assert_failure 2
  assert_output --partial "no good units"
  [ ! -e r/match-sessions.json ]
  # --units all takes them anyway
  run -0 "$KS_BIN_DIR/ks-match-sessions" --out r "$D/w0" wz --units all -q
  [ "$(json_get r/match-sessions.json 'j["extra"]["n_sessions"]')" = 2 ]
}
