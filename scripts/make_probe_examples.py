#!/usr/bin/python3
"""Write the probe examples in formats/examples/probe/{valid,invalid}/ (see formats/probe.md).

Run with the system Python (numpy and scipy needed for the .mat files):
    /usr/bin/python3 scripts/make_probe_examples.py [--out formats/examples/probe]

Every file is small and deterministic (the .mat header's creation date is replaced by a fixed
text), so rerunning gives identical files. README.md beside the folders says why each invalid
file is invalid; tests/unit/libcommon/test_probe.cpp feeds both folders to ks::Probe::load.
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
import scipy.io

FIXED_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by ks-tools scripts/make_probe_examples.py"


def write_text(path, text):
    path.write_text(text)


def write_mat(path, variables, oned_as="column"):
    """savemat (v5), then a fixed 116-byte header text so the bytes do not depend on the date."""
    scipy.io.savemat(path, variables, format="5", oned_as=oned_as)
    data = bytearray(path.read_bytes())
    data[:116] = FIXED_MAT_HEADER.ljust(116, b" ")
    path.write_bytes(bytes(data))


def kilosort_json(chan_map, xc, yc, kcoords=None, n_chan=None):
    d = {"chanMap": list(chan_map), "xc": [float(v) for v in xc], "yc": [float(v) for v in yc]}
    if kcoords is not None:
        d["kcoords"] = [float(v) for v in kcoords]
    if n_chan is not None:
        d["n_chan"] = n_chan
    return json.dumps(d) + "\n"


def valid_files(out):
    # Two 4-site shanks, rows listed out of order, kcoords as floats as Kilosort4 writes them.
    write_text(out / "kilosort4_two_shanks.json", kilosort_json(
        [3, 2, 1, 0, 4, 5, 6, 7],
        [0, 16, 0, 16, 200, 216, 200, 216],
        [0, 0, 20, 20, 0, 0, 20, 20],
        kcoords=[0, 0, 0, 0, 1, 1, 1, 1], n_chan=8))
    # Only the required keys: kcoords defaults to shank 0.
    write_text(out / "minimal.json", '{"chanMap": [0, 1, 2], "xc": [0, 0, 0], "yc": [0, 20, 40]}\n')
    # What Kilosort4 saves after loading a .mat map with a disconnected site: n_chan counts it.
    write_text(out / "kilosort4_n_chan_larger.json", kilosort_json(
        [0, 1, 3], [11, 43, 27], [20, 20, 40], kcoords=[0, 0, 0], n_chan=4))

    write_text(out / "tetrodes.prb", """\
# Two tetrodes; everything but channel_groups is ignored.
total_nb_channels = 8
radius = 100

channel_groups = {
    # group key = shank id (kcoords)
    1: {
        'channels': [4, 5, 6, 7],
        'graph': [(4, 5), (4, 6), (5, 7)],
        'geometry': {4: (0, 0), 5: (20.0, 0), 6: (0, 2e1), 7: (20, 20),},
    },
    0: {
        "channels": (0, 1, 2, 3),
        "geometry": {
            0: (-10.5, 0), 1: (10.5, 0),
            2: (-10.5, 25), 3: (10.5, 25),
        },
        "label": 'tetrode A',
    },
}
""")
    write_text(out / "linear16_range.prb", """\
