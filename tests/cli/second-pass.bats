#!/usr/bin/env bats
# ks-match, ks-cluster --final and ks-phy end to end on a drifting ks-sim recording: the files of
# formats/matches.md and formats/clusters.md (final mode), their invariants, results that do not
# depend on the chunk size or the thread count, sorting quality against the ground truth, bad input.
load helpers

setup_file() {
  export KS_BIN_DIR PY=${KS_PYTHON:-/usr/bin/python3}
  local d=$BATS_FILE_TMPDIR
  "$KS_BIN_DIR/ks-sim" --preset smoke --duration 60 --drift rigid --seed 6 --out "$d/sim" -q
  "$KS_BIN_DIR/ks-filter" --rec "$d/sim/recording.bin" --probe "$d/sim/probe.json" \
    --params "$d/sim/params.json" --work "$d/w" -q
  "$KS_BIN_DIR/ks-whiten" --work "$d/w" -q
  "$KS_BIN_DIR/ks-drift" --work "$d/w" -q --no-map
  "$KS_BIN_DIR/ks-detect" --work "$d/w" -q
  "$KS_BIN_DIR/ks-cluster" --work "$d/w" -q
  "$KS_BIN_DIR/ks-match" --work "$d/w" -q
  "$KS_BIN_DIR/ks-cluster" --work "$d/w" --final -q
  "$KS_BIN_DIR/ks-phy" --work "$d/w" -q
}

setup() {
  common_setup
  W=$BATS_FILE_TMPDIR/w
  SIM=$BATS_FILE_TMPDIR/sim
}

@test "ks-match before ks-cluster is a usage error naming what to run" {
  mkdir -p w2
  cp "$W/probe.json" w2/
  run "$KS_BIN_DIR/ks-match" --work w2
  assert_failure 2
  assert_output --partial "ks-cluster"
  run "$KS_BIN_DIR/ks-cluster" --work w2 --final
  assert_failure 2
  assert_output --partial "ks-match"
}

@test "ks-match refuses a final-mode record where the first pass belongs" {
  cp -r "$W" w3
  cp "$W/final/final.json" w3/cluster/cluster.json
  run "$KS_BIN_DIR/ks-match" --work w3
  assert_failure 2
  assert_output --partial "cluster.json"
}

@test "ks-match writes every file of formats/matches.md, consistent and sorted" {
  run "$PY" - "$W" <<'PY'
import sys, json, numpy as np
w = sys.argv[1] + "/match/"
j = json.load(open(w + "match.json")); e = j["extra"]
assert j["stage"] == "match" and e["format"] == "ks-matches" and e["version"] == 1, e
t = np.load(w + "spike_times.npy"); k = np.load(w + "spike_templates.npy")
a = np.load(w + "spike_amplitudes.npy"); s = np.load(w + "spike_scales.npy"); tF = np.load(w + "tF.npy")
U = np.load(w + "templates_pc.npy"); ch = np.load(w + "template_chans.npy"); pk = np.load(w + "template_peak_chan.npy")
fp = np.load(w + "first_pass_template.npy"); K0 = np.load(sys.argv[1] + "/cluster/templates_pc.npy").shape[0]
N, K = len(t), U.shape[0]
assert t.dtype == np.int64 and k.dtype == np.int32 and a.dtype == np.float32 and tF.dtype == np.float32
assert N == e["n_spikes"] > 100 and K == e["n_templates"] and len(k) == len(a) == len(s) == len(tF) == N
assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < json.load(open(sys.argv[1] + "/filter/filtered.json"))["n_samples"]
assert k.min() >= 0 and k.max() < K and np.all(a >= 8 - 1e-3), a.min()          # Th_learned = 8
assert tF.shape == (N, e["nearest_chans"], e["n_pcs"]) and ch.shape == (K, e["nearest_chans"])
assert np.all(ch[:, 0] == pk) and fp.shape == (K0,) and fp.max() == K - 1 and fp.min() >= -1
# amp = scale * ||T_k||: the two columns agree with the templates' norms
nrm = np.sqrt((U.astype(np.float64) ** 2).sum((1, 2)))
assert np.allclose(a, s * nrm[k], rtol=2e-3), np.abs(a / (s * nrm[k]) - 1).max()
# features = residual + own template: a spike's features point along its template's
for kk in range(K):
    m = k == kk
    if m.sum() < 30: continue
    own = U[kk][ch[kk]].ravel()
    f = tF[m].reshape(m.sum(), -1)
    cos = f @ own / (np.linalg.norm(f, axis=1) * np.linalg.norm(own) + 1e-12)
    assert np.median(cos) > 0.5, (kk, np.median(cos))
print("ok", N, K)
PY
  assert_success
  assert_output --partial "ok"
}

