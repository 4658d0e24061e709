"""Data-side input views: what a model sees, computed from store rows before the model.

Most models compute their views (spectrograms, lead groups, windows) inside
``forward``. A view that needs a well-kept non-torch algorithm — R-peak
detection for beat-based models — is computed here, by the reader of the model's
``InputSpec`` (``inputs.py``) in the loader, so train, eval and profile rebuild it from the checkpoint's
``input.view`` and the loader's in-memory cache holds it once per run.

Views keep the one-tensor model input ``(batch, channels, samples)``:

* ``raw``: the leads themselves;
* ``rpeaks``: the leads plus one channel that is 1 at each QRS complex
  detected by wfdb's XQRS detector (``wfdb.processing.xqrs_detect``) on
  ``lead`` (default ``auto``: each record's lead with the largest amplitude
  range); beat models cut their instances around the marked samples.
"""

from __future__ import annotations

import numpy as np

from ecgtool.errors import EcgtoolError

VIEWS = ("raw", "rpeaks")


def extra_channels(view: dict) -> int:
    """Channels a view adds to the leads."""
    return 1 if view.get("name") == "rpeaks" else 0


def rpeak_channel(x: np.ndarray, fs: float, lead: int | None) -> np.ndarray:
    """``(B, 1, S)``: 1.0 at the QRS complexes XQRS finds, else 0.

    ``lead`` None picks, per record, the lead with the largest amplitude range
    (the clearest QRS whatever the electrical axis). XQRS is tuned for rates of
    a few hundred Hz, so a lower-rate signal is upsampled to 250 Hz for the
    detection and the positions mapped back.
    """
    from fractions import Fraction

    from scipy.signal import resample_poly
    from wfdb.processing import xqrs_detect

    up = Fraction(250, int(round(fs))) if fs < 250 else Fraction(1)
    out = np.zeros((x.shape[0], 1, x.shape[-1]), np.float32)
    for b in range(x.shape[0]):
        if lead is None:
            amplitude = np.percentile(x[b], 99, axis=-1) - np.percentile(x[b], 1, axis=-1)
            sig = x[b, int(np.argmax(amplitude))].astype(np.float64)
        else:
            sig = x[b, lead].astype(np.float64)
        if not np.isfinite(sig).all() or sig.std() < 1e-8:
            continue  # flat or padded: no beats
        if up != 1:
            sig = resample_poly(sig, up.numerator, up.denominator)
        peaks = np.asarray(xqrs_detect(sig, fs=float(fs * up), verbose=False), dtype=np.float64)
        peaks = np.round(peaks / float(up)).astype(np.int64)
        out[b, 0, peaks[(peaks >= 0) & (peaks < x.shape[-1])]] = 1.0
    return out


def apply_view(view: dict, x: np.ndarray, fs: float, leads: list[str]) -> np.ndarray:
    name = view.get("name", "raw")
    if name == "raw":
        return x
    if name == "rpeaks":
        lead = view.get("lead", "auto")
        index = None if lead == "auto" else leads.index(lead) if lead in leads else 0
        return np.concatenate([x, rpeak_channel(x, fs, index)], axis=1)
    raise EcgtoolError(f"unknown input view {name!r}; this ecgtool knows {', '.join(VIEWS)}")


def data_view(model_view: dict) -> dict:
    """The part of a model's declared ``input_view`` that the loader computes (in-model views stay "raw")."""
    return {k: v for k, v in model_view.items() if k != "in_model"} if model_view.get("name", "raw") != "raw" else {"name": "raw"}
