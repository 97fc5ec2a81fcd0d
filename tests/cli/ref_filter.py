#!/usr/bin/python3
"""Independent reference for ks-filter (a test helper, not part of the tools).

Computes the filtered recording with numpy/scipy in float64 from the raw file and the probe:
  scipy.signal.butter(3, cutoff, 'highpass', fs=fs, output='sos'), the signal padded with edge
  copies by the context length L = ceil(ln 1e-8 / ln max|pole|) on both sides, sosfiltfilt with
  padlen=0 (its start is lfilter_zi * first sample, the steady state for a constant), cropped;
  then per shank of >= 3 channels the lower median (or the mean) across channels is subtracted
  at each sample; then every batch of batch_size samples with max |value| >= artifact_threshold
  is zeroed.
and compares it with ks-filter's output (filter/filtered.bin, float16; or a float32 stream).
The tolerance is the storage rounding: half a float16 step at each value (or 0 for float32),
plus 2e-6 of the signal RMS for float32 samples between the steps inside ks-filter.
Prints one summary line; exits 1 when any value is outside the tolerance.
"""
import argparse
import json
import math
import sys

import numpy as np
import scipy.signal as ss


def reference(a):
    probe = json.load(open(a.probe))
    chan = np.asarray(probe["chanMap"], dtype=int)
    kc = np.asarray(probe.get("kcoords", [0] * len(chan)), dtype=float)
    dt = np.dtype(a.dtype).newbyteorder("<")
    raw = np.fromfile(a.raw, dtype=dt)
    raw = raw.reshape(-1, a.n_chan_bin)
    imin = max(int(a.tmin * a.fs), 0)
    imax = raw.shape[0] if math.isinf(a.tmax) else min(int(a.tmax * a.fs), raw.shape[0])
    x = raw[imin:imax][:, chan].astype(np.float64)
    if a.dtype == "uint16":
        x -= 32768
    if a.scale is not None:
        x *= a.scale
    if a.shift is not None:
        x += a.shift
    if a.invert:
        x = -x

    z, p, k = ss.butter(3, a.cutoff, "highpass", fs=a.fs, output="zpk")
    L = int(math.ceil(math.log(1e-8) / math.log(np.abs(p).max())))
    sos = ss.butter(3, a.cutoff, "highpass", fs=a.fs, output="sos")
    y = ss.sosfiltfilt(sos, np.pad(x, ((L, L), (0, 0)), mode="edge"), axis=0, padlen=0)[L:-L]

    if a.reference != "none":
        for shank in dict.fromkeys(kc.tolist()):
            g = np.flatnonzero(kc == shank)
            if len(g) < 3:
                continue
            if a.reference == "median":
                ref = np.sort(y[:, g], axis=1)[:, (len(g) - 1) // 2]
            else:
                ref = y[:, g].mean(axis=1)
            y[:, g] -= ref[:, None]

    zeroed = []
    if not math.isinf(a.artifact_threshold):
        for b in range(0, len(y), a.batch_size):
            if np.abs(y[b:b + a.batch_size]).max() >= a.artifact_threshold:
                y[b:b + a.batch_size] = 0
                zeroed.append(b // a.batch_size)
    return y, L, zeroed, imin


def half_step(v):
    """Half the spacing of float16 values at |v| (subnormal spacing 2^-24 below 2^-14)."""
    av = np.maximum(np.abs(v), 2.0 ** -14)
    return 0.5 * 2.0 ** (np.floor(np.log2(av)) - 10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--n-chan-bin", type=int, required=True)
    ap.add_argument("--dtype", default="int16")
    ap.add_argument("--fs", type=float, default=30000.0)
    ap.add_argument("--cutoff", type=float, default=300.0)
    ap.add_argument("--tmin", type=float, default=0.0)
    ap.add_argument("--tmax", type=float, default=math.inf)
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--shift", type=float, default=None)
    ap.add_argument("--invert", action="store_true")
    ap.add_argument("--reference", default="median", choices=["median", "mean", "none"])
    ap.add_argument("--batch-size", type=int, default=60000)
    ap.add_argument("--artifact-threshold", type=float, default=math.inf)
    ap.add_argument("--filtered", help="work folder: compare DIR/filter/filtered.bin (+ .json)")
    ap.add_argument("--float32", help="compare a float32 stream (ks-filter --stdout)")
    ap.add_argument("--edge", type=int, default=0, help="also report the first and last EDGE samples separately")
    a = ap.parse_args()

    y, L, zeroed, imin = reference(a)
    n, c = y.shape
    if a.filtered:
        side = json.load(open(a.filtered + "/filter/filtered.json"))
        assert side["dtype"] == "float16", side["dtype"]
        assert (side["n_samples"], side["n_channels"], side["imin"]) == (n, c, imin), \
            (side["n_samples"], side["n_channels"], side["imin"], n, c, imin)
        assert side["highpass"]["context_samples"] == L, (side["highpass"]["context_samples"], L)
        assert side["zeroed_batches"] == zeroed, (side["zeroed_batches"], zeroed)
        got = np.fromfile(a.filtered + "/filter/filtered.bin", dtype="<f2").astype(np.float64).reshape(n, c)
        tol = half_step(y)
    else:
        got = np.fromfile(a.float32, dtype="<f4").astype(np.float64).reshape(n, c)
        tol = np.zeros_like(y)
    rms = float(np.sqrt(np.mean(y ** 2))) if y.size else 0.0
    tol = tol + 2e-6 * rms + 1e-30
    err = np.abs(got - y)
    ratio = err / tol
    ok = bool(np.all(np.isfinite(got))) and float(ratio.max()) <= 1.0
    msg = (f"{'ok' if ok else 'FAIL'}: {n} samples x {c} channels, context {L}, rms {rms:.4g}, "
           f"max |err| {err.max():.3g} ({ratio.max():.4f} of tolerance), "
           f"rms err / rms {np.sqrt(np.mean(err ** 2)) / max(rms, 1e-30):.3g}, zeroed batches {zeroed}")
    if a.edge:
        e = min(a.edge, n)
        msg += (f"; first {e}: max {ratio[:e].max():.3f}, last {e}: max {ratio[-e:].max():.3f}, "
                f"middle: max {ratio[e:-e].max() if n > 2 * e else 0:.3f} of tolerance")
    if not ok:
        t, ch = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        msg += f"; worst at sample {t}, channel {ch}: got {got[t, ch]!r}, want {y[t, ch]!r}"
    print(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