@test "ks-match gives the same spikes whatever the chunk size and the thread count" {
  cp -r "$W" wc
  run -0 "$KS_BIN_DIR/ks-match" --work wc -q --chunk 7001 --threads 1
  run "$PY" - "$W/match" wc/match <<'PY'
import sys, numpy as np
a, b = sys.argv[1] + "/", sys.argv[2] + "/"
for f in ["spike_times.npy", "spike_templates.npy"]:
    x, y = np.load(a + f), np.load(b + f)
    assert x.shape == y.shape and np.array_equal(x, y), (f, x.shape, y.shape)
for f in ["spike_scales.npy", "tF.npy"]:
    x, y = np.load(a + f), np.load(b + f)
    assert np.allclose(x, y, rtol=1e-4, atol=1e-4), (f, np.abs(x - y).max())
print("same", len(x))
PY
  assert_success
  assert_output --partial "same"
}

@test "ks-cluster --final writes the final units: files, invariants, labels and positions" {
  run "$PY" - "$W" <<'PY'
import sys, json, numpy as np
w = sys.argv[1] + "/final/"
j = json.load(open(w + "final.json")); e = j["extra"]
assert j["stage"] == "final" and e["format"] == "ks-clusters" and e["mode"] == "final", e
t = np.load(w + "spike_times.npy"); c = np.load(w + "spike_clusters.npy"); st = np.load(w + "spike_templates.npy")
idx = np.load(w + "spike_match_index.npy"); amp = np.load(w + "amplitudes.npy"); pos = np.load(w + "spike_positions.npy")
W_ = np.load(w + "templates_pc.npy"); T = np.load(w + "templates.npy"); S = np.load(w + "similar_templates.npy")
cp = np.load(w + "contam_pct.npy")
N, K = len(t), W_.shape[0]
assert N == e["n_spikes"] and K == e["n_clusters"]
assert N + e["n_duplicates_removed"] + e["n_redundant_spikes_removed"] == e["n_matched_spikes"]
assert e["n_fragment_merges"] + e["n_redundant_merges"] <= e["n_merges"]
assert 0 <= e["n_shifted_fragment_merges"] <= e["n_fragment_merges"]
assert np.all(np.diff(t) >= 0) and c.min() >= 0 and c.max() == K - 1 and len(np.unique(c)) == K
m_t = np.load(sys.argv[1] + "/match/spike_times.npy"); m_k = np.load(sys.argv[1] + "/match/spike_templates.npy")
assert len(np.unique(idx)) == N and np.array_equal(m_k[idx], st)
assert np.all(np.abs(t - m_t[idx]) <= 2 * 61)      # a CCG merge shifts by at most nt, a redundant one by 1 ms
tF = np.load(sys.argv[1] + "/match/tF.npy")
assert np.allclose(amp, np.sqrt((tF[idx].astype(np.float64) ** 2).sum((1, 2))), rtol=1e-4)
probe = json.load(open(sys.argv[1] + "/probe.json"))
assert pos.shape == (N, 2) and pos[:, 1].min() >= min(probe["yc"]) - 1e-3 and pos[:, 1].max() <= max(probe["yc"]) + 1e-3
assert S.shape == (K, K) and np.allclose(np.diag(S), 1, atol=1e-4) and np.allclose(S, S.T, atol=1e-4)
assert T.shape[0] == K and cp.shape == (K,)
# no two spikes of one unit closer than duplicate_spike_ms (0.25 ms = 7 samples at 30 kHz)
for u in range(K):
    d = np.diff(t[c == u])
    assert d.size == 0 or d.min() >= 7, (u, d.min())
lab = dict(l.rstrip("\n").split("\t") for l in open(w + "cluster_KSLabel.tsv").readlines()[1:])
assert len(lab) == K and set(lab.values()) <= {"good", "mua"} and sum(v == "good" for v in lab.values()) == e["n_good"]
con = [l.split("\t") for l in open(w + "cluster_ContamPct.tsv").readlines()[1:]]
assert all(abs(float(v) - cp[int(k)]) < 0.051 for k, v in con)
# a good unit's contamination is below 100 * acg_threshold
assert all(cp[int(k)] < 20 for k, v in lab.items() if v == "good")
print("ok", N, K, e["n_good"])
PY
  assert_success
  assert_output --partial "ok"
}

