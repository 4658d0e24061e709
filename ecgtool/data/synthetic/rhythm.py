"""Rhythm: beat times and types (sinus with HRV, PAC, PVC, AF)."""

from __future__ import annotations

import numpy as np

from ecgtool.data.synthetic.plan import RecordSpec, SyntheticConfig


def _event_times(rng, n_pac: int, n_pvc: int, duration: float, rr0: float) -> list[tuple[float, str]]:
    """Target times of premature beats, spread over the record and >= 2 beats apart."""
    kinds = ["A"] * n_pac + ["V"] * n_pvc
    if not kinds:
        return []
    lo, hi = 0.12 * duration, 0.85 * duration
    for _ in range(50):
        t = np.sort(rng.uniform(lo, hi, len(kinds)))
        if len(t) < 2 or np.min(np.diff(t)) > 2.2 * rr0:
            break
    else:  # too short a record for all of them: spread evenly, drop what does not fit
        k = max(1, min(len(kinds), int((hi - lo) / (2.2 * rr0)) + 1))
        t = np.linspace(lo, hi, k)
        kinds = kinds[:k]
    order = rng.permutation(len(kinds))
    return [(float(tt), kinds[i]) for tt, i in zip(t, order)]


def _beat_schedule(spec: RecordSpec, cfg: SyntheticConfig, rng, resp_hz: float):
    """QRS-onset times, beat types and preceding RR of every beat touching the record.

    Sinus: RR(t) = RR0 (1 + LF + HF modulation) + jitter.  PVC: the sinus clock is
    undisturbed, so the pause is fully compensatory.  PAC: the sinus node is reset
    by the ectopic atrial beat, so the pause is not compensatory.  AF: i.i.d.
    log-normal RR intervals (irregularly irregular, no periodicity).
    """
    rr0 = 60.0 / spec.hr_bpm
    af = "AF" in spec.labels
    older = np.clip((spec.age - 20) / 60.0, 0, 1)  # HRV declines with age
    a_lf = rng.uniform(0.015, 0.045) * (1.2 - 0.6 * older)
    a_hf = rng.uniform(0.01, 0.04) * (1.3 - 0.8 * older) * spec.rsa_scale
    f_lf, ph_lf, ph_hf = rng.uniform(0.07, 0.13), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    jitter = rng.uniform(0.004, 0.012)
    cv = spec.af_rr_cv

    def next_rr(t: float) -> float:
        if af:
            return float(max(0.3, rr0 * np.exp(rng.normal(-0.5 * cv * cv, cv))))
        mod = a_lf * np.sin(2 * np.pi * f_lf * t + ph_lf) + a_hf * np.sin(2 * np.pi * resp_hz * t + ph_hf)
        return float(max(0.33, rr0 * (1 + mod) + rng.normal(0, jitter)))

    events = _event_times(rng, spec.n_pac, spec.n_pvc, cfg.duration, rr0)
    t = -rng.uniform(0, rr0) - rr0  # random beat phase; one beat before 0 for its T tail
    times, types, rrs = [t], ["N"], [rr0]
    t_end = cfg.duration + 0.5
    while t < t_end:
        rr = next_rr(t)
        if events and events[0][0] <= t + rr and types[-1] == "N":
            kind = events.pop(0)[1]
            t_ect = t + (rng.uniform(0.6, 0.8) if kind == "V" else rng.uniform(0.62, 0.80)) * rr
            times.append(t_ect), types.append(kind), rrs.append(t_ect - t)
            if kind == "V" and not af:
                t_next = t + rr + next_rr(t + rr)  # sinus clock continues: 2 x RR
            elif kind == "V":
                t_next = t_ect + next_rr(t_ect) * 1.15
            else:
                t_next = t_ect + next_rr(t_ect) * rng.uniform(1.0, 1.08)  # sinus reset
            times.append(t_next), types.append("N"), rrs.append(t_next - t_ect)
            t = t_next
        else:
            t += rr
            times.append(t), types.append("N"), rrs.append(rr)
    return np.array(times), types, np.array(rrs)
