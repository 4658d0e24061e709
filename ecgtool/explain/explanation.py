"""What every attribution method returns, and what a map says per lead."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Explanation:
    """``maps`` ``(B, leads, samples)``; ``arrays`` extra per-record results ``(B, ...)``; ``info`` JSON facts."""

    maps: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def lead_importance(maps: np.ndarray) -> np.ndarray:
    """Per lead, the sum over time of |map| (``(..., leads, samples)`` → ``(..., leads)``): how much of a
    record's attribution falls on each lead; its share of the record's total ranks the leads."""
    return np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=-1)


def lead_shares(importance: np.ndarray) -> np.ndarray:
    """Each lead's share of its record's total :func:`lead_importance` (``(..., leads)``; 0 where a record has
    no attribution at all): what the per-lead view draws and ``--json`` lists."""
    importance = np.asarray(importance, dtype=np.float64)
    total = importance.sum(axis=-1, keepdims=True)
    return np.divide(importance, total, out=np.zeros_like(importance), where=total > 0)