channel_groups = {
    0: {
        'channels': list(range(16)),
        'geometry': {0: (0, 0), 1: (0, 25), 2: (0, 50), 3: (0, 75),
                     4: (0, 100), 5: (0, 125), 6: (0, 150), 7: (0, 175),
                     8: (0, 200), 9: (0, 225), 10: (0, 250), 11: (0, 275),
                     12: (0, 300), 13: (0, 325), 14: (0, 350), 15: (0, 375)},
        'graph': [],
    },
}
""")

    # Kilosort 2/3 style: 1-based chanMap plus chanMap0ind, one reference site not connected,
    # kcoords all 1, column vectors, fs (ignored).
    n = 8
    write_mat(out / "kilosort_chanmap.mat", {
        "chanMap": np.arange(1, n + 1, dtype=float),
        "chanMap0ind": np.arange(n, dtype=float),
        "xcoords": np.tile([43.0, 11.0, 59.0, 27.0], n // 4),
        "ycoords": 20.0 * (np.arange(n) // 2) + 20.0,
        "kcoords": np.ones(n),
        "connected": np.array([1, 1, 1, 0, 1, 1, 1, 1], dtype=bool),
        "fs": 30000.0,
        "name": "example",
    })
    # Row vectors of other numeric classes, 1-based chanMap only, no kcoords/connected.
    write_mat(out / "row_vectors_int_classes.mat", {
        "chanMap": np.array([2, 1, 3], dtype=np.uint16),
        "xcoords": np.array([0, 32, 0], dtype=np.int16),
        "ycoords": np.array([0.0, 0.0, 15.5], dtype=np.float32),
    }, oned_as="row")


def invalid_files(out):
    write_text(out / "empty.json", "")
    write_text(out / "malformed.json", '{"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20\n')
    write_text(out / "not_an_object.json", "[0, 1, 2]\n")
    write_text(out / "missing_xc.json", '{"chanMap": [0, 1], "yc": [0, 20]}\n')
    write_text(out / "length_mismatch.json", kilosort_json([0, 1, 2, 3], [0, 0, 0], [0, 20, 40, 60]))
    write_text(out / "duplicate_row.json", kilosort_json([0, 1, 1], [0, 0, 0], [0, 20, 40]))
    write_text(out / "negative_row.json", kilosort_json([0, -1], [0, 0], [0, 20]))
    write_text(out / "same_position.json", kilosort_json([0, 1, 2], [0, 16, 0], [0, 0, 0]))
    write_text(out / "fractional_kcoords.json", kilosort_json([0, 1], [0, 0], [0, 20], kcoords=[0, 0.5]))
    write_text(out / "fractional_chanmap.json", '{"chanMap": [0, 1.5], "xc": [0, 0], "yc": [0, 20]}\n')
    write_text(out / "n_chan_too_small.json", kilosort_json([0, 1, 2], [0, 0, 0], [0, 20, 40], n_chan=2))
    write_text(out / "string_entry.json", '{"chanMap": [0, 1], "xc": [0, "a"], "yc": [0, 20]}\n')
    write_text(out / "no_channels.json", '{"chanMap": [], "xc": [], "yc": []}\n')
    write_text(out / "negative_kcoords.json", kilosort_json([0, 1], [0, 0], [0, 20], kcoords=[0, -1]))

    write_text(out / "function_call.prb", """\
channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 20)}}}
__import__('os').system('echo this must never run')
""")
    write_text(out / "call_in_value.prb", """\
channel_groups = {0: {'channels': [0, 1],
                      'geometry': {0: (0, 0), 1: (0, float('20'))}}}
""")
    write_text(out / "truncated.prb", """\
channel_groups = {
    0: {
        'channels': [0, 1, 2, 3],
        'geometry': {0: (0, 0), 1: (0, 20),
""")
    write_text(out / "missing_position.prb", """\
channel_groups = {0: {'channels': [0, 1, 2], 'geometry': {0: (0, 0), 1: (0, 20)}}}
""")
    write_text(out / "no_channel_groups.prb", "total_nb_channels = 32\nradius = 100\n")
    write_text(out / "comprehension.prb", """\
channel_groups = {0: {'channels': list(range(4)),
                      'geometry': {c: (0, 20 * c) for c in range(4)}}}
""")
    write_text(out / "empty.prb", "")
    write_text(out / "string_group_key.prb", """\
channel_groups = {'shank0': {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 20)}}}
""")

    write_text(out / "not_a_mat.mat", "this is a text file, not a MATLAB file\n")
    write_text(out / "empty.mat", "")
    write_mat(out / "missing_xcoords.mat", {
        "chanMap": np.arange(1, 5, dtype=float), "ycoords": np.arange(4) * 20.0})
    write_mat(out / "length_mismatch.mat", {
        "chanMap": np.arange(1, 5, dtype=float), "xcoords": np.zeros(3), "ycoords": np.arange(4) * 20.0})
    write_mat(out / "nan_position.mat", {
        "chanMap": np.arange(1, 4, dtype=float), "xcoords": np.zeros(3),
        "ycoords": np.array([0.0, np.nan, 40.0])})
    write_mat(out / "matrix_xcoords.mat", {
        "chanMap": np.arange(1, 5, dtype=float), "xcoords": np.zeros((2, 2)), "ycoords": np.arange(4) * 20.0})
    write_mat(out / "none_connected.mat", {
        "chanMap": np.arange(1, 3, dtype=float), "xcoords": np.zeros(2), "ycoords": np.array([0.0, 20.0]),
        "connected": np.zeros(2, dtype=bool)})
    write_mat(out / "zero_based_chanmap.mat", {  # chanMap must be 1-based: 0 becomes row -1
        "chanMap": np.arange(0, 3, dtype=float), "xcoords": np.zeros(3), "ycoords": np.array([0.0, 20.0, 40.0])})

    write_text(out / "probe.txt", "0 0 0\n1 0 20\n")


def main():
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here / "formats" / "examples" / "probe")
    args = ap.parse_args()
    for sub, fill in (("valid", valid_files), ("invalid", invalid_files)):
        d = args.out / sub
        d.mkdir(parents=True, exist_ok=True)
        fill(d)
    print(f"wrote {sum(1 for _ in args.out.rglob('*.*'))} files under {args.out}")


if __name__ == "__main__":
    os.umask(0o022)
    main()
