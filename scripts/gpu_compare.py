#!/usr/bin/env python3
"""Compares two ks-tools work folders made from one recording with --device cpu and --device cuda
(scripts/gpu_check.sh): stage by stage, how far the CUDA outputs are from the CPU ones, and each
stage's wall time. Exit status 1 when the spikes differ (detection or matching), else 0.

usage: gpu_compare.py CPU_WORK CUDA_WORK
"""
import json
import os
import sys

import numpy as np


def load(w, rel):
    p = os.path.join(w, rel)
    return np.load(p) if os.path.exists(p) else None


def times(w):
    out = {}
    p = os.path.join(w, "times.txt")
    if os.path.exists(p):
        for line in open(p):
            k, v = line.split()
            out[k] = float(v)
    return out


def same_spikes(name, a_t, b_t, a_extra=None, b_extra=None):
    """Prints how many spike times agree; returns the fraction not shared."""
    if a_t is None or b_t is None:
        print(f"{name}: missing")
        return 1.0
    sa, sb = set(a_t.tolist()), set(b_t.tolist())
    common = len(sa & sb)
    diff = 1.0 - common / max(len(sa | sb), 1)
    identical = len(a_t) == len(b_t) and np.array_equal(a_t, b_t)
    line = f"{name}: cpu {len(a_t)} spikes, cuda {len(b_t)}, shared times {common}, " \
           f"not shared {100 * diff:.3f}%, identical arrays {identical}"
    if identical and a_extra is not None and b_extra is not None:
        d = np.abs(a_extra.astype(np.float64) - b_extra.astype(np.float64))
        scale = max(np.abs(a_extra).max(), 1e-30)
        line += f", features max |diff| {d.max():.3g} (relative {d.max() / scale:.3g})"
    print(line)
    return diff


def main():
    a, b = sys.argv[1], sys.argv[2]
    bad = False
    fa = np.memmap(os.path.join(a, "filter/filtered.bin"), dtype=np.float16, mode="r")
    fb = np.memmap(os.path.join(b, "filter/filtered.bin"), dtype=np.float16, mode="r")
    n = min(len(fa), len(fb), 64 * 3_000_000)
    d = np.abs(fa[:n].astype(np.float32) - fb[:n].astype(np.float32))
    print(f"filter: {n} values compared, identical {np.mean(d == 0) * 100:.4f}%, max |diff| {d.max():.4g}, "
          f"max |value| {np.abs(fa[:n].astype(np.float32)).max():.4g}")
    for rel in ("whiten/whiten.npy", "drift/dshift.npy"):
        x, y = load(a, rel), load(b, rel)
        if x is None or y is None:
            print(f"{rel}: missing")
            continue
        dd = np.abs(x.astype(np.float64) - y.astype(np.float64))
        print(f"{rel}: max |diff| {dd.max():.4g} (max |value| {np.abs(x).max():.4g}), identical {np.array_equal(x, y)}")
    if same_spikes("detect", load(a, "detect/spike_times.npy"), load(b, "detect/spike_times.npy"),
                   load(a, "detect/tF.npy"), load(b, "detect/tF.npy")) > 0.001:
        bad = True
    ca, cb = load(a, "cluster/templates_pc.npy"), load(b, "cluster/templates_pc.npy")
    print(f"cluster: cpu {None if ca is None else ca.shape[0]} templates, cuda {None if cb is None else cb.shape[0]}"
          f", identical spike labels {np.array_equal(load(a, 'cluster/spike_clusters.npy'), load(b, 'cluster/spike_clusters.npy'))}")
    if same_spikes("match", load(a, "match/spike_times.npy"), load(b, "match/spike_times.npy"),
                   load(a, "match/spike_amplitudes.npy"), load(b, "match/spike_amplitudes.npy")) > 0.001:
        bad = True
    same_spikes("final", load(a, "final/spike_times.npy"), load(b, "final/spike_times.npy"))
    for w, dev in ((a, "cpu"), (b, "cuda")):
        p = os.path.join(w, "score.json")
        if os.path.exists(p):
            s = json.load(open(p))["summary"]
            print(f"score {dev}: {s['n_sorted_units']} units, well detected {s['n_well_detected']} of "
                  f"{s['n_gt_units']}, false positive {s['n_false_positive']}, "
                  f"mean accuracy (well det.) {s['mean_accuracy_well_detected'] or 0:.3f}")
    ta, tb = times(a), times(b)
    print("stage      cpu s   cuda s")
    for k in ta:
        print(f"{k:8s} {ta[k]:7.2f} {tb.get(k, float('nan')):8.2f}")
    print(f"{'total':8s} {sum(ta.values()):7.2f} {sum(tb.values()):8.2f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