@test "the final sorting finds the ground truth's large units" {
  run -0 "$KS_BIN_DIR/ks-score" --gt "$SIM" --sorting "$W/final" --json score.json
  run -0 "$KS_BIN_DIR/ks-score" --gt "$SIM" --sorting "$W/cluster" --json score0.json
  run "$PY" - score.json score0.json <<'PY'
import sys, json
f, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
wf, wp = f["summary"]["n_well_detected"], p["summary"]["n_well_detected"]
print("well detected: final", wf, "first pass", wp)
assert wf >= 8 and wf >= wp, (wf, wp)
PY
  assert_success
}

@test "the merges beyond Kilosort4 can be switched off, and switched on they lose no well-detected unit" {
  cp -r "$W" wk
  run -0 "$KS_BIN_DIR/ks-cluster" --work wk --final -q --set fragment_similarity=None --set redundant_fraction=None
  run -0 "$KS_BIN_DIR/ks-score" --gt "$SIM" --sorting "$W/final" --json on.json
  run -0 "$KS_BIN_DIR/ks-score" --gt "$SIM" --sorting wk/final --json off.json
  run "$PY" - "$W/final/final.json" wk/final/final.json on.json off.json <<'PY'
import sys, json
on, off = (json.load(open(f))["extra"] for f in sys.argv[1:3])
assert off["n_fragment_merges"] == 0 and off["n_redundant_merges"] == 0 and off["n_redundant_spikes_removed"] == 0, off
assert off["n_shifted_fragment_merges"] == 0, off
assert on["n_merges"] >= off["n_merges"] and on["n_clusters"] <= off["n_clusters"], (on, off)
son, soff = (json.load(open(f))["summary"] for f in sys.argv[3:5])
print("on", on["n_clusters"], son["n_well_detected"], "off", off["n_clusters"], soff["n_well_detected"])
assert son["n_well_detected"] >= soff["n_well_detected"], (son, soff)
assert son["n_redundant"] <= soff["n_redundant"], (son, soff)
PY
  assert_success
}

@test "ks-cluster --final gives the same bytes with one thread, three or eight" {
  # one thread: the groups one by one; three: the smaller groups side by side; eight: the largest alone,
  # then the others side by side
  for t in 1 3 8; do
    cp -r "$W" w$t
    run -0 "$KS_BIN_DIR/ks-cluster" --work w$t --final -q --threads $t
  done
  for w in w1 w3 w8; do
    for f in spike_times spike_clusters spike_templates amplitudes spike_positions templates_pc similar_templates contam_pct; do
      cmp "$W/final/$f.npy" "$w/final/$f.npy"
    done
    cmp "$W/final/cluster_KSLabel.tsv" $w/final/cluster_KSLabel.tsv
  done
}

@test "ks-phy writes a folder phylib's loader accepts, consistent with the sorting" {
  run "$PY" "$KS_SOURCE_DIR/tests/cli/phy_check.py" "$W/phy" "$W"
  assert_success
  assert_output --partial "phy folder ok"
  run -0 "$KS_BIN_DIR/ks-score" --gt "$SIM" --sorting "$W/phy" --good-only --json g.json
  [ "$(json_get g.json 'j["summary"]["n_sorted_units"]')" = "$(grep -c $'\tgood$' "$W/phy/cluster_KSLabel.tsv")" ]
}

@test "ks-phy before the final clustering, or on another record, is a usage error naming what to run" {
  mkdir -p w2
  cp -r "$W/probe.json" "$W/filter" w2/
  run "$KS_BIN_DIR/ks-phy" --work w2
  assert_failure 2
  assert_output --partial "ks-cluster --work w2 --final"
  cp -r "$W" w3
  sed -i 's/"mode":"final"/"mode":"other"/' w3/final/final.json
  run "$KS_BIN_DIR/ks-phy" --work w3
  assert_failure 2
  assert_output --partial "final.json"
}

