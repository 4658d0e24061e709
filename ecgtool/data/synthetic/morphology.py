"""Dipole morphology: beat templates (P, QRS, ST, T, U waves as 3-D Gaussians) per beat type."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgtool.data.synthetic.leads import _DOWER12
from ecgtool.data.synthetic.plan import RecordSpec

# QRS templates: (u, sigma, vector) with u the wave centre as a fraction of the
# QRS duration and sigma as a fraction too.  _normalise_qrs() rescales u/sigma so
# that the +-2.5 sigma extents span exactly [0, 1] -> QRS duration is exact.
# Vectors in mV, Frank axes (X left, Y feet, Z back).

_P_RA = np.array([0.02, 0.09, -0.06])  # right atrium: inferior, anterior
_P_LA = np.array([0.10, 0.06, 0.05])  # left atrium: leftward, posterior -> biphasic P in V1

_QRS_NORMAL = [
    (0.20, 0.08, (-0.10, 0.00, -0.15)),  # septal: right/anterior -> r in V1, q in I/V6
    (0.45, 0.11, (0.80, 0.90, 0.30)),  # main LV free wall: left/inferior/posterior
    (0.75, 0.10, (-0.15, -0.20, 0.50)),  # basal terminal forces: S in V1-V3
]
_IRBBB_WAVE = (0.86, 0.06, (-0.18, -0.03, -0.22))  # small r' (incomplete RBBB pattern)
_T_NORMAL = np.array([0.22, 0.20, -0.10])  # concordant T, upright in I, II, V2-V6

# LBBB: septum activated right->left (no septal q laterally), slow broad notched
# leftward-posterior activation -> broad notched R in I/aVL/V5/V6, QS in V1-V3.
_QRS_LBBB = [
    (0.12, 0.06, (0.15, 0.05, -0.05)),
    (0.40, 0.13, (0.85, 0.35, 0.90)),
    (0.72, 0.11, (0.75, 0.05, 0.80)),
]
_T_LBBB = np.array([-0.25, -0.05, -0.30])  # discordant ST-T
_ST_LBBB = np.array([-0.06, 0.0, -0.10])  # secondary discordant ST shift

# RBBB: normal septal + LV activation, then a late slow rightward-anterior wave
# (R' in V1-V2, broad slurred S in I and V6).
_QRS_RBBB = [
    (0.08, 0.05, (-0.10, 0.00, -0.15)),
    (0.30, 0.09, (0.80, 0.90, 0.30)),
    (0.50, 0.07, (-0.10, -0.15, 0.35)),
    (0.72, 0.09, (-0.40, -0.10, -0.50)),
    (0.86, 0.055, (-0.25, -0.05, -0.30)),
]
_T_RBBB = np.array([0.15, 0.12, 0.22])  # inverted in V1-V3, upright laterally

# Repolarisation waves as (a, b, relative amplitude): centre = J + a*JT,
# sigma = b*JT.  A broad early and a sharper late Gaussian make T asymmetric;
# the late one ends (2.5 sigma) exactly at J + JT = T end.
_T_PARTS = [(0.615, 0.1375, 0.4), (0.725, 0.11, 1.0)]
_U_PART = (1.25, 0.07)
_ST_END_FRAC = 0.72  # ST plateau blends into the T peak


def _normalise_qrs(waves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.array([w[0] for w in waves], dtype=float)
    s = np.array([w[1] for w in waves], dtype=float)
    v = np.array([w[2] for w in waves], dtype=float)
    lo, hi = np.min(u - 2.5 * s), np.max(u + 2.5 * s)
    return (u - lo) / (hi - lo), s / (hi - lo), v


def _rot(axis: int, deg: float) -> np.ndarray:
    """Rotation matrix about Frank axis 0=X, 1=Y, 2=Z."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _rodrigues(axis: np.ndarray, deg: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.deg2rad(deg)
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def _heart_rotation(spec: RecordSpec, qrs_area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations giving the spec's frontal axis for the given mean QRS vector.

    Horizontal/sagittal rotations are applied first; the frontal rotation is then
    found by a 1-degree grid search, because the Dower limb leads are not exactly
    orthogonal projections of X/Y.  Returns (full rotation for ventricular
    depolarisation, half-frontal rotation for P and primary T): the P and T axes
    vary less between people than the QRS axis, which keeps the QRS-T angle normal.
    """
    pre = _rot(1, spec.horiz_rot_deg) @ _rot(0, spec.sagittal_rot_deg)
    a = pre @ qrs_area
    grid = np.arange(-180.0, 180.0, 1.0)
    rad = np.deg2rad(grid)
    # rotate a about Z by every grid angle at once
    x = np.cos(rad) * a[0] - np.sin(rad) * a[1]
    y = np.sin(rad) * a[0] + np.cos(rad) * a[1]
    leads = _DOWER12 @ np.vstack([x, y, np.full_like(x, a[2])])
    axes = np.degrees(np.arctan2(leads[5], leads[0]))
    err = np.abs((axes - spec.axis_deg + 180) % 360 - 180)
    alpha = float(grid[np.argmin(err)])
    return _rot(2, alpha) @ pre, _rot(2, 0.5 * alpha) @ pre


@dataclass
class _Template:
    """Waves of one beat type relative to its QRS onset (seconds, mV vectors)."""

    dep_c: np.ndarray  # depolarisation centres relative to QRS onset
    dep_s: np.ndarray
    dep_v: np.ndarray  # (n, 3)
    qrs_dur: float  # seconds
    ref: float  # R reference (dominant QRS wave) relative to QRS onset
    pr: float | None  # P onset before QRS onset (s), None if no P
    t_vec: np.ndarray  # main T vector
    u_amp: float
    plateaus: list = field(default_factory=list)  # (vector, slope)


def _qrs_waves(waves, dur: float, rot: np.ndarray, scale: float):
    u, s, v = _normalise_qrs(waves)
    return u * dur, s * dur, (v @ rot.T) * scale


def _build_templates(spec: RecordSpec, rng: np.random.Generator) -> tuple[dict, np.ndarray, dict]:
    """Beat templates 'N' (conducted), 'A' (PAC), 'V' (PVC) for one record."""
    mrng = np.random.default_rng(spec.morph_seed)  # patient-specific morphology

    def jitter(vec, rel=0.12):
        vec = np.asarray(vec, dtype=float)
        return vec + mrng.normal(0, rel, 3) * max(np.linalg.norm(vec), 0.05)

    qrs_normal = [(u, s, jitter(v)) for u, s, v in _QRS_NORMAL]
    qrs_lbbb = [(u, s, jitter(v, 0.08)) for u, s, v in _QRS_LBBB]
    qrs_rbbb = [(u, s, jitter(v, 0.08)) for u, s, v in _QRS_RBBB]
    p_ra, p_la = jitter(_P_RA, 0.15), jitter(_P_LA, 0.15)
    t_normal, t_lbbb, t_rbbb = jitter(_T_NORMAL), jitter(_T_LBBB, 0.08), jitter(_T_RBBB, 0.08)
    pvc_rv_origin = mrng.random() < 0.6
    pvc_y = mrng.uniform(-0.8, 0.9)
    pvc_turn = mrng.uniform(30, 90)
    pvc_mag = mrng.uniform(1.0, 1.8)
    u_amp = mrng.uniform(0.0, 0.15)

    # orientation from the mean vector (area ~ amplitude * sigma) of normal QRS
    area = sum(np.asarray(v) * s for _, s, v in qrs_normal)
    rot, rot_pt = _heart_rotation(spec, area)
    lab = set(spec.labels)
    amp = spec.amp_scale
    tsc = spec.t_scale
    dur = spec.qrs_ms / 1000.0

    # ---- conducted beat
    if "LBBB" in lab:
        qrs, t_vec, extra_st = qrs_lbbb, t_lbbb, _ST_LBBB
    elif "RBBB" in lab:
        qrs, t_vec, extra_st = qrs_rbbb, t_rbbb, None
    elif spec.incomplete_lbbb:  # LBBB-like activation, QRS < 120 ms, milder discordance
        qrs, t_vec, extra_st = qrs_lbbb, 0.5 * (t_lbbb + t_normal), 0.5 * _ST_LBBB
    elif spec.incomplete_rbbb and spec.qrs_ms >= 98:
        # the same right-bundle delay, less complete: terminal R' forces grow with QRS width
        # and so does the secondary T change (inverted T in V1-V2)
        g = float(np.clip(0.4 + 0.55 * (spec.qrs_ms - 98.0) / 21.0, 0.4, 0.95))
        qrs = [(u, sg, v if k < 3 else g * np.asarray(v)) for k, (u, sg, v) in enumerate(qrs_rbbb)]
        t_vec, extra_st = g * t_rbbb + (1 - g) * t_normal, None
    else:
        qrs = qrs_normal + ([_IRBBB_WAVE] if spec.incomplete_rbbb else [])
        t_vec, extra_st = t_normal, None
    c, s, v = _qrs_waves(qrs, dur, rot, amp)
    ref = float(c[np.argmax(np.linalg.norm(v, axis=1))])
    # primary T (normal conduction) follows the P/T orientation; secondary T of a
    # bundle branch block follows the abnormal depolarisation
    t_rot = rot if extra_st is not None or "RBBB" in lab or spec.incomplete_rbbb else rot_pt
    t_vec = t_rot @ t_vec * amp * tsc

    # ST vectors: benign early repolarisation (anterior J elevation), ischaemic
    # depression (lateral/inferior leads) and injury elevation (a territory).
    plateaus = []
    if spec.early_repol_mv > 0:  # concave J elevation flowing into a tall T
        er = [0.1, 0.05, -0.3] if spec.early_repol_site == "anterior" else [0.45, 0.45, 0.05]
        d = rot @ np.array(er)
        d = d * spec.early_repol_mv / max(_DOWER12 @ d)
        plateaus.append((d, 0.4))
        t_vec = t_vec + d * 0.5
    if spec.nonspecific_st_mv > 0:
        d = -(rot @ np.array([0.8, 0.5, 0.1]))
        plateaus.append((d * spec.nonspecific_st_mv / abs(min(_DOWER12 @ d)), float(rng.uniform(0, 0.6))))
        t_vec = t_vec * rng.uniform(0.5, 1.0)
    if extra_st is not None:
        plateaus.append((rot @ extra_st * amp, 0.0))
    if spec.std_mv > 0:
        d = -(rot @ np.array([0.8, 0.5, 0.1]))
        d = d * spec.std_mv / abs(min(_DOWER12 @ d))  # deepest lead = std_mv below baseline
        plateaus.append((d, spec.std_slope))
        t_vec = t_vec * rng.uniform(0.4, 1.0)  # ischaemic T flattening
    if spec.ste_mv > 0:
        d = np.array([0.3, 0.0, -1.0]) if spec.ste_territory == "anterior" else np.array([-0.1, 1.0, 0.15])
        d = rot @ d
        d = d * spec.ste_mv / max(_DOWER12 @ d)  # highest lead = ste_mv above baseline
        plateaus.append((d, 0.0))
        t_vec = t_vec + d * rng.uniform(0.0, 0.8)  # hyperacute T in the territory

    p_c, p_s, p_v = _p_waves(spec, rot_pt, p_ra, p_la)
    has_p = spec.pr_ms is not None
    pr = spec.pr_ms / 1000.0 if has_p else None
    if has_p:
        n_c = np.concatenate([p_c - pr, c])
        n_s = np.concatenate([p_s, s])
        n_v = np.vstack([p_v, v])
    else:
        n_c, n_s, n_v = c, s, v
    templates = {"N": _Template(n_c, n_s, n_v, dur, ref, pr, t_vec, u_amp, plateaus)}

    # ---- PAC: ectopic atrial focus -> P vector rotated/rescaled, same conduction
    if spec.n_pac and has_p:
        prot = _rodrigues(mrng.normal(size=3), spec.pac_p_angle_deg)
        pfac, dfac = rng.uniform(0.75, 1.2), rng.uniform(0.85, 1.1)
        pc, ps, pv = _p_waves(spec, rot_pt, prot @ p_ra * pfac, prot @ p_la * pfac, dfac)
        pr_a = float(np.clip(pr + rng.uniform(-0.02, 0.03), pc[-1] + 2.5 * ps[-1] + 0.03, 0.36))
        templates["A"] = _Template(
            np.concatenate([pc - pr_a, c]), np.concatenate([ps, s]), np.vstack([pv, v]),
            dur, ref, pr_a, t_vec, u_amp, plateaus,
        )

    # ---- PVC: ectopic ventricular focus -> wide bizarre QRS, no P, discordant T
    if spec.n_pvc:
        x, z = (0.7, 0.7) if pvc_rv_origin else (-0.6, -0.7)  # RV focus ~ LBBB-like, LV ~ RBBB-like
        d1 = np.array([x, pvc_y, z])
        d1 /= np.linalg.norm(d1)
        d2 = _rodrigues(np.cross(d1, [0.0, 0.0, 1.0]) + 1e-6, pvc_turn) @ d1
        waves = [(0.15, 0.08, 0.2 * d1), (0.45, 0.17, d1), (0.75, 0.12, 0.5 * d2)]
        pdur = spec.pvc_qrs_ms / 1000.0
        vc, vs, vv = _qrs_waves(waves, pdur, rot, amp * pvc_mag * spec.pvc_scale)
        mean_dir = vv.sum(axis=0) / np.linalg.norm(vv.sum(axis=0))
        qrs_size = np.linalg.norm(vv, axis=1).max()
        t_pvc = -mean_dir * qrs_size * rng.uniform(0.25, 0.45)
        templates["V"] = _Template(
            vc, vs, vv, pdur, float(vc[1]), None, t_pvc, 0.0, [(-mean_dir * qrs_size * 0.08, 0.0)]
        )
    return templates, rot, {"has_p": has_p}


def _p_waves(spec: RecordSpec, rot: np.ndarray, p_ra, p_la, dur_factor: float = 1.0):
    """Right- and left-atrial Gaussians spanning exactly [0, P duration] after P onset."""
    pd = spec.p_ms / 1000.0 * dur_factor
    c = np.array([0.4 * pd, 0.6 * pd])
    s = np.array([0.16 * pd, 0.16 * pd])
    v = np.vstack([rot @ p_ra, rot @ p_la]) * spec.p_scale
    return c, s, v
