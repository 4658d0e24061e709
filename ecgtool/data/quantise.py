"""int16 signals with a per-record, per-lead scale: how a store keeps its rows at the size of the raw data.

A WFDB record keeps its samples as 16-bit integers with a gain per lead; a store
that kept float32 rows was twice that size (1.6× after compression, which ECG
barely allows: ``benchmarks/store_codecs.py``). A store written with ``int16``
keeps ``q = round(x / scale)`` with ``scale = max|x| / 32767`` per record and
lead (the array ``signal_scale``), so every lead uses the whole int16 range,
and is read back as ``q * scale`` in float32.

The error is bounded: ``|x - q * scale| <= scale / 2 = max|x| / 65534`` per lead
(plus float32 rounding), i.e. 1/65534 of the lead's peak. On a z-scored record
whose peak is 10 standard deviations that is 0.00015 standard deviations;
PTB-XL's own ADC resolution (1 µV on leads of 0.1–0.3 mV standard deviation) is
some 20× coarser. An all-zero lead (padding, a missing lead) keeps scale 1 and q 0.

These two functions are the only place that rounds or scales; every reader of
a store (the loader, eval, explain, split and merge, predict's replay of prep)
goes through :func:`dequantise` so that all of them see the same float32 values.
"""

from __future__ import annotations

import numpy as np

INT16_PEAK = 32767  # symmetric: -32768 is never written


def quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Records ``[n, leads, samples]`` → ``(q int16 [n, leads, samples], scale float32 [n, leads])``."""
    x = np.asarray(x, dtype=np.float32)
    peak = np.abs(x).max(axis=-1) if x.shape[-1] else np.zeros(x.shape[:-1], np.float32)
    scale = np.where(peak > 0, peak / np.float32(INT16_PEAK), np.float32(1)).astype(np.float32)
    q = np.rint(x / scale[..., None])
    np.clip(q, -INT16_PEAK, INT16_PEAK, out=q)  # x / scale may round a hair past the peak
    return q.astype(np.int16), scale


def dequantise(q: np.ndarray, scale: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """Stored rows ``[n, leads, samples]`` (int16 with ``scale`` [n, leads], or float with ``scale`` None)
    → float32, written into ``out`` when given. The int16 product is computed in float32 (the int16 cast
    exactly), the same operation whatever the caller, so every reader gets identical values."""
    if out is None:
        out = np.empty(np.shape(q), np.float32)
    np.copyto(out, q, casting="unsafe")  # int16 → float32 is exact
    if scale is not None:
        # In place, float32 × float32: four times faster than one mixed-type multiply (numpy casts that
        # through a buffer), with the same result.
        np.multiply(out, np.asarray(scale, np.float32)[..., None], out=out)
    return out


def dequantise_rows(q: np.ndarray, scale: np.ndarray, pos: np.ndarray, leads: np.ndarray | None = None) -> np.ndarray:
    """``dequantise(q[pos][:, leads], scale[pos][:, leads])`` (all leads when ``leads`` is None), computed row by
    row: each int16 row is cast straight into the float32 result and the result is then scaled in place, the
    same arithmetic as :func:`dequantise`. Skipping the int16 copy of the gathered rows makes a batch of 64
    12 × 5000 records about 1.3× faster to form (``benchmarks/speed.py``'s loader section)."""
    width = q.shape[1] if leads is None else len(leads)
    out = np.empty((len(pos), width, *q.shape[2:]), np.float32)
    for i, p in enumerate(pos):
        out[i] = q[p] if leads is None else q[p, leads]  # int16 → float32 is exact
    s = scale[pos] if leads is None else scale[pos[:, None], leads]
    np.multiply(out, s[..., None], out=out)
    return out


def as_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 records as a store of ``dtype`` gives them back (quantised for int16, rounded for float16):
    what predict feeds a model trained on such a store."""
    if np.dtype(dtype) == np.int16:
        return dequantise(*quantise(x))
    return np.asarray(x).astype(dtype).astype(np.float32)