@test "ks-phy never leaves a half-written folder and replaces a former one with its phy cache" {
  cp -r "$W" w4
  mkdir -p w4/phy/.phy && touch w4/phy/.phy/cache
  rm w4/whiten/whiten_inv.npy
  run "$KS_BIN_DIR/ks-phy" --work w4
  assert_failure 2
  assert_output --partial "whiten_inv.npy"
  [ -f w4/phy/.phy/cache ] && [ -f w4/phy/params.py ]          # the former folder untouched
  [ -z "$(ls -d w4/phy.partial-* 2>/dev/null)" ]               # nothing half-written left
  cp "$W/whiten/whiten_inv.npy" w4/whiten/
  run -0 "$KS_BIN_DIR/ks-phy" --work w4 -q
  [ ! -e w4/phy/.phy ] && [ -z "$(ls -d w4/phy.old-* 2>/dev/null)" ]
  run "$PY" "$KS_SOURCE_DIR/tests/cli/phy_check.py" w4/phy w4
  assert_success
}

@test "ks-curate computes the metrics, applies the criteria and explains every removal" {
  cp -r "$W" wc2
  run -0 "$KS_BIN_DIR/ks-curate" --work wc2 -q --set min_snr=5 --set isi_max=0.5 --set min_spikes=50
  run "$PY" - wc2 <<'PY'
import sys, json, numpy as np
w = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(w + "/curate/metrics.tsv")]
head, rows = rows[0], rows[1:]
e = json.load(open(w + "/curate/curate.json"))["extra"]
assert head[:3] == ["cluster_id", "KSLabel", "curated"] and head[3:] == e["metrics"], head
M = np.load(w + "/curate/metrics.npy"); kept = np.load(w + "/curate/unit_kept.npy")
K = len(rows); assert M.shape == (K, len(e["metrics"])) and kept.shape == (K,)
col = {n: i for i, n in enumerate(e["metrics"])}
clu = np.load(w + "/final/spike_clusters.npy"); t = np.load(w + "/final/spike_times.npy")
fs = json.load(open(w + "/filter/filtered.json")); T = fs["n_samples"] / fs["fs"]
assert np.array_equal(M[:, col["n_spikes"]], np.bincount(clu, minlength=K))
assert np.allclose(M[:, col["firing_rate_hz"]], np.bincount(clu, minlength=K) / T)
# ISI violation fraction recomputed
for k in range(K):
    d = np.diff(np.sort(t[clu == k]) / fs["fs"])
    assert abs(M[k, col["isi_violations_fraction"]] - (d < 0.0015).sum() / max(1, (clu == k).sum())) < 1e-12
h = json.load(open(w + "/curate/curation.json"))
assert h["criteria"]["min_snr"] == 5 and h["criteria"]["isi_max"] == 0.5 and h["criteria"]["min_spikes"] == 50
assert h["criteria"]["max_std_norm"] is None and len(h["units"]) == K
for u in h["units"]:
    k = u["unit"]
    assert u["kept"] == bool(kept[k]) == (rows[k][2] == "pass")
    snr, n, isi = M[k, col["snr"]], M[k, col["n_spikes"]], M[k, col["isi_violations_ratio"]]
    should = not ((not np.isnan(n) and n < 50) or (not np.isnan(isi) and isi > 0.5) or (not np.isnan(snr) and snr < 5))
    assert u["kept"] == should, (k, u, snr, n, isi)
    if not u["kept"]:
        c = u["checks"][u["removed_by"]]
        assert not c["passed"] and c["value"] == u["value"] and c["threshold"] == u["threshold"]
# the curated sorting holds exactly the kept units' spikes
cc = np.load(w + "/curate/spike_clusters.npy")
assert set(np.unique(cc)) == set(np.nonzero(kept)[0]) and len(cc) == np.isin(clu, np.nonzero(kept)[0]).sum()
assert 0 < kept.sum() < K
print("ok", kept.sum(), "of", K)
PY
  assert_success
  assert_output --partial "ok"
  # The metrics become extra columns of the Phy folder.
  run -0 "$KS_BIN_DIR/ks-phy" --work wc2 -q
  run "$PY" "$KS_SOURCE_DIR/tests/cli/phy_check.py" wc2/phy wc2
  assert_success
  [ "$(cut -f3 wc2/curate/metrics.tsv | tail -n +2)" = "$(cut -f2 wc2/phy/cluster_curated.tsv | tail -n +2)" ]
  [ "$(head -1 wc2/phy/cluster_snr.tsv)" = "$(printf 'cluster_id\tsnr')" ]
  # Other thresholds: only ks-curate reruns, and nothing is removed without criteria.
  run -0 "$KS_BIN_DIR/ks-curate" --work wc2 -q
  [ "$(json_get wc2/curate/curate.json 'j["extra"]["n_kept"]')" = "$(json_get wc2/curate/curate.json 'j["extra"]["n_units"]')" ]
}

