"""The generator's configuration and the deterministic plan: one RecordSpec per record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgtool.data.synthetic.labels import _patient_label_sets, _sorted_labels
from ecgtool.data.synthetic.leads import LEADS_12
from ecgtool.errors import ConfigError

# Stream tags keep the independent random streams apart.
_TAG_PLAN, _TAG_PATIENT, _TAG_RECORD, _TAG_SIGNAL = 101, 202, 303, 404


@dataclass(frozen=True)
class SyntheticConfig:
    n_records: int = 2000
    fs: int = 500
    duration: float = 10.0
    leads: tuple[str, ...] = tuple(LEADS_12)  # subset allowed, any order of the 12 names
    snr_db: float = 20.0  # median SNR; per-record SNR varies around it
    powerline_hz: float = 50.0
    records_per_patient: tuple[int, int] = (1, 4)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [lead for lead in self.leads if lead not in LEADS_12]
        if unknown or not self.leads or len(set(self.leads)) != len(self.leads):
            raise ConfigError(f"leads must be distinct names from {', '.join(LEADS_12)}, got {', '.join(self.leads) or 'none'}",
                              "leads")
        lo, hi = self.records_per_patient
        if not 1 <= lo <= hi:
            raise ConfigError("records_per_patient must be (lo, hi) with 1 <= lo <= hi", "records_per_patient")
        if self.n_records < 0:
            raise ConfigError(f"n_records must be >= 0, not {self.n_records}", "n_records")
        if self.fs <= 0:
            raise ConfigError(f"fs must be positive, not {self.fs} Hz", "fs")
        if self.duration <= 0:
            raise ConfigError(f"duration must be positive, not {self.duration} s", "duration")


@dataclass(frozen=True)
class RecordSpec:
    """Everything that defines one record; signal noise/jitter is drawn from (seed, index)."""

    index: int  # 0-based position in the dataset
    record_id: str  # "SYN00001"
    patient_id: str  # "P00001"
    age: int
    sex: str  # "Male" / "Female"
    labels: list[str]  # class names in CLASSES order
    hr_bpm: float  # mean (ventricular) rate of the record
    pr_ms: float | None  # P onset -> QRS onset of sinus beats; None in AF
    p_ms: float  # P-wave duration
    qrs_ms: float  # QRS duration of conducted beats
    qtc_ms: float  # Bazett-corrected QT of conducted beats
    axis_deg: float  # frontal QRS axis of the (normally conducted) beat
    horiz_rot_deg: float  # rotation about the long axis (precordial transition)
    sagittal_rot_deg: float
    amp_scale: float  # overall QRS amplitude scale (body habitus)
    p_scale: float
    t_scale: float
    morph_seed: int  # per-patient morphology jitter, shared by the patient's records
    snr_db: float
    noise_mix: tuple[float, float, float]  # power fractions: baseline wander, powerline, EMG
    n_pac: int = 0
    n_pvc: int = 0
    pac_p_angle_deg: float = 0.0  # rotation of the ectopic P vector (small = subtle PAC)
    pvc_qrs_ms: float = 0.0
    af_rr_cv: float = 0.0  # coefficient of variation of AF RR intervals
    f_wave_mv: float = 0.0  # peak f-wave amplitude in the lead where it is largest
    f_wave_hz: float = 0.0
    std_mv: float = 0.0  # ST depression depth (max over leads), 0 = none
    std_slope: float = 0.0  # 0 horizontal ... 1 strongly downsloping
    ste_mv: float = 0.0  # ST elevation height (max over leads), 0 = none
    ste_territory: str = "none"  # "anterior" / "inferior" / "none"
    early_repol_mv: float = 0.0  # benign anterior J elevation (confounder)
    incomplete_rbbb: bool = False  # rSr' in V1 with QRS < 120 ms (confounder)
    incomplete_lbbb: bool = False  # LBBB-like morphology with QRS < 120 ms (confounder)
    early_repol_site: str = "anterior"  # "anterior" / "inferolateral"
    nonspecific_st_mv: float = 0.0  # sub-threshold ST depression (< 0.035 mV) without STD
    pvc_scale: float = 1.0  # PVC amplitude relative to the patient's ectopic focus
    rsa_scale: float = 1.0  # respiratory sinus arrhythmia multiplier (> 1: marked RSA)
    motion_artefacts: int = 0  # electrode-motion events (steps with slow recovery)


def _beta_range(rng, lo: float, hi: float, a: float, b: float) -> float:
    return float(lo + (hi - lo) * rng.beta(a, b))


def _sample_patient(rng: np.random.Generator, label_sets: list[list[str]]) -> dict:
    """Traits shared by all records of one patient."""
    any_labels = set().union(*map(set, label_sets))
    older = bool(any_labels & {"AF", "LBBB", "STD", "STE", "I-AVB"})
    age = int(np.clip(rng.normal(64 if older else 54, 14), 18, 95))
    sex = "Male" if rng.random() < 0.55 else "Female"
    female = sex == "Female"
    young = age < 45
    axis_kind = rng.random()
    if axis_kind < 0.10:  # left axis deviation (e.g. left anterior fascicular block)
        axis = float(rng.uniform(-75, -30))
    elif axis_kind < 0.16:  # right axis deviation
        axis = float(rng.uniform(90, 130))
    else:
        axis = float(np.clip(rng.normal(45, 28), -30, 90))
    low_voltage = rng.random() < 0.08  # obesity, effusion, COPD
    amp = rng.uniform(0.4, 0.65) if low_voltage else np.clip(rng.lognormal(-0.05 * female, 0.2), 0.65, 1.7)
    er_p = (0.45 if young else 0.2) * (1.0 if female else 1.5)
    return {
        "age": age,
        "sex": sex,
        "hr": float(np.clip(rng.normal(72 + 3 * female, 11), 50, 105)),
        # PR: mass piles up on both sides of the 200 ms cut-off
        "pr_normal": _beta_range(rng, 120, 200, 2.6, 1.3),
        "pr_block": _beta_range(rng, 201, 300, 1.0, 3.0),
        "p_ms": float(rng.uniform(80, 115)),
        "qrs_normal": _beta_range(rng, 78, 110, 2.0, 2.0) - 4 * female,
        "qrs_incomplete": _beta_range(rng, 98, 119.5, 2.2, 1.2),
        "qrs_lbbb": _beta_range(rng, 120, 170, 1.2, 2.6),
        "qrs_rbbb": _beta_range(rng, 120, 160, 1.1, 2.8),
        "qtc": float(np.clip(rng.normal(405 + 10 * female, 15), 370, 460)),
        "axis": axis,
        "horiz": float(rng.normal(0, 14)),
        "sagittal": float(rng.normal(0, 9)),
        "amp": float(amp),
        "p_scale": float(rng.uniform(0.45, 1.3)),
        "t_scale": float(rng.uniform(0.55, 1.35)),
        "morph_seed": int(rng.integers(0, 2**31 - 1)),
        "incomplete_rbbb": bool(rng.random() < 0.15),
        "incomplete_lbbb": bool(rng.random() < (0.06 if age >= 50 else 0.02)),
        "early_repol": float(rng.uniform(0.02, 0.09)) if rng.random() < er_p else 0.0,
        "early_repol_site": "anterior" if rng.random() < 0.6 else "inferolateral",
        "rsa": float(rng.uniform(1.8, 3.0)) if young and rng.random() < 0.35 else 1.0,
        # AF: rate-controlled, fairly regular AF down to CV 0.08; mostly fine f-waves
        "af_cv": _beta_range(rng, 0.08, 0.26, 1.3, 2.0),
        "f_mv": float(np.exp(rng.uniform(np.log(0.01), np.log(0.12)))),
        "f_hz": float(rng.uniform(4.0, 9.0)),
    }


def _sample_record_spec(
    rng: np.random.Generator, index: int, pno: int, pat: dict, labels: list[str], cfg: SyntheticConfig
) -> RecordSpec:
    lab = set(labels)
    af = "AF" in lab
    if af:  # ventricular response in AF is faster and unrelated to the sinus rate
        hr = float(np.clip(rng.lognormal(np.log(88), 0.2), 55, 140))
        pr = None
    else:
        hr = float(np.clip(pat["hr"] * np.exp(rng.normal(0, 0.07)), 50, 110))
        if "I-AVB" in lab:
            pr = float(np.clip(pat["pr_block"] + rng.normal(0, 5), 201, 330))
        else:
            pr = float(np.clip(pat["pr_normal"] + rng.normal(0, 4), 120, 200))
    bbb = bool(lab & {"LBBB", "RBBB"})
    incomplete_rbbb = pat["incomplete_rbbb"] and not bbb
    incomplete_lbbb = pat["incomplete_lbbb"] and not bbb and not incomplete_rbbb
    if "LBBB" in lab:
        qrs = max(pat["qrs_lbbb"] + rng.normal(0, 3), 120.0)
    elif "RBBB" in lab:
        qrs = max(pat["qrs_rbbb"] + rng.normal(0, 3), 120.0)
    elif incomplete_rbbb or incomplete_lbbb:
        qrs = float(np.clip(pat["qrs_incomplete"] + rng.normal(0, 2), 98, 119.5))
    else:
        qrs = float(np.clip(pat["qrs_normal"] + rng.normal(0, 3), 76, 112))
    p_ms = min(pat["p_ms"], (pr or 200) - 40)  # keep an isoelectric PR segment

    n_pac = n_pvc = 0
    both = {"PAC", "PVC"} <= lab
    if "PAC" in lab:  # mostly a single ectopic beat
        n_pac = int(rng.choice([1, 2] if both else [1, 2, 3], p=[0.8, 0.2] if both else [0.7, 0.2, 0.1]))
    if "PVC" in lab:
        n_pvc = int(rng.choice([1, 2] if both else [1, 2, 3], p=[0.8, 0.2] if both else [0.7, 0.2, 0.1]))

    # ST: many borderline shifts just above the clinical cut-offs (0.05 / 0.1 mV)
    std_mv = _beta_range(rng, 0.04, 0.25, 1.0, 3.2) if "STD" in lab else 0.0
    ste_mv = _beta_range(rng, 0.10, 0.35, 1.0, 2.8) if "STE" in lab else 0.0
    territory = ("anterior" if rng.random() < 0.6 else "inferior") if ste_mv else "none"
    # non-specific, sub-threshold ST depression (rate, drugs, electrolytes) in records without STD
    nonspecific = float(rng.uniform(0.01, 0.035)) if not std_mv and rng.random() < 0.2 else 0.0
    # SNR: log-normal-ish spread around the median plus a few very noisy recordings
    lo_snr, hi_snr = cfg.snr_db - 12.0, cfg.snr_db + 15.0
    snr = float(np.clip(cfg.snr_db + rng.normal(0, 4.5), lo_snr, hi_snr))
    if rng.random() < 0.06:
        snr = float(rng.uniform(cfg.snr_db - 20.0, cfg.snr_db - 10.0))
    if rng.random() < 0.3:  # PAC: often a near-normal ectopic P (focus close to the sinus node)
        pac_angle = float(rng.uniform(12, 40))
    else:
        pac_angle = float(rng.uniform(40, 170))
    return RecordSpec(
        index=index,
        record_id=f"SYN{index + 1:05d}",
        patient_id=f"P{pno:05d}",
        age=pat["age"],
        sex=pat["sex"],
        labels=_sorted_labels(labels),
        hr_bpm=hr,
        pr_ms=pr,
        p_ms=float(p_ms),
        qrs_ms=float(qrs),
        qtc_ms=float(pat["qtc"] + rng.normal(0, 6)),
        axis_deg=float(np.clip(pat["axis"] + rng.normal(0, 4), -80, 135)),
        horiz_rot_deg=pat["horiz"] + float(rng.normal(0, 3)),
        sagittal_rot_deg=pat["sagittal"] + float(rng.normal(0, 2)),
        amp_scale=float(pat["amp"] * np.exp(rng.normal(0, 0.05))),
        p_scale=pat["p_scale"],
        t_scale=pat["t_scale"],
        morph_seed=pat["morph_seed"],
        snr_db=snr,
        noise_mix=tuple(float(x) for x in rng.dirichlet([2.0, 1.0, 1.5])),
        n_pac=n_pac,
        n_pvc=n_pvc,
        pac_p_angle_deg=pac_angle if n_pac else 0.0,
        pvc_qrs_ms=_beta_range(rng, 120, 185, 1.2, 2.2) if n_pvc else 0.0,
        af_rr_cv=pat["af_cv"] * float(np.exp(rng.normal(0, 0.1))) if af else 0.0,
        f_wave_mv=pat["f_mv"] * float(np.exp(rng.normal(0, 0.15))) if af else 0.0,
        f_wave_hz=float(np.clip(pat["f_hz"] + rng.normal(0, 0.3), 4, 9)) if af else 0.0,
        std_mv=std_mv,
        std_slope=float(rng.uniform(0, 1)) if std_mv else 0.0,
        ste_mv=ste_mv,
        ste_territory=territory,
        early_repol_mv=pat["early_repol"],
        incomplete_rbbb=incomplete_rbbb,
        incomplete_lbbb=incomplete_lbbb,
        early_repol_site=pat["early_repol_site"],
        nonspecific_st_mv=nonspecific,
        pvc_scale=float(rng.uniform(0.55, 1.1)) if n_pvc else 1.0,
        rsa_scale=pat["rsa"] * float(np.exp(rng.normal(0, 0.15))) if not af else 1.0,
        motion_artefacts=int(rng.choice([0, 1, 2], p=[0.8, 0.14, 0.06])),
    )


def sample_patients_and_labels(cfg: SyntheticConfig) -> list[RecordSpec]:
    """Deterministic plan of the dataset: one RecordSpec per record, grouped by patient.

    Patients are drawn one after another (so a plan for N records is a prefix of
    the plan for more records); each record's own parameters come from
    ``default_rng([seed, TAG, index])``.
    """
    plan_rng = np.random.default_rng([cfg.seed, _TAG_PLAN])
    lo, hi = cfg.records_per_patient
    specs: list[RecordSpec] = []
    pno = 0
    while len(specs) < cfg.n_records:
        pno += 1
        label_sets = _patient_label_sets(plan_rng, int(plan_rng.integers(lo, hi + 1)))
        pat = _sample_patient(np.random.default_rng([cfg.seed, _TAG_PATIENT, pno]), label_sets)
        for labels in label_sets[: cfg.n_records - len(specs)]:
            idx = len(specs)
            rrng = np.random.default_rng([cfg.seed, _TAG_RECORD, idx])
            specs.append(_sample_record_spec(rrng, idx, pno, pat, labels, cfg))
    return specs
