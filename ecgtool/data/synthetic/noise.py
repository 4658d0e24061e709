"""Recording noise: baseline wander, electrode motion, powerline, EMG and amplifier noise."""

from __future__ import annotations

import numpy as np

from ecgtool.data.synthetic.leads import _CH8_TO_12, _ELEC_TO_CH8
from ecgtool.data.synthetic.plan import RecordSpec, SyntheticConfig


def _band_noise(rng, shape, fs: float, f_lo: float, f_hi: float) -> np.ndarray:
    """White noise band-limited in the frequency domain (unit variance per row)."""
    n = shape[-1]
    spec = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec *= ((f >= f_lo) & (f <= f_hi))[None, :]
    x = np.fft.irfft(spec, n=n, axis=-1)
    return x / (x.std(axis=-1, keepdims=True) + 1e-12)


def _noise_ch8(n: int, fs: float, spec: RecordSpec, cfg: SyntheticConfig, rng, resp_hz, sig_power):
    """Noise on the 8 recorded channels, built per electrode, scaled to spec.snr_db."""
    t = np.arange(n) / fs
    n_el = 9  # RA, LA, LL, V1..V6

    # baseline wander: respiration (electrode impedance/position) + slow drift
    bw = rng.lognormal(0, 0.5, (n_el, 1)) * np.sin(2 * np.pi * resp_hz * t + rng.uniform(0, 6.3, (n_el, 1)))
    for _ in range(2):
        f = rng.uniform(0.02, 0.15)
        bw += rng.lognormal(-0.3, 0.5, (n_el, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (n_el, 1)))
    # electrode motion: a step in one electrode's half-cell potential, recovering slowly;
    # after high-pass filtering it leaves a sharp transient that can mimic an ectopic beat
    for _ in range(spec.motion_artefacts):
        el, t0 = int(rng.integers(0, n_el)), rng.uniform(0.05, 0.95) * n / fs
        tau, rise = rng.uniform(0.2, 1.2), rng.uniform(0.01, 0.05)
        dt = t - t0
        with np.errstate(over="ignore"):
            step = 1.0 / (1.0 + np.exp(-dt / rise)) * np.exp(-np.clip(dt, 0, None) / tau)
        bw[el] += rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 6.0) * step

    # powerline: mostly common-mode, the differential part survives in the leads
    pl = None
    if cfg.powerline_hz < fs / 2:
        ph = rng.uniform(0, 0.6) + rng.normal(0, 0.3, (n_el, 1))
        pl = (1 + 0.3 * rng.standard_normal((n_el, 1))) * np.sin(2 * np.pi * cfg.powerline_hz * t + ph)
        if 3 * cfg.powerline_hz < fs / 2:
            pl += 0.15 * np.sin(2 * np.pi * 3 * cfg.powerline_hz * t + 3 * ph)

    # EMG: 20-150 Hz noise, bursty, stronger on limb electrodes
    emg = _band_noise(rng, (n_el, n), fs, 20.0, min(150.0, 0.45 * fs))
    env = np.full((n_el, n), 0.3)
    for _ in range(int(rng.integers(1, 5))):
        c, w = rng.uniform(0, n / fs), rng.uniform(0.2, 1.5)
        env += rng.uniform(0.5, 3.0) * np.exp(-0.5 * ((t - c) / w) ** 2) * rng.uniform(0.2, 1.0, (n_el, 1))
    env[:3] *= 1.5
    emg *= env

    def lead_power(ch8):
        return float(np.mean((_CH8_TO_12 @ ch8) ** 2))

    parts, weights = [], []
    mix = list(spec.noise_mix)
    for w, comp in zip(mix, (bw, pl, emg)):
        if comp is None:
            continue
        ch = _ELEC_TO_CH8 @ comp
        parts.append(ch / np.sqrt(lead_power(ch) + 1e-20))
        weights.append(w)
    amp_noise = rng.standard_normal((8, n))  # amplifier noise, independent per channel
    parts.append(amp_noise / np.sqrt(lead_power(amp_noise)))
    weights = np.array(weights) / np.sum(weights) * 0.95
    weights = np.append(weights, 0.05)
    noise_power = sig_power / 10 ** (spec.snr_db / 10)
    total = sum(np.sqrt(w * noise_power) * p for w, p in zip(weights, parts))
    total *= np.sqrt(noise_power / (lead_power(total) + 1e-20))  # exact SNR despite cross terms
    return total.T  # (n, 8)