@test "ks-curate before the final clustering is a usage error naming what to run" {
  mkdir -p w5
  cp -r "$W/probe.json" "$W/filter" w5/
  run "$KS_BIN_DIR/ks-curate" --work w5
  assert_failure 2
  assert_output --partial "ks-cluster --work w5 --final"
}

@test "ks-curate's duplicate merge (dist_um) follows its rules and says what it merged" {
  cp -r "$W" wm
  run -0 "$KS_BIN_DIR/ks-curate" --work wm -q --set dist_um=60 --set merge_cosine=0.8
  run "$PY" - wm <<'PY'
import sys, json, numpy as np
w = sys.argv[1]
h = json.load(open(w + "/curate/curation.json"))
assert h["criteria"]["dist_um"] == 60 and h["criteria"]["merge_cosine"] == 0.8
cc = np.load(w + "/curate/spike_clusters.npy"); ct = np.load(w + "/curate/spike_times.npy")
rows = [l.rstrip("\n").split("\t") for l in open(w + "/curate/metrics.tsv")][1:]
absorbed = {m["absorbed"]: m["kept"] for m in h["merges"] if m["result"] == "merged"}
assert len(absorbed) == json.load(open(w + "/curate/curate.json"))["extra"]["n_merges"]
for m in h["merges"]:
    assert m["distance_um"] <= 60 and m["cosine"] >= 0.8
    if m["result"] == "merged":
        assert max(m["isi_fraction_before"]) <= 0.04 and m["isi_fraction_after"] <= max(m["isi_fraction_before"]) + 0.04
for k, into in absorbed.items():
    assert rows[k][2] == "merged" and k not in set(cc)
    u = [x for x in h["units"] if x["unit"] == k][0]
    assert u["removed_by"] == "merge" and not u["kept"]
# no two spikes of a unit within 0.4 ms after merging
for k in np.unique(cc):
    d = np.diff(np.sort(ct[cc == k]))
    assert d.size == 0 or d.min() >= 12 or k not in absorbed.values(), (k, d.min())
print("merges", len(absorbed))
PY
  assert_success
}

@test "ks-curate writes each unit's mean waveform on its channels, the mean of its spikes in the filtered recording" {
  cp -r "$W" wf
  run -0 "$KS_BIN_DIR/ks-curate" --work wf -q
  run "$PY" - wf <<'PY'
import sys, json, numpy as np
w = sys.argv[1]
e = json.load(open(w + "/curate/curate.json"))["extra"]
mw = np.load(w + "/curate/mean_waveforms.npy"); ch = np.load(w + "/curate/waveform_channels.npy")
K = len(open(w + "/curate/metrics.tsv").readlines()) - 1
nt, nt0 = e["waveform_samples"], e["waveform_nt0min"]
assert mw.dtype == np.float32 and ch.dtype == np.int32 and mw.shape == (K, ch.shape[1], nt) and ch.shape[0] == K
fj = json.load(open(w + "/filter/filtered.json"))
x = np.fromfile(w + "/filter/filtered.bin", dtype=np.float16).reshape(fj["n_samples"], fj["n_channels"])
t = np.load(w + "/final/spike_times.npy"); clu = np.load(w + "/final/spike_clusters.npy")
M = np.load(w + "/curate/metrics.npy"); peak = M[:, e["metrics"].index("peak_channel")].astype(int)
checked = aligned = 0
for k in range(K):
    tk = t[clu == k]; tk = tk[(tk >= nt0) & (tk + nt - nt0 < len(x))]
    if len(tk) < 50: continue
    ref = np.mean([x[s - nt0:s - nt0 + nt, ch[k]].astype(np.float64) for s in tk], axis=0).T * fj["scale"]
    assert peak[k] in ch[k], (k, peak[k], ch[k])
    c = np.corrcoef(ref.ravel(), mw[k].ravel())[0, 1]
    assert c > 0.97, (k, c)
    # spike times mark the trough: at nt0min on the unit's main channel (most units)
    aligned += abs(int(np.argmin(mw[k, 0])) - nt0) <= 2
    checked += 1
assert checked >= 5 and aligned >= 0.7 * checked, (checked, aligned)
print("ok", checked, aligned)
PY
  assert_success
  assert_output --partial "ok"
}

