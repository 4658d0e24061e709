"""CPSC2018 classes and the table of label combinations a patient's records draw from."""

from __future__ import annotations

import numpy as np

CLASSES = ["NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]

CLASS_DESCRIPTIONS = {
    "NORM": "normal sinus rhythm",
    "AF": "atrial fibrillation",
    "I-AVB": "first-degree atrioventricular block",
    "LBBB": "left bundle branch block",
    "RBBB": "right bundle branch block",
    "PAC": "premature atrial contraction",
    "PVC": "premature ventricular contraction",
    "STD": "ST-segment depression",
    "STE": "ST-segment elevation",
}

SNOMED = {
    "NORM": "426783006",
    "AF": "164889003",
    "I-AVB": "270492004",
    "LBBB": "164909002",
    "RBBB": "59118001",
    "PAC": "284470004",
    "PVC": "164884008",
    "STD": "429622005",
    "STE": "164931005",
}

_PERSISTENT = frozenset({"AF", "I-AVB", "LBBB", "RBBB"})  # patient-level substrate


# Label combinations and weights, approximating CPSC2018 marginals
# (NORM 13, AF 18, I-AVB 10, LBBB ~6, RBBB 27, PAC 9, PVC 10, STD 13, STE ~6 %).
# Exclusions by construction: NORM alone, no AF+I-AVB, no AF+PAC, no LBBB+RBBB.
_COMBOS: list[tuple[tuple[str, ...], float]] = [
    (("NORM",), 0.130),
    (("AF",), 0.130),
    (("I-AVB",), 0.055),
    (("LBBB",), 0.040),
    (("RBBB",), 0.195),
    (("PAC",), 0.060),
    (("PVC",), 0.055),
    (("STD",), 0.085),
    (("STE",), 0.045),
    (("AF", "RBBB"), 0.020),
    (("AF", "PVC"), 0.015),
    (("AF", "STD"), 0.012),
    (("AF", "LBBB"), 0.005),
    (("I-AVB", "RBBB"), 0.020),
    (("I-AVB", "LBBB"), 0.010),
    (("I-AVB", "PAC"), 0.007),
    (("I-AVB", "STD"), 0.006),
    (("RBBB", "PAC"), 0.012),
    (("RBBB", "PVC"), 0.012),
    (("RBBB", "STD"), 0.012),
    (("RBBB", "STE"), 0.005),
    (("LBBB", "PVC"), 0.005),
    (("PAC", "PVC"), 0.006),
    (("PVC", "STD"), 0.008),
    (("PVC", "STE"), 0.005),
    (("STD", "STE"), 0.005),
    (("AF", "RBBB", "PVC"), 0.004),
    (("AF", "PVC", "STD"), 0.003),
    (("I-AVB", "RBBB", "PAC"), 0.003),
    (("RBBB", "PVC", "STD"), 0.003),
]


def _sorted_labels(labels) -> list[str]:
    return [c for c in CLASSES if c in set(labels)]


_COMBO_LABELS = [_sorted_labels(c) for c, _ in _COMBOS]
_COMBO_P = np.array([w for _, w in _COMBOS]) / sum(w for _, w in _COMBOS)
_COMBO_PERSIST = [frozenset(c) & _PERSISTENT for c in _COMBO_LABELS]


def _draw_combo(rng: np.random.Generator, persistent: frozenset | None = None) -> list[str]:
    """Draw a label set; if `persistent` is given, condition on that patient substrate."""
    p = _COMBO_P
    if persistent is not None:
        mask = np.array([s == persistent for s in _COMBO_PERSIST], dtype=float)
        p = p * mask / np.sum(p * mask)
    return list(_COMBO_LABELS[rng.choice(len(p), p=p)])


def _patient_label_sets(rng: np.random.Generator, n: int, p_keep: float = 0.75) -> list[list[str]]:
    """Labels for a patient's n records.

    The first record draws from the combination table.  Later records keep the
    patient's substrate (AF / I-AVB / BBB) with probability `p_keep` and redraw the
    episodic labels (PAC, PVC, ST) from the table conditioned on that substrate;
    otherwise they draw afresh.  Both branches leave the marginals unchanged.
    """
    first = _draw_combo(rng)
    sets = [first]
    substrate = frozenset(first) & _PERSISTENT
    for _ in range(n - 1):
        sets.append(_draw_combo(rng, substrate if rng.random() < p_keep else None))
    return sets
