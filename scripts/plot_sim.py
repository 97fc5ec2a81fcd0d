#!/usr/bin/python3
"""Pictures of a ks-sim recording folder, for judging its realism (formats/ground-truth.md).

usage: /usr/bin/python3 scripts/plot_sim.py DIR OUT_PREFIX [--t0 S] [--ms MS] [--channels N]

Writes OUT_PREFIX-traces.png (a stretch of raw traces with the true spikes marked, a few
units' mean waveforms around their peak channel, the noise spectrum and the noise
correlation against distance) and OUT_PREFIX-drift.png (the true motion at several depths,
and the depth of one large unit's spikes measured from the recording against its true path).
Needs numpy, scipy and matplotlib (Debian: python3-matplotlib). Reads the files as
formats/ground-truth.md specifies them, nothing else.
"""
import argparse
import json
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import butter, sosfiltfilt, welch  # noqa: E402


def save(fig, out):
    """PNG with a 128-colour palette: line plots lose nothing visible and stay small."""
    fig.savefig(out)
    plt.close(fig)
    try:
        from PIL import Image
        Image.open(out).convert('RGB').quantize(colors=128).save(out, optimize=True)
    except ImportError:
        pass


def load(d):
    params = json.load(open(os.path.join(d, 'params.json')))
    sim = json.load(open(os.path.join(d, 'sim.json')))
    probe = json.load(open(os.path.join(d, 'probe.json')))
    raw = np.memmap(os.path.join(d, 'recording.bin'), dtype=np.int16, mode='r')
    raw = raw.reshape(-1, params['n_chan_bin'])
    gt = {k: np.load(os.path.join(d, 'gt', k + '.npy')) for k in (
        'spike_times', 'spike_clusters', 'templates', 'unit_positions', 'unit_amplitudes_uv',
        'unit_peak_channels', 'motion', 'motion_time_s', 'motion_depth_um')}
    return params, sim, probe, raw, gt


def motion_at(gt, t_s, y_um):
    """True motion (µm) at time t_s and depth y_um, interpolated in gt/motion.npy."""
    m, tb, db = gt['motion'], gt['motion_time_s'], gt['motion_depth_um']
    col = np.array([np.interp(t_s, tb, m[:, j]) for j in range(len(db))])
    return float(np.interp(y_um, db, col)) if len(db) > 1 else float(col[0])


def pick_unit(gt, yc):
    """A large unit with many spikes, at least 100 µm from the probe's ends."""
    amps = gt['unit_amplitudes_uv']
    counts = np.bincount(gt['spike_clusters'], minlength=len(amps))
    y = gt['unit_positions'][:, 1]
    inside = (y > yc.min() + 100) & (y < yc.max() - 100)
    if not inside.any():
        inside[:] = True
    return int(np.argmax(np.where(inside, amps * np.sqrt(counts), -1)))


