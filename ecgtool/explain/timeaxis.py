"""Putting values computed at a model's internal positions back onto the input's time axis.

A convolutional feature map has fewer positions than the record has samples;
Grad-CAM (Selvaraju et al. 2017) upsamples it by interpolation, assuming the
positions are spread evenly over the input. Some models look at the record
through windows instead — the msse_transformer's overlapping windows, MINA's
segment convolutions, MAMIL's heartbeats — and for those a value belongs to a
known span of samples; ``spread`` puts it there exactly.
"""

from __future__ import annotations

import numpy as np


def interpolate(values: np.ndarray, samples: int) -> np.ndarray:
    """``(..., n)`` → ``(..., samples)``, each position the centre of an equal share of the input.

    Linear interpolation with half-position offsets (torch's ``align_corners=False``),
    held constant beyond the first and last centres.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    if n == samples:
        return values
    centres = (np.arange(n) + 0.5) * samples / n - 0.5
    t = np.arange(samples)
    flat = values.reshape(-1, n)
    out = np.stack([np.interp(t, centres, row) for row in flat]) if len(flat) else np.zeros((0, samples))
    return out.reshape(*values.shape[:-1], samples)


def spread(values: np.ndarray, starts: np.ndarray, width: int, samples: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Values on spans of the time axis → ``(B, samples)``, the mean of the values covering each sample.

    ``values`` is ``(B, n)`` (one value per span) or ``(B, n, width)`` (a profile along
    each span); ``starts`` ``(n,)`` or ``(B, n)`` the first sample of each span; spans
    may overlap and reach beyond the record (those parts are dropped). Samples no span
    covers are 0. ``valid`` ``(B, n)`` leaves spans out (empty instances).
    """
    values = np.asarray(values, dtype=np.float64)
    b, n = values.shape[:2]
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], width, axis=2)
    starts = np.broadcast_to(np.asarray(starts, dtype=np.int64), (b, n))
    keep = np.ones((b, n), bool) if valid is None else np.asarray(valid, bool)
    total = np.zeros((b, samples))
    count = np.zeros((b, samples))
    offsets = np.arange(width)
    for i in range(b):
        idx = starts[i][keep[i], None] + offsets  # (n_kept, width)
        inside = (idx >= 0) & (idx < samples)
        np.add.at(total[i], idx[inside], values[i][keep[i]][inside])
        np.add.at(count[i], idx[inside], 1.0)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def stitch(maps: np.ndarray, starts, samples: int) -> np.ndarray:
    """Maps of a record's sliding windows ``(B, W, leads, L)`` → one map ``(B, leads, samples)``.

    Each window's map goes back where the window lies (``starts`` ``(W,)``, as
    ``eval.predict.Windows.starts`` gives them); where windows overlap, a sample's value
    is the mean of the windows covering it (``spread``), so a stitched map is on one scale
    with each window's.
    """
    maps = np.asarray(maps, dtype=np.float64)
    b, w, leads, width = maps.shape
    per_lead = maps.transpose(0, 2, 1, 3).reshape(b * leads, w, width)
    return spread(per_lead, np.asarray(starts), width, samples).reshape(b, leads, samples)
