#!/usr/bin/python3
"""The true neuron behind each unit of a ks-match-sessions run over sorted ks-sim sessions.

usage: sorted_sessions_gt.py RESULT_DIR SIM_DIR SCORE_1.json ... SCORE_S.json OUT_PREFIX

SCORE_k.json is ks-score's report of session k's sorting against SIM_DIR/session_{k-1}. A sorted unit
paired with a true unit (ks-score's `gt_unit`) stands for that unit's neuron (gt/unit_ids.npy);
others get -1. Writes OUT_PREFIX_ids.npy (neuron per unit, in units.tsv order) and
OUT_PREFIX_well.npy (the unit is well detected: accuracy >= 0.8) for scripts/score_sessions.py.
"""
import json, os, sys
import numpy as np


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    res, sim, scores, prefix = sys.argv[1], sys.argv[2], sys.argv[3:-1], sys.argv[-1]
    meta = json.load(open(os.path.join(sim, "sessions.json")))
    pairs = []
    for k, f in enumerate(scores):
        sc = json.load(open(f))
        ids = np.load(os.path.join(sim, meta["sessions"][k]["dir"], "gt", "unit_ids.npy"))
        pairs.append({u["id"]: (int(ids[u["gt_unit"]]) if u["gt_unit"] is not None else -1, bool(u["well_detected"]))
                      for u in sc["sorted_units"]})
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(res, "units.tsv"))][1:]
    gid = np.array([pairs[int(r[1]) - 1].get(int(r[3]), (-1, False))[0] for r in rows])
    well = np.array([pairs[int(r[1]) - 1].get(int(r[3]), (-1, False))[1] for r in rows])
    np.save(prefix + "_ids.npy", gid)
    np.save(prefix + "_well.npy", well)
    print("%d units, %d paired with a true unit, %d well detected" % (len(gid), (gid >= 0).sum(), well.sum()))


if __name__ == "__main__":
    main()
