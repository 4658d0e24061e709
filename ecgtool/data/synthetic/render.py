"""Rendering one record: beats and f-waves as a vectorcardiogram, projected onto the leads, plus noise."""

from __future__ import annotations

import numpy as np

from ecgtool.data.synthetic.leads import DOWER, LEADS_12, _derive_12, _max_lead_gain
from ecgtool.data.synthetic.morphology import _ST_END_FRAC, _T_PARTS, _U_PART, _build_templates
from ecgtool.data.synthetic.noise import _noise_ch8
from ecgtool.data.synthetic.plan import _TAG_SIGNAL, RecordSpec, SyntheticConfig
from ecgtool.data.synthetic.rhythm import _beat_schedule


def _render_gaussians(n: int, fs: float, centres, sigmas, vecs) -> np.ndarray:
    """Sum of 3-D Gaussian waves on an n-sample grid (each truncated at +-4 sigma)."""
    out = np.zeros((n, 3))
    if len(centres) == 0:
        return out
    half = int(np.ceil(4.0 * sigmas.max() * fs)) + 1
    idx = np.round(centres * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
    g = np.exp(-0.5 * ((idx / fs - centres[:, None]) / sigmas[:, None]) ** 2)
    g[np.abs(idx / fs - centres[:, None]) > 4.0 * sigmas[:, None]] = 0.0
    valid = (idx >= 0) & (idx < n)
    idx, g = idx[valid], g[valid]
    rows = np.nonzero(valid)[0]
    for d in range(3):
        out[:, d] = np.bincount(idx, weights=g * vecs[rows, d], minlength=n)
    return out


def _render_plateaus(n: int, fs: float, start, end, e2, slope, vecs) -> np.ndarray:
    """ST-segment plateaus: logistic rise at the J point, fall into the T peak.

    `slope` in [0, 1] makes the deviation grow from J towards the T wave
    (downsloping depression) instead of staying horizontal.
    """
    out = np.zeros((n, 3))
    if len(start) == 0:
        return out
    e1 = 0.006
    lo = np.floor((start - 6 * e1) * fs).astype(np.int64)
    length = int(np.ceil(((end + 6 * e2) - (start - 6 * e1)).max() * fs)) + 2
    idx = lo[:, None] + np.arange(length)[None, :]
    t = idx / fs
    with np.errstate(over="ignore"):
        shape = 1.0 / (1.0 + np.exp(-(t - start[:, None]) / e1))
        shape = shape / (1.0 + np.exp(-(end[:, None] - t) / e2[:, None]))
    ramp = np.clip((t - start[:, None]) / (end - start)[:, None], 0, 1)
    shape *= 1.0 - slope[:, None] * 0.6 * (1.0 - ramp)
    valid = (idx >= 0) & (idx < n)
    rows = np.nonzero(valid)[0]
    idx, shape = idx[valid], shape[valid]
    for d in range(3):
        out[:, d] = np.bincount(idx, weights=shape * vecs[rows, d], minlength=n)
    return out


def _render_beats(n, fs, times, types, rrs, templates, spec, beat_amp):
    """Assemble all waves of all beats (vectorised per beat type) and render the VCG."""
    qtc = spec.qtc_ms / 1000.0
    cs, ss, vs = [], [], []
    p_start, p_end, p_e2, p_slope, p_vec = [], [], [], [], []
    for kind, tpl in templates.items():
        sel = np.array([k == kind for k in types])
        if not sel.any():
            continue
        t0, rr, amp = times[sel], rrs[sel], beat_amp[sel]
        # depolarisation waves: fixed offsets from the QRS onset
        cs.append((t0[:, None] + tpl.dep_c[None, :]).ravel())
        ss.append(np.broadcast_to(tpl.dep_s, (len(t0), len(tpl.dep_s))).ravel())
        vs.append((amp[:, None, None] * tpl.dep_v[None]).reshape(-1, 3))
        # repolarisation scales with the preceding RR (Bazett): JT = QT - 90 ms
        jt = np.maximum(qtc * np.sqrt(np.clip(rr, 0.3, 2.0)) - 0.09, 0.14)
        j = t0 + tpl.qrs_dur
        parts = list(_T_PARTS) + ([(_U_PART[0], _U_PART[1], tpl.u_amp)] if tpl.u_amp > 0 else [])
        for a, b, rel in parts:
            cs.append(j + a * jt)
            ss.append(b * jt)
            vs.append(amp[:, None] * (rel * tpl.t_vec)[None, :])
        for vec, slope in tpl.plateaus:
            p_start.append(j)
            p_end.append(j + _ST_END_FRAC * jt)
            p_e2.append(0.08 * jt)
            p_slope.append(np.full(len(j), slope))
            p_vec.append(amp[:, None] * vec[None, :])
    vcg = _render_gaussians(n, fs, np.concatenate(cs), np.concatenate(ss), np.vstack(vs))
    if p_start:
        vcg += _render_plateaus(
            n, fs, np.concatenate(p_start), np.concatenate(p_end), np.concatenate(p_e2),
            np.concatenate(p_slope), np.vstack(p_vec),
        )
    return vcg


def _f_waves(n: int, fs: float, spec: RecordSpec, rot: np.ndarray, rng) -> np.ndarray:
    """Atrial fibrillatory waves: FM/AM quasi-periodic signal on an atrial dipole.

    The dipole points rightward-inferior-anterior, so f-waves are largest in V1
    and the inferior leads.  Frequency wanders +-0.5 Hz, amplitude +-40 %.
    """
    t = np.arange(n) / fs
    f_inst = spec.f_wave_hz + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
    f_inst += 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 0.6) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f_inst) / fs + rng.uniform(0, 6.3)
    env = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3))
    wave = env * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 6.3)))
    wave2 = env * np.sin(phase + rng.uniform(0.5, 1.5))  # second dipole component, phase-shifted
    d1 = rot @ (np.array([-0.25, 0.5, -0.85]) + rng.normal(0, 0.08, 3))
    d2 = rot @ np.array([0.5, 0.3, 0.1])
    scale = spec.f_wave_mv / (1.3 * _max_lead_gain(d1))
    return scale * (wave[:, None] * d1[None, :] + 0.3 * wave2[:, None] * d2[None, :])


