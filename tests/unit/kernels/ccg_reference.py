"""Correlogram statistics of kilosort4-algorithm.md §7.2, written from the doc's formulas alone.

Every pair (i, j) is looked at (an n1 x n2 matrix), so nothing here shares the sweep of kernels/ccg.cpp.
Used by tests/unit/kernels/test_ccg.cpp:

    python3 ccg_reference.py TRAINS OUT

TRAINS holds one case per line, "a_1 a_2 ... | b_1 b_2 ..." (seconds). OUT gets one line per case:
"R00 R01 Q00 R12 Q12", 17 significant digits. A case with an empty train or a zero time span has no
correlogram and is written as five zeros.
"""
import math
import sys

import numpy as np

BIN_S = 1e-3     # Δ
W = 500          # lags -W..W bins


def stats(a, b):
    if len(a) == 0 or len(b) == 0:
        return (0.0,) * 5
    T = max(a.max(), b.max()) - min(a.min(), b.min())
    if not T > 0:
        return (0.0,) * 5
    d = b[None, :] - a[:, None]                                  # b_j - a_i
    inside = (a[:, None] > b[None, :] - W * BIN_S) & (a[:, None] <= b[None, :] + W * BIN_S)
    lag = np.round(d[inside] / BIN_S).astype(np.int64)          # numpy rounds halves to even
    K = np.zeros(2 * W + 1)
    np.add.at(K, lag + W, 1.0)

    def expected(nbins):                                         # E(S) = |S| Δ n1 n2 / T
        return nbins * BIN_S * len(a) * len(b) / T

    def at(lags):
        return K[np.asarray(lags) + W]

    far = at(list(range(-499, -250)) + list(range(250, 500)))   # S1, 499 bins
    near_l = at(range(-50, -10))                                 # S2, 40 bins
    near_r = at(range(10, 50))                                   # S3, 40 bins
    assert len(far) == 499 and len(near_l) == 40 and len(near_r) == 40
    R00 = far.sum() / expected(len(far))
    R01 = max(near_l.sum() / expected(40), near_r.sum() / expected(40))
    Q00 = max(near_l.mean(), near_r.mean(), far.mean())

    K[W] = 0.0
    R, Q = [], []
    for i in range(1, 11):
        window = K[W - i:W + i + 1].sum()
        R.append(window / expected(2 * i))
        n = window / 2
        lam = i * Q00
        Q.append(0.5 * (1 + math.erf((n - lam) / math.sqrt(2 * lam + 1e-10))))
    return R00, R01, Q00, min(R) / (1e-10 + max(R00, R01)), min(Q)


def main(trains_path, out_path):
    with open(trains_path) as f, open(out_path, "w") as out:
        for line in f:
            a_text, b_text = line.split("|")
            a = np.array([float(x) for x in a_text.split()])
            b = np.array([float(x) for x in b_text.split()])
            out.write(" ".join("%.17g" % v for v in stats(a, b)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