@test "ks-report: markdown and JSON agree with the metrics table, removals explained, pictures decode" {
  cp -r "$W" wr
  run -0 "$KS_BIN_DIR/ks-curate" --work wr -q --set min_snr=6 --set min_spikes=60
  run -0 "$KS_BIN_DIR/ks-report" --work wr -q --set min_snr=6 --set min_spikes=60
  [ -f wr/report/report.json ] && [ -f wr/report/sorting_report.md ]
  run "$PY" - wr <<'PY'
import sys, json, struct, zlib, os, numpy as np
w = sys.argv[1]; r = w + "/report/"
def png_size(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", path
    i, idat, wh = 8, b"", None
    while i < len(b):
        n, kind = struct.unpack(">I4s", b[i:i + 8]); data = b[i + 8:i + 8 + n]
        assert zlib.crc32(kind + data) == struct.unpack(">I", b[i + 8 + n:i + 12 + n])[0], path
        if kind == b"IHDR": wh = struct.unpack(">II", data[:8])
        if kind == b"IDAT": idat += data
        i += 12 + n
    assert len(zlib.decompress(idat)) == wh[1] * (1 + 3 * wh[0]), path
    return wh
rep = json.load(open(r + "recording_report.json"))
assert rep["format"] == "ks-report" and rep["version"] == 1
rows = [l.rstrip("\n").split("\t") for l in open(w + "/curate/metrics.tsv")]
head, rows = rows[0], rows[1:]
assert rep["metrics"] == head[3:] and len(rep["units"]) == len(rows)
for u, row in zip(rep["units"], rows):
    assert [str(u["cluster_id"]), u["KSLabel"], u["curated"]] == row[:3], (u, row)
    for name, v in zip(head[3:], row[3:]):
        x = u[name]
        assert (x is None and v == "nan") or abs(x - float(v)) <= 1e-9 * max(1, abs(x)), (name, x, v)
    assert u["good"] == (row[1] == "good" and row[2] == "pass")
good = [u for u in rep["units"] if u["good"]]
c = rep["counts"]
assert c["good"] == len(good) > 0 and c["final_units"] == len(rows)
assert c["passed_curation"] + c["failed_curation"] + c["merged_by_curation"] == len(rows)
h = json.load(open(w + "/curate/curation.json"))
why = {}
for u in h["units"]:
    if not u["kept"]: why[u["removed_by"]] = why.get(u["removed_by"], 0) + 1
assert c["removed_by"] == why and sum(why.values()) == c["failed_curation"] > 0, (c, why)
assert rep["settings_changed"] == {"min_snr": "6", "min_spikes": "60"}, rep["settings_changed"]
st = [s["stage"] for s in rep["stages"]]
assert st == ["filter", "whiten", "drift", "detect", "cluster", "match", "final", "curate", "phy"], st
assert all(s["wall_s"] > 0 and s["cpu_s"] >= 0 and s["peak_rss_mib"] > 1 for s in rep["stages"]), rep["stages"]
assert abs(rep["total_wall_s"] - sum(s["wall_s"] for s in rep["stages"])) < 1e-6
assert rep["recording"]["n_samples"] == json.load(open(w + "/filter/filtered.json"))["n_samples"]
# a footprint per good unit, every picture a valid PNG
for u in good:
    assert u["picture"] == "units/unit_%d.png" % u["cluster_id"], u
    assert png_size(r + u["picture"]) == (220, 300)
assert sorted(os.listdir(r + "units")) == sorted("unit_%d.png" % u["cluster_id"] for u in good)
assert all(u["picture"] is None for u in rep["units"] if not u["good"])
png_size(r + "distributions.png"); png_size(r + "footprints.png")
md = open(r + "sorting_report.md").read()
for s in ("## Recording", "## Settings that differ from the defaults", "| min_snr | 6 |", "## Timings", "## Drift",
          "## Units", "by min_snr", "(distributions.png)", "(footprints.png)", "## Per-unit table"):
    assert s in md, s
for u in good:
    assert "(units/unit_%d.png)" % u["cluster_id"] in md
rec = json.load(open(r + "report.json"))
assert rec["stage"] == "report" and rec["extra"]["n_good"] == len(good)
print("ok", len(good), "good of", len(rows), why)
PY
  assert_success
  assert_output --partial "ok"
  # At most N unit pictures: the others are said to be left out, and their old pictures go.
  run -0 "$KS_BIN_DIR/ks-report" --work wr -q --max-unit-pictures 2
  [ "$(ls wr/report/units | wc -l)" = 2 ]
  [ "$(json_get wr/report/recording_report.json 'j["pictures"]["unit_pictures"]')" = 2 ]
  grep -q "have no picture of their own" wr/report/sorting_report.md
}

@test "a truncated sorting folder, or one another version wrote, is refused by ks-curate, ks-phy and ks-report" {
  cp -r "$W" wb
  run -0 "$KS_BIN_DIR/ks-curate" --work wb -q
  run -0 "$KS_BIN_DIR/ks-report" --work wb -q
  cp -r wb/phy phy.before
  # truncated: a final file shorter than its record says
  cp wb/final/spike_times.npy st.npy
  truncate -s -8 wb/final/spike_times.npy
  for tool in ks-curate ks-phy ks-report; do
    run "$KS_BIN_DIR/$tool" --work wb
    assert_failure 2
    assert_output --partial "spike_times.npy"
    assert_output --partial "truncated"
  done
  diff -r wb/phy phy.before   # the Phy folder was left as it was
  cp st.npy wb/final/spike_times.npy
  # another version's final/ record
  cp wb/final/final.json final.json.good
  sed -i 's/"format":"ks-clusters","version":1/"format":"ks-clusters","version":2/' wb/final/final.json
  grep -q '"version":2' wb/final/final.json
  for tool in ks-curate ks-phy ks-report; do
    run "$KS_BIN_DIR/$tool" --work wb
    assert_failure 2
    assert_output --partial "ks-clusters version 2"
  done
  cp final.json.good wb/final/final.json
  # a stage that did not finish: no record
  mv wb/match/match.json match.json.good
  run "$KS_BIN_DIR/ks-phy" --work wb
  assert_failure 2
  assert_output --partial "did not finish"
  mv match.json.good wb/match/match.json
  # a report over a curation made from an earlier final/
  run -0 "$KS_BIN_DIR/ks-cluster" --work wb --final -q --set acg_threshold=0.1
  run "$KS_BIN_DIR/ks-report" --work wb
  assert_failure 2
  assert_output --partial "rerun ks-curate"
  run -0 "$KS_BIN_DIR/ks-curate" --work wb -q --set acg_threshold=0.1
  run -0 "$KS_BIN_DIR/ks-report" --work wb -q --set acg_threshold=0.1
}

@test "refractory_test=poisson: the good units are a subset of Kilosort4's label, what it drops small units" {
  cp -r "$W" wn
  run -0 "$KS_BIN_DIR/ks-cluster" --work wn --final -q --set refractory_test=poisson
  run "$PY" - wn/final "$W/final" <<'PY'
import sys, numpy as np
def labels(d):
    rows = [l.split("\t") for l in open(d + "/cluster_KSLabel.tsv").read().split("\n")[1:] if l.strip()]
    return {int(a): b for a, b in rows}
pois, norm = labels(sys.argv[1]), labels(sys.argv[2])
assert pois.keys() == norm.keys()   # the same units: only the label differs
for d in sys.argv[1:]:
    assert (np.load(d + "/contam_pct.npy") == np.load(sys.argv[1] + "/contam_pct.npy")).all()
gp = {k for k, v in pois.items() if v == "good"}; gn = {k for k, v in norm.items() if v == "good"}
cl = np.load(sys.argv[1] + "/spike_clusters.npy"); n = np.bincount(cl, minlength=len(pois))
print("good: exact", len(gp), "normal", len(gn), "spikes of the units only normal calls good:", sorted(n[list(gn - gp)]))
assert gp <= gn and len(gp) > 0, (gp, gn)
# what only the normal approximation calls good are units too small to show a refractory period
assert all(n[k] < np.median(n[list(gp)]) for k in gn - gp), (n, gn - gp)
PY
  assert_success
  run "$KS_BIN_DIR/ks-cluster" --work wn --final -q --set refractory_test=exact
  assert_failure 2
  assert_output --partial "refractory_test"
}

@test "piece_similarity: good units that are probable pieces of larger good ones are mua; None keeps them" {
  # This recording's one piece sits at the matching threshold, so the amplitude bound already makes it
  # 'mua': compare without that bound, with and without the piece rule.
  cp -r "$W" wq
  cp -r "$W" wp
  run -0 "$KS_BIN_DIR/ks-cluster" --work wq --final -q --set good_amplitude_margin=None
  run -0 "$KS_BIN_DIR/ks-cluster" --work wp --final -q --set good_amplitude_margin=None --set piece_similarity=None
  run "$PY" - wq/final wp/final <<'PY'
import sys, json
d, n = (json.load(open(f + "/final.json"))["extra"] for f in sys.argv[1:])
def labels(f):
    rows = [l.split("\t") for l in open(f + "/cluster_KSLabel.tsv").read().split("\n")[1:] if l.strip()]
    return {int(a): b for a, b in rows}
ld, ln = labels(sys.argv[1]), labels(sys.argv[2])
# this recording has one such piece (the rule acts on real output, not only on the unit tests' trains)
assert n["n_mua_piece"] == 0 and d["n_mua_piece"] >= 1, (d, n)
# the same units; only the pieces change label, from good to mua
assert ld.keys() == ln.keys()
changed = [k for k in ld if ld[k] != ln[k]]
assert all(ln[k] == "good" and ld[k] == "mua" for k in changed), changed
assert len(changed) == d["n_mua_piece"] and d["n_good"] == n["n_good"] - d["n_mua_piece"], (changed, d, n)
print("ok", d["n_mua_piece"])
PY
  assert_success
  run "$KS_BIN_DIR/ks-cluster" --work wp --final -q --set piece_similarity=1.5
  assert_failure 2
  assert_output --partial "piece_similarity"
}

@test "final_min_group_spikes: a group below it is one cluster; the good label needs Th_learned + good_amplitude_margin (template norm and median spike amplitude)" {
  cp -r "$W" wg
  cp -r "$W" wa
  run -0 "$KS_BIN_DIR/ks-cluster" --work wg --final -q --set final_min_group_spikes=100000000
  # without the bound (and without the piece rule, which acts on the good units left)
  run -0 "$KS_BIN_DIR/ks-cluster" --work wa --final -q --set good_amplitude_margin=None --set piece_similarity=None
  run "$PY" - "$W/final" wg/final wa/final <<'PY'
import sys, json, numpy as np
d, g, a = (json.load(open(f + "/final.json"))["extra"] for f in sys.argv[1:])
# every group below the minimum: one cluster per non-empty group
assert g["n_clusters_before_merges"] <= g["n_groups"] < d["n_clusters_before_merges"], (g, d)
def table(f, name):
    rows = [l.split("\t") for l in open(f + "/cluster_" + name + ".tsv").read().split("\n")[1:] if l.strip()]
    return {int(a): b for a, b in rows}
lab, amp = table(sys.argv[1], "KSLabel"), table(sys.argv[1], "Amplitude")
good = [k for k, v in lab.items() if v == "good"]
assert good and all(float(amp[k]) >= 8 + 2 for k in good), [(k, amp[k]) for k in good]
assert d["n_mua_low_amplitude"] > 0 and a["n_mua_low_amplitude"] == 0, (d, a)
# margin None: the same units, and the refractory ones that were too faint are good again
lab2, amp2 = table(sys.argv[3], "KSLabel"), table(sys.argv[3], "Amplitude")
assert amp2 == amp and {k for k, v in lab.items() if v == "good"} < {k for k, v in lab2.items() if v == "good"}
assert sum(v == "good" and float(amp2[k]) < 10 for k, v in lab2.items()) == d["n_mua_low_amplitude"], (lab2, amp2)
# the median of each good unit's matched spike amplitudes (match/ rows of its spikes) is above the bound
# too; on this recording some units' templates clear it while most of their spikes sit at the threshold
w = sys.argv[1].rsplit("/", 1)[0]
clu = np.load(sys.argv[1] + "/spike_clusters.npy")
rows = np.load(sys.argv[1] + "/spike_match_index.npy")
ma = np.load(w + "/match/spike_amplitudes.npy")[rows].astype(np.float64)
med = {k: float(np.median(ma[clu == k])) for k in lab}
assert all(med[k] >= 10 for k in good), [(k, med[k]) for k in good]
assert d["n_mua_at_threshold"] > 0 and a["n_mua_at_threshold"] == 0, (d, a)
assert sum(v == "good" and float(amp2[k]) >= 10 and med[k] < 10 for k, v in lab2.items()) == d["n_mua_at_threshold"], med
print("ok", d["n_clusters_before_merges"], g["n_clusters_before_merges"], d["n_mua_low_amplitude"], d["n_mua_at_threshold"])
PY
  assert_success
  run "$KS_BIN_DIR/ks-cluster" --work wg --final -q --set final_min_group_spikes=0
  assert_failure 2
  assert_output --partial "final_min_group_spikes"
}
