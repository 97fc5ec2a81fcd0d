#!/usr/bin/python3
"""Accuracy of ks-drift's motion against a ks-sim ground truth.

    scripts/drift_accuracy.py SIM_DIR WORK_DIR [--json]

Prints (or writes as one JSON object):
  - motion error (µm): dshift against -(true motion averaged over each batch, at each block centre's
    depth; for one block, averaged over all depths), after removing each block's mean difference
    (the reference is arbitrary): RMS and max over batches and blocks;
  - flatness: RMS of dshift itself (what a no-drift recording should give: ~0);
  - corrected-depth spread: the drift spikes are matched to ground-truth spikes (time within 3
    samples, depth within 40 µm of where the unit appears); per unit with >= 50 matches, the median
    depth in each of 10 equal time windows, before (recorded depth) and after correction (depth +
    the batch's shift at that depth, formats/motion.md); the spread is max - min of those medians.
    Reported: median and 90th percentile over units, before and after.
"""
import json
import sys

import numpy as np


def shift_at(row, yblk, y):
    """Per-depth shift of one batch: linear in depth with linear extrapolation (kriging.hpp)."""
    if len(yblk) == 1:
        return np.full_like(y, row[0], dtype=float)
    k = np.clip(np.searchsorted(yblk, y, side="right"), 1, len(yblk) - 1)
    y0, y1 = yblk[k - 1], yblk[k]
    w = (y - y0) / (y1 - y0)
    return row[k - 1] + w * (row[k] - row[k - 1])


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    sim, work = sys.argv[1], sys.argv[2]
    as_json = "--json" in sys.argv[3:]
    fs = json.load(open(sim + "/params.json")).get("fs", 30000.0)
    d = np.load(work + "/drift/dshift.npy")
    yblk = np.load(work + "/drift/yblk.npy")
    extra = json.load(open(work + "/drift/drift.json"))["extra"]
    B = extra["batch_size"] / fs
    mo = np.load(sim + "/gt/motion.npy").astype(float)
    mt = np.load(sim + "/gt/motion_time_s.npy").astype(float)
    md = np.load(sim + "/gt/motion_depth_um.npy").astype(float)

    nb, nk = d.shape
    truth = np.zeros_like(d)
    for b in range(nb):
        rows = (mt >= b * B) & (mt < (b + 1) * B)
        if not rows.any():
            rows = np.argmin(abs(mt - (b + 0.5) * B))
        for k in range(nk):
            if nk == 1:
                truth[b, k] = -np.mean(mo[rows])
            else:
                truth[b, k] = -np.mean([np.interp(yblk[k], md, r) for r in np.atleast_2d(mo[rows])])
    err = d - truth
    err -= err.mean(axis=0)
    out = {
        "status": extra["status"], "n_blocks": int(nk), "n_batches": int(nb),
        "motion_rms_um": float(np.sqrt(np.mean(err ** 2))), "motion_max_um": float(np.abs(err).max()),
        "dshift_rms_um": float(np.sqrt(np.mean((d - d.mean(axis=0)) ** 2))),
        "true_motion_range_um": float(truth.max() - truth.min()),
    }

    # Corrected-depth spread per unit.
    st = np.load(work + "/drift/spikes_times.npy")
    sz = np.load(work + "/drift/spikes_depth_um.npy").astype(float)
    if len(st) > 0:
        gt_t = np.load(sim + "/gt/spike_times.npy")
        gt_c = np.load(sim + "/gt/spike_clusters.npy")
        pos = np.load(sim + "/gt/unit_positions.npy")
        b_of = np.minimum(st // extra["batch_size"], nb - 1)
        corr = sz.copy()
        for b in range(nb):
            m = b_of == b
            corr[m] = sz[m] + shift_at(d[b], yblk, sz[m])
        order = np.argsort(st, kind="stable")
        sts = st[order]
        before, after = [], []
        for u in np.unique(gt_c):
            tu = gt_t[gt_c == u]
            lo = np.searchsorted(sts, tu - 3)
            hi = np.searchsorted(sts, tu + 4)
            idx = []
            for i, (a, c) in enumerate(zip(lo, hi)):
                if c <= a:
                    continue
                cand = order[a:c]
                # the spike nearest in depth to where the unit appears at that time
                t_s = tu[i] / fs
                m_here = np.interp(pos[u, 1], md, mo[min(np.searchsorted(mt, t_s), len(mt) - 1)])
                dz = np.abs(sz[cand] - (pos[u, 1] + m_here))
                j = cand[np.argmin(dz)]
                if dz.min() < 40:
                    idx.append(j)
            if len(idx) < 50:
                continue
            idx = np.array(idx)
            win = np.minimum((st[idx] / (nb * extra["batch_size"]) * 10).astype(int), 9)
            if len(np.unique(win)) < 5:
                continue
            mb = [np.median(sz[idx][win == w]) for w in np.unique(win)]
            ma = [np.median(corr[idx][win == w]) for w in np.unique(win)]
            before.append(max(mb) - min(mb))
            after.append(max(ma) - min(ma))
        if before:
            out.update({
                "units_tracked": len(before),
                "spread_before_median_um": float(np.median(before)), "spread_before_p90_um": float(np.percentile(before, 90)),
                "spread_after_median_um": float(np.median(after)), "spread_after_p90_um": float(np.percentile(after, 90)),
            })
    if as_json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print("%-26s %s" % (k, ("%.2f" % v) if isinstance(v, float) else v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
