#!/usr/bin/python3
"""Checks a Phy template-gui folder the way phylib's TemplateModel loads it (phylib 2.7:
io/model.py load_model, _load_data, get_template_params; see ../shared/docs/phy-format.md §1, §4 and
gotcha 16), plus ks-tools' own promises (formats/phy.md). Usage: phy_check.py PHYDIR [WORKDIR]
Exit 0 and prints "phy folder ok ..." when every check passes; raises AssertionError otherwise."""
import os, sys
import numpy as np

d = sys.argv[1]
work = sys.argv[2] if len(sys.argv) > 2 else None
p = lambda f: os.path.join(d, f)

# params.py: executed as Python, keys lowercased; dat_path and dtype always read.
params = {}
exec(open(p("params.py")).read(), {}, params)
params = {k.lower(): v for k, v in params.items()}
for k in ("dat_path", "n_channels_dat", "dtype", "offset", "sample_rate", "hp_filtered"):
    assert k in params, "params.py lacks " + k
np.dtype(params["dtype"])
dat = params["dat_path"] if isinstance(params["dat_path"], list) else [params["dat_path"]]
assert float(params["sample_rate"]) > 0 and int(params["n_channels_dat"]) > 0

def load(name, mmap=None):
    a = np.load(p(name), mmap_mode=mmap, allow_pickle=False)   # phylib never allows pickles
    return a

st = load("spike_times.npy"); tpl = load("spike_templates.npy"); clu = load("spike_clusters.npy")
amp = load("amplitudes.npy"); T = load("templates.npy", "r+"); sim = load("similar_templates.npy")
pcf = load("pc_features.npy", "r"); pci = load("pc_feature_ind.npy", "r")
cmap = load("channel_map.npy"); cpos = load("channel_positions.npy"); csh = load("channel_shanks.npy")
W = load("whitening_mat.npy"); Wi = load("whitening_mat_inv.npy")
N = st.shape[0]
# dtypes phylib asserts or KS4 writes
assert st.dtype == np.int64 and st.ndim == 1
assert tpl.dtype in (np.uint16, np.uint32, np.int32, np.int64) and tpl.dtype == np.int32
assert clu.dtype == np.int32 and amp.dtype == np.float32
assert cmap.dtype in (np.uint32, np.int32, np.int64)
assert T.dtype == np.float32 and T.ndim == 3 and sim.dtype == np.float32
assert pcf.dtype == np.float32 and pci.dtype == np.uint32
assert cpos.dtype == np.float32 and W.dtype == np.float32 and Wi.dtype == np.float32
# times: nondecreasing integer samples
assert np.all(np.diff(st) >= 0), "spike_times must be nondecreasing"
assert st.min() >= 0
# shapes (gotcha 16)
K, nt, C = T.shape
assert tpl.shape == clu.shape == amp.shape == (N,) and pcf.shape[0] == N
assert sim.shape == (K, K)
assert pci.shape == (K, pcf.shape[2]) and pcf.shape[1] >= 1
assert cpos.shape == (C, 2) and csh.shape == (C,) and cmap.shape == (C,)
assert W.shape == Wi.shape == (C, C)
assert len({tuple(r) for r in cpos}) == C, "channel positions must be distinct"
assert cmap.max() < int(params["n_channels_dat"]) and cmap.min() >= 0
assert tpl.min() >= 0 and tpl.max() < K and np.array_equal(tpl, clu)       # KS4: templates = clusters
assert pci.max() < C
assert np.isfinite(T).all() and np.isfinite(pcf).all() and np.isfinite(amp).all()
# every extra spike_*.npy has N rows (phylib loads them as spike attributes)
for f in os.listdir(d):
    if f.startswith("spike_") and f.endswith(".npy"):
        assert load(f).shape[0] == N, f
# TSVs: tab-separated, header cluster_id<TAB>field, one row per cluster 0..K-1
labels = {}
for f in ("cluster_KSLabel.tsv", "cluster_ContamPct.tsv", "cluster_Amplitude.tsv", "cluster_group.tsv"):
    lines = open(p(f)).read().splitlines()
    head = lines[0].split("\t")
    assert head[0] == "cluster_id" and len(head) == 2, (f, head)
    ids = [int(l.split("\t")[0]) for l in lines[1:]]
    assert ids == list(range(K)), (f, ids[:5])
    labels[f] = [l.split("\t")[1] for l in lines[1:]]
for f in sorted(os.listdir(d)):      # every other table phylib loads: same layout (empty cells allowed)
    if f.startswith("cluster_") and f.endswith(".tsv") and f not in labels:
        lines = open(p(f)).read().splitlines()
        assert lines[0].split("\t")[0] == "cluster_id" and len(lines[0].split("\t")) == 2, f
        assert [int(l.split("\t")[0]) for l in lines[1:]] == list(range(K)), f
assert set(labels["cluster_KSLabel.tsv"]) <= {"good", "mua"}
assert labels["cluster_group.tsv"] == labels["cluster_KSLabel.tsv"]
# unwhitening as phy does it: whitening_mat_inv = inv(W + 1e-5 I)
assert np.allclose(Wi, np.linalg.inv(W.astype(np.float64) + 1e-5 * np.eye(C)), rtol=1e-3, atol=1e-4)
# the raw files, when there: each size fits n_channels_dat and the dtype; phy reads a list of files
# as one recording, so the spikes lie within their total length
if all(os.path.exists(f) for f in dat):
    n_samp = 0
    for f in dat:
        sz = os.path.getsize(f) - int(params["offset"])
        assert sz % (int(params["n_channels_dat"]) * np.dtype(params["dtype"]).itemsize) == 0
        n_samp += sz // (int(params["n_channels_dat"]) * np.dtype(params["dtype"]).itemsize)
    assert st.max() < n_samp, "a spike beyond the end of the recording"

if work:
    # ks-tools' promises: times = final times + imin; features = the spike's own matching features moved
    # onto its unit's channels (zeros where the unit's channel is not among the spike's).
    import json
    imin = json.load(open(os.path.join(work, "filter/filtered.json")))["imin"]
    ft = np.load(os.path.join(work, "final/spike_times.npy"))
    assert np.array_equal(st, ft + imin)
    idx = np.load(os.path.join(work, "final/spike_match_index.npy"))
    stm = np.load(os.path.join(work, "final/spike_templates.npy"))
    tF = np.load(os.path.join(work, "match/tF.npy"), mmap_mode="r")
    tch = np.load(os.path.join(work, "match/template_chans.npy"))
    rng = np.random.default_rng(0)
    for i in rng.choice(N, size=min(N, 3000), replace=False):
        own = list(tch[stm[i]])
        for j, c in enumerate(pci[clu[i]]):
            want = tF[idx[i], own.index(c)] if c in own else np.zeros(pcf.shape[1], np.float32)
            assert np.array_equal(pcf[i, :, j], want), (i, j)
    # the unit's feature channels start with its template's largest channel
    Wpc = np.load(os.path.join(work, "final/templates_pc.npy"))
    assert np.array_equal(pci[:, 0], (Wpc ** 2).sum(2).argmax(1))
print("phy folder ok: %d spikes, %d units, %d channels" % (N, K, C))