def traces_figure(d, out, t0_s, ms, n_show):
    params, sim, probe, raw, gt = load(d)
    fs, uvb = params['fs'], sim['uv_per_bit']
    chan_map = np.asarray(probe['chanMap'])
    xc, yc = np.asarray(probe['xc'], float), np.asarray(probe['yc'], float)
    C = len(chan_map)
    # The n_show channels around a large, busy unit's peak channel, in depth order.
    big = pick_unit(gt, yc)
    order = np.argsort(yc, kind='stable')
    pos = int(np.where(order == gt['unit_peak_channels'][big])[0][0])
    lo = max(0, min(C - n_show, pos - n_show // 2))
    chans = order[lo:lo + n_show]
    # A stretch holding one of that unit's spikes, unless --t0 was given.
    st, sc = gt['spike_times'], gt['spike_clusters']
    if t0_s is None:
        mine = st[sc == big]
        t0 = int(mine[len(mine) // 2] - 0.3 * ms * fs / 1000) if len(mine) else 0
    else:
        t0 = int(t0_s * fs)
    n = int(ms * fs / 1000)
    t0 = max(0, min(t0, raw.shape[0] - n))
    x = raw[t0:t0 + n, chan_map[chans]].astype(float) * uvb
    x -= np.median(x, axis=0)
    fig = plt.figure(figsize=(11, 7.2), dpi=80)
    ax = fig.add_axes([0.06, 0.08, 0.5, 0.86])
    step = 6 * sim['config']['noise_uv'] if sim['config']['noise_uv'] > 0 else 50
    t_ms = np.arange(n) / fs * 1000
    for i, c in enumerate(chans):
        ax.plot(t_ms, x[:, i] + i * step, color='0.25', lw=0.6)
    # Each true spike marked on the channel nearest to where its unit is at that moment
    # (rest position + true motion), in its unit's colour.
    sel = (st >= t0) & (st < t0 + n)
    cmap = plt.get_cmap('tab10')
    pos_u = gt['unit_positions']
    for t, u in zip(st[sel], sc[sel]):
        y_now = pos_u[u, 1] + motion_at(gt, t / fs, pos_u[u, 1])
        c = int(np.argmin(np.hypot(xc - pos_u[u, 0], yc - y_now)))
        where = np.where(chans == c)[0]
        if len(where):
            ax.plot((t - t0) / fs * 1000, where[0] * step - 0.6 * step, '^', ms=5, color=cmap(u % 10))
    ax.set_yticks(np.arange(len(chans)) * step)
    ax.set_yticklabels([f'{yc[c]:.0f}' for c in chans], fontsize=7)
    ax.set_ylabel('channel depth y (µm)')
    ax.set_xlabel(f'time (ms) from {t0 / fs:.3f} s')
    ax.set_title(f"{sim['config']['preset']} (seed {sim['seed']}): raw traces ({step:.0f} µV apart); "
                 "true spikes ▲ at the channel nearest their unit", fontsize=9)
    ax.set_xlim(0, ms)
    # Mean waveforms: the largest unit of each type, on its 8 nearest channels (dark = nearest).
    tm = gt['templates']
    amps = gt['unit_amplitudes_uv']
    types = np.array([u['type'] for u in sim['units']])
    picks = []
    for kind in ('regular', 'narrow', 'positive', 'axonal'):
        ids = np.where(types == kind)[0]
        if len(ids):
            picks.append(int(ids[np.argmax(amps[ids])]))
    for k, u in enumerate(picks[:4]):
        axw = fig.add_axes([0.62 + 0.2 * (k % 2), 0.56 + 0.22 * (1 - k // 2), 0.16, 0.15])
        pc = gt['unit_peak_channels'][u]
        near = np.argsort(np.hypot(xc - xc[pc], yc - yc[pc]))[:8]
        for j, c in enumerate(near):
            axw.plot(tm[u, :, c], color=plt.get_cmap('viridis')(j / 8), lw=0.9)
        axw.set_title(f'unit {u} ({types[u]}), {amps[u]:.0f} µV', fontsize=7)
        axw.tick_params(labelsize=6)
        axw.axvline(20, color='0.8', lw=0.5)
    # Noise: spectrum and correlation against distance, from samples away from spikes.
    seg = raw[:min(raw.shape[0], int(20 * fs)), chan_map].astype(float) * uvb
    f, P = welch(seg[:, chans[len(chans) // 2]], fs=fs, nperseg=2048)
    seg = sosfiltfilt(butter(3, 300, 'highpass', fs=fs, output='sos'), seg, axis=0)
    axs = fig.add_axes([0.62, 0.08, 0.16, 0.3])
    axs.loglog(f[1:], P[1:], color='k', lw=0.8)
    axs.set_xlabel('Hz', fontsize=7)
    axs.set_title('spectrum (µV²/Hz)', fontsize=7)
    axs.tick_params(labelsize=6)
    cc = np.corrcoef(seg.T)
    D = np.hypot(xc[:, None] - xc[None], yc[:, None] - yc[None])
    axc = fig.add_axes([0.82, 0.08, 0.16, 0.3])
    m = (D > 0) & (D < 200)
    axc.plot(D[m], cc[m], '.', ms=1.5, color='0.4')
    axc.set_xlabel('distance (µm)', fontsize=7)
    axc.set_title('correlation (> 300 Hz)', fontsize=7)
    axc.tick_params(labelsize=6)
    save(fig, out)


def drift_figure(d, out):
    params, sim, probe, raw, gt = load(d)
    fs, uvb = params['fs'], sim['uv_per_bit']
    chan_map = np.asarray(probe['chanMap'])
    xc, yc = np.asarray(probe['xc'], float), np.asarray(probe['yc'], float)
    m, tb, db = gt['motion'], gt['motion_time_s'], gt['motion_depth_um']
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6), dpi=80)
    for j in np.linspace(0, len(db) - 1, min(5, len(db))).astype(int):
        axs[0].plot(tb, m[:, j], lw=0.8, label=f'y = {db[j]:.0f} µm')
    axs[0].set_xlabel('time (s)')
    axs[0].set_ylabel('motion (µm, + = units appear at larger y)')
    axs[0].set_title(f"true motion ({sim['config']['drift']['kinds']})", fontsize=9)
    axs[0].legend(fontsize=7)
    # A large, busy unit away from the probe's ends: the depth of its spikes measured in the
    # recording (amplitude^4-weighted centre of the channels within 100 µm), spikes with another
    # spike within 1.5 ms left out.
    u = pick_unit(gt, yc)
    amps = gt['unit_amplitudes_uv']
    all_t = gt['spike_times']
    isolated = np.ones(len(all_t), bool)
    gap = int(1.5e-3 * fs)
    isolated[1:] &= np.diff(all_t) > gap
    isolated[:-1] &= np.diff(all_t) > gap
    st = all_t[(gt['spike_clusters'] == u) & isolated]
    st = st[(st > 40) & (st < raw.shape[0] - 40)]
    if len(st) > 2000:
        st = st[np.linspace(0, len(st) - 1, 2000).astype(int)]
    pc = gt['unit_peak_channels'][u]
    near = np.where(np.hypot(xc - xc[pc], yc - yc[pc]) < 100)[0]
    depth = []
    for t in st:
        w = raw[t - 5:t + 6, chan_map[near]].astype(float) * uvb
        a = np.abs(w - np.median(raw[t - 40:t - 20, chan_map[near]].astype(float) * uvb, 0)).max(0) ** 4
        depth.append(np.sum(a * yc[near]) / max(np.sum(a), 1e-9))
    depth = np.asarray(depth)
    y0 = gt['unit_positions'][u, 1]
    true = np.array([motion_at(gt, t / fs, y0) for t in st])
    axs[1].plot(st / fs, depth - np.median(depth - true), '.', ms=2, color='0.5',
                label='measured in the recording (spike centre, offset removed)')
    axs[1].plot(st / fs, true, color='C3', lw=1, label='true motion at the unit')
    axs[1].set_xlabel('time (s)')
    axs[1].set_ylabel('µm')
    axs[1].set_title(f'unit {u} ({amps[u]:.0f} µV): its spikes follow the motion', fontsize=9)
    axs[1].legend(fontsize=7)
    fig.tight_layout()
    save(fig, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('dir')
    ap.add_argument('out_prefix')
    ap.add_argument('--t0', type=float, default=None, help='start of the trace stretch (s)')
    ap.add_argument('--ms', type=float, default=60, help='length of the trace stretch (ms)')
    ap.add_argument('--channels', type=int, default=24)
    a = ap.parse_args()
    traces_figure(a.dir, a.out_prefix + '-traces.png', a.t0, a.ms, a.channels)
    drift_figure(a.dir, a.out_prefix + '-drift.png')


if __name__ == '__main__':
    main()