def generate_record(spec: RecordSpec, cfg: SyntheticConfig, noise: bool = True) -> tuple[np.ndarray, dict]:
    """Render one record.

    Returns ``signal`` float32 [samples, len(cfg.leads)] in mV and an ``info``
    dict with the ground truth: ``r_peaks`` (sample indices), ``beat_types``
    ("N"/"A"/"V"), ``qrs_onsets``/``qrs_offsets``/``p_onsets`` (sample indices,
    p_onsets -1 where a beat has no P), ``pr_ms`` (None in AF), ``qrs_ms``,
    ``pvc_qrs_ms``, ``qt_ms`` (at the mean RR), ``hr_bpm``, ``rr_cv``, ``snr_db``,
    ``axis_deg``, ``labels``.  ``noise=False`` gives the clean signal (baseline 0).
    """
    fs = float(cfg.fs)
    n = int(round(cfg.duration * cfg.fs))
    rng = np.random.default_rng([cfg.seed, _TAG_SIGNAL, spec.index])
    resp_hz = rng.uniform(0.15, 0.35)  # shared by RSA, wander and amplitude modulation

    templates, rot, _ = _build_templates(spec, rng)
    times, types, rrs = _beat_schedule(spec, cfg, rng, resp_hz)
    # respiration moves the heart/electrodes -> small beat-to-beat amplitude modulation
    beat_amp = 1 + rng.uniform(0.02, 0.07) * np.sin(2 * np.pi * resp_hz * times + rng.uniform(0, 6.3))
    vcg = _render_beats(n, fs, times, types, rrs, templates, spec, beat_amp)
    if "AF" in spec.labels:
        vcg += _f_waves(n, fs, spec, rot, rng)

    ch8 = vcg @ DOWER.T
    ch8[:, 2:] *= 1 + rng.normal(0, 0.05, 6)  # precordial electrode placement variability
    clean12 = _derive_12(ch8)
    sig_power = float(np.mean((clean12 - clean12.mean(axis=0)) ** 2))
    if noise:
        ch8 = ch8 + _noise_ch8(n, fs, spec, cfg, rng, resp_hz, sig_power)
    leads12 = _derive_12(ch8)
    sel = [LEADS_12.index(lead) for lead in cfg.leads]
    signal = leads12[:, sel].astype(np.float32)

    # ---- ground truth
    ref = np.array([templates[k].ref for k in types])
    dur = np.array([templates[k].qrs_dur for k in types])
    pr = np.array([templates[k].pr if templates[k].pr is not None else np.nan for k in types])
    r_idx = np.round((times + ref) * fs).astype(np.int64)
    inside = (r_idx >= 0) & (r_idx < n)
    to_idx = lambda x: np.round(x * fs).astype(np.int64)  # noqa: E731
    p_on = np.where(np.isnan(pr), -1, to_idx(np.nan_to_num(times - pr)))
    nn = np.diff(times[inside])[np.array(types)[inside][1:] == "N"] if inside.sum() > 1 else np.array([])
    mean_rr = 60.0 / spec.hr_bpm
    info = {
        "r_peaks": r_idx[inside],
        "beat_types": [k for k, keep in zip(types, inside) if keep],
        "qrs_onsets": to_idx(times)[inside],
        "qrs_offsets": to_idx(times + dur)[inside],
        "p_onsets": p_on[inside],
        "pr_ms": spec.pr_ms,
        "qrs_ms": spec.qrs_ms,
        "pvc_qrs_ms": spec.pvc_qrs_ms if spec.n_pvc else None,
        "qt_ms": 1000 * (spec.qtc_ms / 1000 * np.sqrt(mean_rr) - 0.09) + spec.qrs_ms,
        "hr_bpm": float(60.0 / np.mean(np.diff(times[inside]))) if inside.sum() > 1 else spec.hr_bpm,
        "rr_cv": float(np.std(nn) / np.mean(nn)) if len(nn) > 1 else 0.0,
        "snr_db": spec.snr_db if noise else float("inf"),
        "axis_deg": spec.axis_deg,
        "labels": list(spec.labels),
        "leads": list(cfg.leads),
        "fs": cfg.fs,
    }
    return signal, info
