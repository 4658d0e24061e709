"""Tests for the synthetic 12-lead ECG generator (ecgtool.data.synthetic)."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
import wfdb

from ecgtool.data import synthetic as syn
from ecgtool.data.synthetic import (
    CLASS_DESCRIPTIONS,
    CLASSES,
    LEADS_12,
    SNOMED,
    SyntheticConfig,
    generate_record,
    sample_patients_and_labels,
    write_dataset,
)

FS = 500
SHORT = SyntheticConfig(n_records=400, duration=6.0, seed=3)


@pytest.fixture(scope="module")
def plan():
    return sample_patients_and_labels(SyntheticConfig(n_records=1500, seed=11))


@pytest.fixture(scope="module")
def short_specs():
    return sample_patients_and_labels(SHORT)


def _first(specs, pred, k=1):
    found = [s for s in specs if pred(s)]
    assert len(found) >= k, "plan does not contain the requested kind of record"
    return found[:k]


# ---------------------------------------------------------------------------
# measurements on the clean signal (independent of the generator's internals)
# ---------------------------------------------------------------------------


def _envelope(sig):
    return np.sqrt(np.mean(sig.astype(np.float64) ** 2, axis=1))


def _measure_pr_ms(sig, info, thr=0.012):
    """PR from the clean signal: walk back from R over QRS, PR segment and P wave."""
    e = _envelope(sig)
    out = []
    for r, kind in zip(info["r_peaks"], info["beat_types"]):
        if kind != "N" or r < FS // 2:
            continue
        i = r
        while i > 0 and e[i] > thr:  # QRS
            i -= 1
        qrs_on = i
        while i > 0 and e[i] <= thr:  # isoelectric PR segment
            i -= 1
        while i > 0 and e[i] > thr:  # P wave
            i -= 1
        out.append((qrs_on - i) * 1000.0 / FS)
    return np.array(out)


def _measure_qrs_ms(sig, info, rel=0.08, margin=0.04):
    """QRS width from the spatial velocity (fast deflections) around each complex."""
    vel = np.sqrt(np.sum(np.diff(sig.astype(np.float64), axis=0) ** 2, axis=1))
    out = []
    for on, off in zip(info["qrs_onsets"], info["qrs_offsets"]):
        lo, hi = on - int(margin * FS), off + int(margin * FS)
        if lo < 0 or hi >= len(vel):
            out.append(np.nan)
            continue
        w = vel[lo:hi]
        idx = np.nonzero(w > rel * w.max())[0]
        out.append((idx[-1] - idx[0] + 1) * 1000.0 / FS)
    return np.array(out)


# ---------------------------------------------------------------------------
# constants and plan
# ---------------------------------------------------------------------------


def test_constants():
    assert CLASSES == ["NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]
    assert set(SNOMED) == set(CLASSES) == set(CLASS_DESCRIPTIONS)
    assert SNOMED["AF"] == "164889003" and SNOMED["I-AVB"] == "270492004"
    assert CLASS_DESCRIPTIONS["I-AVB"] == "first-degree atrioventricular block"
    assert LEADS_12 == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    cfg = SyntheticConfig()
    assert (cfg.n_records, cfg.fs, cfg.duration, cfg.snr_db, cfg.powerline_hz) == (2000, 500, 10.0, 20.0, 50.0)
    assert cfg.leads == tuple(LEADS_12) and cfg.records_per_patient == (1, 4)


def test_config_validation():
    with pytest.raises(ValueError):
        SyntheticConfig(leads=("I", "V7"))
    with pytest.raises(ValueError):
        SyntheticConfig(records_per_patient=(3, 2))


def test_dower_matrices_are_inverse():
    # INVERSE_DOWER expects V1..V6, I, II
    d = syn.DOWER[[2, 3, 4, 5, 6, 7, 0, 1]]
    np.testing.assert_allclose(syn.INVERSE_DOWER @ d, np.eye(3), atol=2e-3)


def test_plan_deterministic_and_prefix():
    a = sample_patients_and_labels(SyntheticConfig(n_records=120, seed=5))
    b = sample_patients_and_labels(SyntheticConfig(n_records=120, seed=5))
    c = sample_patients_and_labels(SyntheticConfig(n_records=120, seed=6))
    assert a == b
    assert [s.labels for s in a] != [s.labels for s in c]
    longer = sample_patients_and_labels(SyntheticConfig(n_records=200, seed=5))
    assert longer[:120] == a
    assert [s.record_id for s in a[:3]] == ["SYN00001", "SYN00002", "SYN00003"]
    assert all(s.index == i for i, s in enumerate(a))


def test_label_rates(plan):
    n = len(plan)
    counts = Counter(c for s in plan for c in s.labels)
    target = {"NORM": 0.13, "AF": 0.18, "I-AVB": 0.10, "LBBB": 0.06, "RBBB": 0.27,
              "PAC": 0.09, "PVC": 0.10, "STD": 0.13, "STE": 0.06}  # fmt: skip
    for cls, p in target.items():
        assert abs(counts[cls] / n - p) < 0.04 + 0.15 * p, (cls, counts[cls] / n)
    multi = np.mean([len(s.labels) > 1 for s in plan])
    assert 0.05 < multi < 0.3


def test_label_exclusions_and_format(plan):
    for s in plan:
        assert 1 <= len(s.labels) <= 3
        assert s.labels == [c for c in CLASSES if c in s.labels]  # CLASSES order, no duplicates
        lab = set(s.labels)
        if "NORM" in lab:
            assert lab == {"NORM"}
        assert not {"AF", "I-AVB"} <= lab
        assert not {"AF", "PAC"} <= lab
        assert not {"LBBB", "RBBB"} <= lab
        assert (s.pr_ms is None) == ("AF" in lab)
        assert s.sex in ("Male", "Female") and 18 <= s.age <= 95


def test_patients_share_traits(plan):
    by_patient = {}
    for s in plan:
        by_patient.setdefault(s.patient_id, []).append(s)
    sizes = Counter(len(v) for v in by_patient.values())
    assert set(sizes) <= {1, 2, 3, 4} and len(sizes) >= 3
    shared = total = 0
    for recs in by_patient.values():
        assert len({(r.age, r.sex, r.morph_seed) for r in recs}) == 1
        for cls in ("AF", "I-AVB", "LBBB", "RBBB"):
            for i, a in enumerate(recs):
                for b in recs[i + 1:]:
                    if cls in a.labels or cls in b.labels:
                        total += 1
                        shared += cls in a.labels and cls in b.labels
    assert total > 50 and shared / total > 0.5


# ---------------------------------------------------------------------------
# signal generation
# ---------------------------------------------------------------------------


def test_generate_deterministic_and_order_independent(short_specs):
    spec = short_specs[7]
    x1, i1 = generate_record(spec, SHORT)
    for s in short_specs[:3]:  # generating other records first must not matter
        generate_record(s, SHORT)
    x2, i2 = generate_record(spec, SHORT)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(i1["r_peaks"], i2["r_peaks"])
    other = dataclasses.replace(SHORT, seed=SHORT.seed + 1)
    x3, _ = generate_record(sample_patients_and_labels(other)[7], other)
    assert not np.array_equal(x1, x3)
    assert x1.dtype == np.float32 and x1.shape == (int(SHORT.duration * FS), 12)
    assert np.all(np.isfinite(x1))


def test_lead_subset_matches_full(short_specs):
    spec = short_specs[2]
    full, _ = generate_record(spec, SHORT)
    sub_cfg = dataclasses.replace(SHORT, leads=("V1", "II", "aVR"))
    sub, _ = generate_record(spec, sub_cfg)
    idx = [LEADS_12.index(lead) for lead in sub_cfg.leads]
    np.testing.assert_array_equal(sub, full[:, idx])


@pytest.mark.parametrize("noise", [False, True])
def test_einthoven_goldberger(short_specs, noise):
    for spec in short_specs[:10]:
        x, _ = generate_record(spec, SHORT, noise=noise)
        lead = {name: x[:, k].astype(np.float64) for k, name in enumerate(LEADS_12)}
        tol = dict(atol=1e-5)
        np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], **tol)
        np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, **tol)
        np.testing.assert_allclose(lead["aVL"], lead["I"] - lead["II"] / 2, **tol)
        np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, **tol)
        np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0, **tol)


def test_noise_matches_snr(short_specs):
    for spec in short_specs[:8]:
        clean, _ = generate_record(spec, SHORT, noise=False)
        noisy, info = generate_record(spec, SHORT, noise=True)
        n = noisy.astype(np.float64) - clean
        c = clean - clean.mean(axis=0)
        snr = 10 * np.log10(np.mean(c**2) / np.mean(n**2))
        assert abs(snr - spec.snr_db) < 0.1
        assert info["snr_db"] == spec.snr_db
    snrs = [s.snr_db for s in short_specs]
    assert np.std(snrs) > 2 and abs(np.median(snrs) - SHORT.snr_db) < 1.5


def test_powerline_above_nyquist_and_low_fs(short_specs):
    cfg = dataclasses.replace(SHORT, fs=100, powerline_hz=60.0)
    x, info = generate_record(short_specs[0], cfg)
    assert x.shape == (600, 12) and np.all(np.isfinite(x))


def test_normal_amplitudes(short_specs):
    r_ii, p_ii = [], []
    for spec in _first(short_specs, lambda s: s.labels == ["NORM"] and 30 < s.axis_deg < 80, k=12):
        x, info = generate_record(spec, SHORT, noise=False)
        ii = x[:, 1]
        for r, on, p_on in zip(info["r_peaks"], info["qrs_onsets"], info["p_onsets"]):
            r_ii.append(ii[max(r - 10, 0): r + 10].max())
            if p_on >= 0:
                p_ii.append(ii[p_on:on].max())
    assert 0.7 < np.median(r_ii) < 1.8
    assert 0.08 < np.median(p_ii) < 0.3


def test_pr_intervals(short_specs):
    avb = _first(short_specs, lambda s: "I-AVB" in s.labels, k=6)
    other = _first(short_specs, lambda s: "I-AVB" not in s.labels and "AF" not in s.labels, k=12)
    for spec in avb + other:
        assert (spec.pr_ms > 200) == ("I-AVB" in spec.labels)
        if "I-AVB" not in spec.labels:
            assert 120 <= spec.pr_ms <= 200
        # measure at a moderate rate so the P wave is clear of the preceding T wave
        clean_spec = dataclasses.replace(spec, hr_bpm=min(spec.hr_bpm, 75.0))
        x, info = generate_record(clean_spec, SHORT, noise=False)
        assert info["pr_ms"] == spec.pr_ms
        measured = _measure_pr_ms(x, info)
        assert len(measured) >= 3
        assert abs(np.median(measured) - spec.pr_ms) < 15, (spec.labels, spec.pr_ms, measured)
        p_on = info["p_onsets"][np.array(info["beat_types"]) == "N"]
        q_on = info["qrs_onsets"][np.array(info["beat_types"]) == "N"]
        assert np.allclose((q_on - p_on) * 1000 / FS, spec.pr_ms, atol=2.5)


def test_qrs_durations(short_specs):
    def no_af(s):
        return "AF" not in s.labels

    bbb = _first(short_specs, lambda s: no_af(s) and {"LBBB", "RBBB"} & set(s.labels), k=6)
    pvc = _first(short_specs, lambda s: no_af(s) and "PVC" in s.labels, k=4)
    norm = _first(short_specs, lambda s: no_af(s) and not {"LBBB", "RBBB"} & set(s.labels), k=6)
    for spec in bbb + pvc + norm:
        x, info = generate_record(spec, SHORT, noise=False)
        types = np.array(info["beat_types"])
        widths = _measure_qrs_ms(x, info)
        wide_conducted = bool({"LBBB", "RBBB"} & set(spec.labels))
        assert (info["qrs_ms"] >= 120) == wide_conducted
        assert 76 <= info["qrs_ms"] <= 180
        if not wide_conducted:  # incomplete BBB patterns are the only conducted QRS >= 112 ms
            assert info["qrs_ms"] <= 112 or spec.incomplete_rbbb or spec.incomplete_lbbb
        for kind in ("N", "A", "V"):
            w = widths[(types == kind) & ~np.isnan(widths)]
            if len(w) == 0:
                continue
            truth = info["pvc_qrs_ms"] if kind == "V" else info["qrs_ms"]
            assert abs(np.median(w) - truth) < 25, (spec.labels, kind, truth, w)
            if kind == "V" or wide_conducted:
                assert truth >= 120 and np.median(w) >= 115
            else:
                assert truth < 120 and np.median(w) < truth + 15
        assert np.all(info["qrs_offsets"] - info["qrs_onsets"] > 0)


def test_af_rhythm(short_specs):
    af = _first(short_specs, lambda s: "AF" in s.labels, k=8)
    sinus = _first(short_specs, lambda s: not {"AF", "PAC", "PVC"} & set(s.labels), k=8)
    cv = lambda spec: generate_record(spec, SHORT, noise=False)[1]["rr_cv"]  # noqa: E731
    af_cv = [cv(s) for s in af]
    sinus_cv = [cv(s) for s in sinus]
    assert np.median(af_cv) > 3 * np.median(sinus_cv)
    assert min(af_cv) > 0.06 and max(sinus_cv) < 0.1
    x, info = generate_record(af[0], SHORT, noise=False)
    assert info["pr_ms"] is None and np.all(info["p_onsets"] == -1)
    # fibrillatory waves make the "isoelectric" TQ segment active in V1
    v1 = x[:, LEADS_12.index("V1")]
    r = info["r_peaks"]
    tq = np.concatenate([v1[a + int(0.45 * FS): b - int(0.1 * FS)] for a, b in zip(r[:-1], r[1:])])
    assert np.ptp(tq) > 0.02


def _premature_events(specs, kind):
    events = []
    for spec in specs:
        x, info = generate_record(spec, SHORT, noise=False)
        types = info["beat_types"]
        r = info["r_peaks"] / FS
        for i, k in enumerate(types):
            if k == kind and i >= 2 and i + 1 < len(types) and types[i - 1] == types[i - 2] == "N":
                local_rr = r[i - 1] - r[i - 2]
                events.append((r[i] - r[i - 1], r[i + 1] - r[i], local_rr, info["p_onsets"][i]))
    return np.array(events)


def test_pvc_compensatory_pause(short_specs):
    specs = _first(short_specs, lambda s: "PVC" in s.labels and "AF" not in s.labels, k=10)
    ev = _premature_events(specs, "V")
    assert len(ev) >= 8
    pre, post, rr, p_on = ev.T
    assert np.all(pre < 0.9 * rr)  # premature (coupling 60-80 %)
    assert np.all(post > rr)  # pause
    ratio = (pre + post) / rr
    assert np.all(np.abs(ratio - 2) < 0.25) and abs(np.median(ratio) - 2) < 0.1  # fully compensatory
    assert np.all(p_on == -1)  # no preceding P wave


def test_pac_non_compensatory(short_specs):
    specs = _first(short_specs, lambda s: "PAC" in s.labels, k=10)
    ev = _premature_events(specs, "A")
    assert len(ev) >= 8
    pre, post, rr, p_on = ev.T
    assert np.all(pre < 0.9 * rr)
    assert np.median((pre + post) / rr) < 1.9  # sinus node reset: not compensatory
    assert np.all(p_on >= 0)  # ectopic P precedes the QRS
    for spec in specs:
        assert 1 <= spec.n_pac <= 3 and 0 < spec.pac_p_angle_deg < 180


def test_st_deviation(short_specs):
    def st_level(spec):
        x, info = generate_record(dataclasses.replace(spec, hr_bpm=70.0), SHORT, noise=False)
        at = info["qrs_offsets"][info["qrs_offsets"] + 40 < len(x)] + int(0.06 * FS)  # J + 60 ms
        return np.median(x[at], axis=0)

    for spec in _first(short_specs, lambda s: s.ste_mv > 0 and "LBBB" not in s.labels, k=4):
        assert 0.1 <= spec.ste_mv <= 0.35 and "STE" in spec.labels
        assert st_level(spec).max() > 0.6 * spec.ste_mv
    for spec in _first(short_specs, lambda s: s.std_mv > 0 and "LBBB" not in s.labels, k=4):
        assert 0.04 <= spec.std_mv <= 0.25 and "STD" in spec.labels
        assert st_level(spec).min() < -0.4 * spec.std_mv
    for spec in _first(short_specs, lambda s: s.labels == ["NORM"], k=6):
        assert np.abs(st_level(spec)).max() < 0.08


# ---------------------------------------------------------------------------
# on-disk dataset
# ---------------------------------------------------------------------------


def test_write_dataset_layout(tmp_path):
    cfg = SyntheticConfig(n_records=6, duration=3.0, seed=2)
    done = []
    write_dataset(tmp_path, cfg, progress=done.append)
    assert done == [1, 2, 3, 4, 5, 6]
    specs = sample_patients_and_labels(cfg)

    names = (tmp_path / "RECORDS").read_text().split()
    assert names == [f"SYN{i:05d}" for i in range(1, 7)]
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["record_id", "patient_id", "age", "sex", "labels"]
    with open(tmp_path / "classes.csv", newline="") as fh:
        classes = list(csv.DictReader(fh))
    assert [c["class"] for c in classes] == CLASSES
    assert all(c["snomed"] == SNOMED[c["class"]] for c in classes)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["config"]["n_records"] == 6 and meta["config"]["seed"] == 2
    assert meta["ecgtool_version"] and meta["description"]

    for spec, row, name in zip(specs, rows, names):
        assert row["record_id"] == name == spec.record_id
        assert row["labels"].split(";") == spec.labels
        rec = wfdb.rdrecord(str(tmp_path / name))
        assert rec.fs == cfg.fs and rec.sig_name == LEADS_12 and rec.units == ["mV"] * 12
        assert rec.fmt == ["16"] * 12 and rec.adc_gain == [1000.0] * 12
        assert rec.p_signal.shape == (int(cfg.duration * cfg.fs), 12)
        comments = dict(c.split(": ", 1) for c in rec.comments)
        assert comments["Age"] == row["age"] == str(spec.age)
        assert comments["Sex"] == row["sex"] == spec.sex
        assert comments["Dx"].split(",") == [SNOMED[c] for c in spec.labels]
        assert comments["Rx"] == comments["Hx"] == comments["Sx"] == "Unknown"
        assert comments["Patient"] == row["patient_id"] == spec.patient_id
        x, _ = generate_record(spec, cfg)
        np.testing.assert_allclose(rec.p_signal, np.clip(x, -32.767, 32.767), atol=6e-4)


def test_write_clips_to_16_bit(tmp_path):
    cfg = SyntheticConfig(n_records=1, duration=1.0, leads=("I", "II"))
    spec = sample_patients_and_labels(cfg)[0]
    big = np.array([[40.0, -40.0], [0.001, -0.0004]] * 250, dtype=np.float32)
    syn._write_record(tmp_path, spec, cfg, big)
    rec = wfdb.rdrecord(str(tmp_path / spec.record_id), physical=False)
    assert rec.d_signal[0].tolist() == [32767, -32767]
    assert rec.d_signal[1].tolist() == [1, 0]


@pytest.mark.parametrize("leads, fs", [(tuple(LEADS_12), 500), (("V2", "I", "aVF"), 250)])
def test_fast_writer_is_byte_identical_to_wrsamp(tmp_path, leads, fs):
    cfg = SyntheticConfig(n_records=3, duration=2.0, fs=fs, leads=leads, seed=4)
    fast, ref = tmp_path / "fast", tmp_path / "ref"
    fast.mkdir(), ref.mkdir()
    for spec in sample_patients_and_labels(cfg):
        x, _ = generate_record(spec, cfg)
        syn._write_record(fast, spec, cfg, x)
        syn._write_record_wfdb(ref, spec, cfg, x)
        for ext in ("hea", "dat"):
            name = f"{spec.record_id}.{ext}"
            assert (fast / name).read_bytes() == (ref / name).read_bytes(), name
