#!/usr/bin/python3
"""Score ks-match-sessions (or pyKilomatch) results against the true identity of each unit.

usage: score_sessions.py RESULT_DIR GT_IDS.npy [--subset MASK.npy] [--json FILE]

GT_IDS.npy: the true neuron of each unit, in the result's unit order (-1 for a unit that is no
neuron, e.g. a false positive of the sorter). Matched pairs are pairs of units with one IdxCluster
(> 0); true pairs are pairs of units of one neuron. Prints pair precision and recall, and the
fraction of neurons seen in two or more sessions whose units form exactly one identity.
--subset: score only the units where MASK is true (e.g. gt_well_isolated.npy): pairs among them, and
identities judged on them alone.
"""
import json, sys
from itertools import combinations
import numpy as np


def score(idx, gt, subset=None):
    if subset is not None:
        idx, gt = idx[subset], gt[subset]
    n = len(idx)
    pred, true = set(), set()
    for k in set(idx[idx > 0].tolist()):
        pred.update(combinations(np.flatnonzero(idx == k).tolist(), 2))
    for g in set(gt[gt >= 0].tolist()):
        true.update(combinations(np.flatnonzero(gt == g).tolist(), 2))
    tp = len(pred & true)
    neurons = [g for g in set(gt[gt >= 0].tolist()) if (gt == g).sum() >= 2]
    intact = 0
    for g in neurons:
        m = np.flatnonzero(gt == g)
        k = idx[m[0]]
        intact += k > 0 and np.all(idx[m] == k) and (idx == k).sum() == len(m)
    return {"n_units": n, "pairs_predicted": len(pred), "pairs_true": len(true), "pairs_correct": tp,
            "precision": tp / len(pred) if pred else float("nan"), "recall": tp / len(true) if true else float("nan"),
            "neurons_tracked": len(neurons), "identities_intact": intact / len(neurons) if neurons else float("nan")}


def main():
    args = sys.argv[1:]
    out = subset = None
    if "--subset" in args:
        k = args.index("--subset")
        subset = np.load(args[k + 1]).astype(bool).ravel()
        del args[k:k + 2]
    if "--json" in args:
        k = args.index("--json")
        out = args[k + 1]
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    idx = np.load(args[0] + "/IdxCluster.npy").ravel()
    gt = np.load(args[1]).ravel()
    if len(idx) != len(gt):
        sys.exit("score_sessions.py: %d units in the result, %d in %s" % (len(idx), len(gt), args[1]))
    s = score(idx, gt, subset)
    print("precision %.4f  recall %.4f  identities intact %.4f  (%d predicted pairs, %d true, %d neurons in >= 2 sessions)"
          % (s["precision"], s["recall"], s["identities_intact"], s["pairs_predicted"], s["pairs_true"], s["neurons_tracked"]))
    if out:
        json.dump(s, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
