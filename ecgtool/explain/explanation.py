"""What every attribution method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Explanation:
    """``maps`` ``(B, leads, samples)``; ``arrays`` extra per-record results ``(B, ...)``; ``info`` JSON facts."""

    maps: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
