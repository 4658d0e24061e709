"""The parity check: the exported file computes what the PyTorch model computes, at more than one batch size.

Inputs are the model's own (the input spec's channels × samples): seeded standard
normal leads — what a z-scored store holds — plus, under the ``rpeaks`` view, a
mark channel at a plausible heart rate; optionally the first rows of a store read
as eval reads them. The file is run on a batch and on its first record alone (the
dynamic batch axis at two sizes), on inputs other than the example it was
exported from (so a trace that fixed a value of the example is caught).

The check passes when every logit agrees within ``atol + rtol·|logit|`` (numpy's
``allclose`` rule). Defaults 1e-4 and 1e-4: an exported model runs the same
float32 arithmetic through other kernels (onnxruntime's convolutions, FFTs and
fused attention sum in another order), which moves logits by 1e-8 to 6e-5 over
the registry (docs/export.md); an export that computes something else (a wrong
branch fixed by a trace, training-mode normalisation, a batch size baked in)
moves them by 1e-2 and more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgtool.data.inputs import InputSpec
from ecgtool.data.views import extra_channels


def random_batch(spec: InputSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``(batch, channels, samples)`` float32: standard normal leads, then the view's channels."""
    x = rng.standard_normal((batch, len(spec.leads), spec.samples), dtype=np.float32)
    if extra_channels(spec.view):
        x = np.concatenate([x, beat_marks(batch, spec.samples, spec.fs, rng)], axis=1)
    return x


def beat_marks(batch: int, samples: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """``(batch, 1, samples)``: 1 at beats 0.6-1.2 s apart (50-100 per minute) from a random first beat, as the
    ``rpeaks`` view marks detected QRS complexes; each record its own rate, so beat positions differ across records."""
    out = np.zeros((batch, 1, samples), np.float32)
    for b in range(batch):
        rr = rng.uniform(0.6, 1.2) * fs
        out[b, 0, np.arange(rng.uniform(0, rr), samples, rr).astype(np.int64)] = 1.0
    return out


def store_batch(spec: InputSpec, store_path, rows: int) -> np.ndarray:
    """The first ``rows`` records of a store as the model reads them (leads by name, load-time normalisation,
    view), cut to the model's samples."""
    from ecgtool.data.store import open_store
    from ecgtool.errors import EcgtoolError

    store = open_store(store_path)
    spec.check(store, "--check-store", windows=True)
    if len(store) == 0:
        raise EcgtoolError(f"--check-store {store.path} has no records")
    raw = store.read_rows(np.arange(min(rows, len(store))))
    return np.ascontiguousarray(spec.reader(store)(raw)[..., : spec.samples], dtype=np.float32)


@dataclass(frozen=True)
class Check:
    """One comparison: on what, and how far apart the two models' logits were."""

    input: str
    batch: int
    max_abs_diff: float
    passed: bool

    def to_dict(self) -> dict:
        return {"input": self.input, "batch": self.batch, "max_abs_diff": self.max_abs_diff, "passed": self.passed}


def compare(name: str, reference: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> Check:
    """``got`` (the exported model's logits) against ``reference`` (PyTorch's); a NaN or a wrong shape fails."""
    if got.shape != reference.shape:
        return Check(name, int(reference.shape[0]), float("inf"), False)
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    within = diff <= atol + rtol * np.abs(reference.astype(np.float64))  # False where either side is NaN
    return Check(name, int(reference.shape[0]), float(np.nanmax(diff)) if np.isfinite(diff).any() else float("inf"),
                 bool(within.all()))
