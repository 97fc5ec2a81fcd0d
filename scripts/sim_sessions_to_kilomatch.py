#!/usr/bin/python3
"""Turn a multi-session ks-sim folder into pyKilomatch's input layout, from the ground truth.

usage: sim_sessions_to_kilomatch.py SIM_DIR OUT_DIR [--min-amplitude-uv X]

Each unit's true template (gt/templates.npy, µV, every channel) becomes its waveform_all row and its
true spike times (ms) spike_times/Unit<k>.npy, so ks-match-sessions --kilomatch OUT_DIR is tested on
perfectly sorted sessions. Also writes gt_global_ids.npy (the neuron behind each unit),
gt_amplitudes_uv.npy and gt_well_isolated.npy (amplitude >= 50 µV, not an axonal unit, and at least
30 µm inside the probe's ends in its session) for scripts/score_sessions.py. Units below --min-amplitude-uv are left out.
"""
import json, os, sys
import numpy as np


def main():
    args = sys.argv[1:]
    min_amp = 0.0
    if "--min-amplitude-uv" in args:
        k = args.index("--min-amplitude-uv")
        min_amp = float(args[k + 1])
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    sim, out = args
    meta = json.load(open(os.path.join(sim, "sessions.json")))
    os.makedirs(os.path.join(out, "spike_times"), exist_ok=True)
    waves, sess, gids, amps, good = [], [], [], [], []
    meta_units = {u["global_id"]: u for u in meta["units"]}
    probe = None
    unit = 0
    for s in meta["sessions"]:
        d = os.path.join(sim, s["dir"])
        p = json.load(open(os.path.join(d, "probe.json")))
        if probe is None:
            probe = p
        fs = json.load(open(os.path.join(d, "params.json")))["fs"]
        tpl = np.load(os.path.join(d, "gt", "templates.npy"))          # (U, nt, C)
        ids = np.load(os.path.join(d, "gt", "unit_ids.npy"))
        amp = np.load(os.path.join(d, "gt", "unit_amplitudes_uv.npy"))
        pos = np.load(os.path.join(d, "gt", "unit_positions.npy"))
        ylo, yhi = min(p["yc"]), max(p["yc"])
        st = np.load(os.path.join(d, "gt", "spike_times.npy"))
        sc = np.load(os.path.join(d, "gt", "spike_clusters.npy"))
        for u in range(tpl.shape[0]):
            if amp[u] < min_amp:
                continue
            waves.append(tpl[u].T)
            sess.append(s["index"] + 1)
            gids.append(ids[u])
            amps.append(amp[u])
            good.append(amp[u] >= 50 and meta_units[int(ids[u])]["type"] != "axonal" and ylo + 30 <= pos[u, 1] <= yhi - 30)
            np.save(os.path.join(out, "spike_times", "Unit%d.npy" % unit), st[sc == u] * 1000.0 / fs)
            unit += 1
    np.save(os.path.join(out, "channel_locations.npy"), np.stack([probe["xc"], probe["yc"]], axis=1).astype(np.float64))
    np.save(os.path.join(out, "waveform_all.npy"), np.stack(waves).astype(np.float32))
    np.save(os.path.join(out, "session_index.npy"), np.array(sess, dtype=np.int64))
    np.save(os.path.join(out, "gt_global_ids.npy"), np.array(gids, dtype=np.int64))
    np.save(os.path.join(out, "gt_amplitudes_uv.npy"), np.array(amps, dtype=np.float64))
    np.save(os.path.join(out, "gt_well_isolated.npy"), np.array(good, dtype=bool))
    print("%d units from %d sessions" % (unit, len(meta["sessions"])))


if __name__ == "__main__":
    main()
