"""Signal preprocessing applied by ``prep``: resampling, filtering, length, normalisation.

All functions take and return ``[leads, samples]`` arrays. Filters are
zero-phase (``sosfiltfilt``) so that wave timing — PR, QRS, ST — is not shifted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from ecgtool.data.choices import CROP_POLICIES, FS_RANGE, MAX_RESAMPLE_FACTOR, MAX_SAMPLES, NORMALISATIONS
from ecgtool.errors import ConfigError, EcgtoolError


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling (anti-aliasing FIR included) by the exact rational ratio."""
    if fs_in == fs_out:
        return x
    if not 1 / MAX_RESAMPLE_FACTOR <= fs_out / fs_in <= MAX_RESAMPLE_FACTOR:  # why this bound: data/choices.py
        raise EcgtoolError(f"cannot resample {fs_in:g} Hz to {fs_out:g} Hz: a factor of more than {MAX_RESAMPLE_FACTOR} "
                           "either way (is the sampling rate right?)")
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    if abs(float(ratio) - fs_out / fs_in) > 1e-6:
        raise EcgtoolError(f"cannot resample {fs_in} Hz to {fs_out} Hz by a rational factor")
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def check_fs(fs: float, parameter: str, what: str = "fs") -> None:
    """Refuse a sampling rate outside ``FS_RANGE`` (why: data/choices.py) as the ``ConfigError`` of ``parameter``."""
    low, high = FS_RANGE
    if not low <= fs <= high:
        raise ConfigError(f"{what} must be a sampling rate from {low:g} to {high:,.0f} Hz, not {fs:g} Hz", parameter)


@lru_cache(maxsize=32)
def _butter(order: int, low: float | None, high: float | None, fs: float) -> np.ndarray:
    """The filter's second-order sections; designed once per setting, not once per record."""
    if low is not None and high is not None:
        return sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    if low is not None:
        return sps.butter(order, low, btype="highpass", fs=fs, output="sos")
    return sps.butter(order, high, btype="lowpass", fs=fs, output="sos")


def bandpass(x: np.ndarray, fs: float, low: float | None, high: float | None, order: int = 3) -> np.ndarray:
    """Butterworth band-pass (or high-/low-pass when one edge is None); edges at or above Nyquist are dropped."""
    nyq = fs / 2
    high = high if high is not None and high < nyq * 0.99 else None
    low = low if low is not None and low > 0 else None
    if low is None and high is None:
        return x
    sos = _butter(order, low, high, fs)
    # Reflect-pad by one period of the high-pass edge (2 s at 0.5 Hz), not scipy's
    # few samples: the start-up transient of a 0.5 Hz high-pass otherwise spans
    # seconds of a 10-second record.
    padlen = min(x.shape[-1] - 1, int(fs / low)) if low is not None else None
    return sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen)


def notch(x: np.ndarray, fs: float, freq: float, quality: float = 30.0) -> np.ndarray:
    """Remove powerline interference at ``freq`` Hz (skipped when above Nyquist)."""
    if freq >= fs / 2:
        return x
    b, a = sps.iirnotch(freq, quality, fs=fs)
    return sps.filtfilt(b, a, x, axis=-1)


def fix_length(x: np.ndarray, n: int, crop: str = "start") -> np.ndarray:
    """Crop to ``n`` samples (from the start or the centre) or zero-pad at the end."""
    length = x.shape[-1]
    if length > n:
        start = 0 if crop == "start" else (length - n) // 2
        return x[..., start : start + n]
    if length < n:
        pad = np.zeros((*x.shape[:-1], n - length), dtype=x.dtype)
        return np.concatenate([x, pad], axis=-1)
    return x


def zscore_scale(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The ``(mean, std)`` per lead that :func:`zscore` removes, ``[..., leads, 2]`` (std floored at ``eps``):
    ``zscore(x) * std + mean`` gives ``x`` back, which is what the store's ``zscore_scale`` keeps."""
    return np.stack([x.mean(axis=-1), np.maximum(x.std(axis=-1), eps)], axis=-1)


def zscore(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-record, per-lead standardisation; a flat lead stays zero rather than exploding."""
    scale = zscore_scale(x, eps)
    return (x - scale[..., 0:1]) / scale[..., 1:2]


@dataclass(frozen=True)
class PrepConfig:
    """Everything ``prep`` does to a record, recorded in the store's attributes."""

    fs: float = 100.0
    seconds: float | None = 10.0  # None: keep the longest record's length (pad the rest)
    crop: str = "start"
    lowcut: float | None = 0.5
    highcut: float | None = 50.0
    notch: float | None = None
    normalisation: str = "zscore"
    leads: tuple[str, ...] | None = None  # None: every lead of the dataset, in its order
    beat_window: tuple[float, float] | None = None  # seconds before and after each annotated beat: a beat store

    def __post_init__(self) -> None:
        # Checked here, where the values live, for library callers and the CLI alike;
        # each error names its parameter, and the CLI names the flag that set it.
        check_fs(self.fs, "fs")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"seconds must be positive (None keeps the longest record's length), not {self.seconds:g}", "seconds")
        if self.seconds is not None and not self.seconds * self.fs <= MAX_SAMPLES:  # why this bound: data/choices.py
            raise ConfigError(f"seconds {self.seconds:g} at {self.fs:g} Hz is more than {MAX_SAMPLES:,} samples per lead", "seconds")
        if self.leads is not None:  # None is every lead; an empty list (`--leads ,`) must not mean that too
            if not self.leads:
                raise ConfigError("leads names no lead; give lead names, e.g. I,II (or leave it out for all leads)", "leads")
            repeated = sorted({lead for lead in self.leads if list(self.leads).count(lead) > 1})
            if repeated:  # a store with one lead twice: a model would count it twice, and the lead names would be ambiguous
                raise ConfigError(f"leads names {', '.join(repeated)} more than once", "leads")
        if self.crop not in CROP_POLICIES:
            raise ConfigError(f"crop must be one of {', '.join(CROP_POLICIES)}, not {self.crop!r}", "crop")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, not {self.normalisation!r}", "normalisation")
        for name, what in (("lowcut", "band-pass low cut-off"), ("highcut", "band-pass high cut-off"), ("notch", "notch frequency")):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{what} {value:g} Hz must not be negative (0 or None: none)", name)
        if self.lowcut and self.highcut and self.lowcut >= self.highcut:
            raise ConfigError(f"band-pass low cut-off {self.lowcut:g} Hz must be below the high cut-off {self.highcut:g} Hz", "lowcut")
        if self.lowcut and self.lowcut >= self.fs / 2:
            raise ConfigError(f"band-pass low cut-off {self.lowcut:g} Hz must be below the Nyquist frequency "
                              f"{self.fs / 2:g} Hz of the sampling rate fs {self.fs:g} Hz", "lowcut")
        if self.beat_window is not None:
            window = tuple(self.beat_window)
            if len(window) != 2 or min(window) < 0 or sum(window) <= 0:
                raise ConfigError(f"beat window must be two non-negative seconds (before, after the beat) that are not both 0, "
                                  f"not {self.beat_window}", "beat_window")
            if not sum(window) * self.fs <= MAX_SAMPLES:
                raise ConfigError(f"beat window {self.beat_window} at {self.fs:g} Hz is more than {MAX_SAMPLES:,} samples",
                                  "beat_window")

    @property
    def samples(self) -> int | None:
        return None if self.seconds is None else int(round(self.seconds * self.fs))

    @property
    def beat_samples(self) -> int:
        pre, post = self.beat_window
        return int(round(pre * self.fs)) + int(round(post * self.fs))

    def describe(self) -> dict:
        d = asdict(self)
        d["samples"] = self.beat_samples if self.beat_window else self.samples
        d.update(METHODS)
        return d

    @classmethod
    def from_record(cls, record) -> PrepConfig:
        """The configuration a :meth:`describe` record (a store's ``preprocessing``) was written from.

        Refuses (``EcgtoolError``, the message to be prefixed by whose record it is) a record that lacks
        a setting or whose methods (filter, resampler, padding) are not the ones this ecgtool applies:
        replaying it would not reproduce the rows it describes."""
        if not isinstance(record, dict):
            raise EcgtoolError("is not a mapping of prep settings")
        missing = [f.name for f in fields(cls) if f.name not in record]
        if missing:
            raise EcgtoolError(f"lacks the prep setting(s) {', '.join(missing)}")
        other = [f"{key} {record[key]!r}" for key, ours in METHODS.items() if record.get(key, ours) != ours]
        if other:
            raise EcgtoolError(f"was made with {', '.join(other)}, which this ecgtool does not apply")
        values = {f.name: record[f.name] for f in fields(cls)}
        for key in ("leads", "beat_window"):
            if values[key] is not None:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except (ConfigError, TypeError) as e:
            raise EcgtoolError(f"holds an invalid prep setting ({e})") from None


# How prep does each step, recorded beside its settings (``PrepConfig.describe``).
METHODS = {
    "filter": "Butterworth order 3, zero-phase (sosfiltfilt)",
    "resampler": "scipy.signal.resample_poly",
    "pad": "zeros at the end",
}


def select_leads(signal: np.ndarray, have, want) -> np.ndarray:
    """The rows of ``signal`` ``[leads, samples]`` (lead names ``have``) for the leads ``want``, in that order.

    Refuses a record lacking a lead, an empty or all-NaN signal, and NaN samples in a kept lead (WFDB's
    invalid-sample marker, -32768 in format 16, reads as NaN): never filled in silently. The messages
    speak of the record ("lacks lead(s) V1"); the caller names it.
    """
    have = list(have)
    missing = [lead for lead in want if lead not in have]
    if missing:
        raise EcgtoolError(f"lacks lead(s) {', '.join(missing)}")
    x = signal[[have.index(lead) for lead in want]]
    if x.size == 0 or not np.isfinite(x).any():
        raise EcgtoolError("signal is empty or entirely non-finite (NaN or infinite)")
    invalid = ~np.isfinite(x)
    if invalid.any():
        bad = [lead for lead, row in zip(want, invalid) if row.any()]
        raise EcgtoolError(f"has {int(invalid.sum())} non-finite (NaN or infinite) sample(s) in lead(s) {', '.join(bad)}")
    return x


def filtered(x: np.ndarray, fs_in: float, cfg: PrepConfig) -> np.ndarray:
    """A whole record resampled to ``cfg.fs``, band-passed and notch-filtered (NaN → 0)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    x = resample(x, fs_in, cfg.fs)
    x = bandpass(x, cfg.fs, cfg.lowcut, cfg.highcut)
    if cfg.notch:
        x = notch(x, cfg.fs, cfg.notch)
    return x


def preprocess(x: np.ndarray, fs_in: float, cfg: PrepConfig, n_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One record ``[leads, samples]`` in physical units → the store's float32 representation, and with
    ``zscore`` the ``(mean, std)`` per lead it removed (``[leads, 2]`` float32; None otherwise).

    Filtering runs before cropping so the filter's edge effects fall in the part
    that is cut away where possible; the per-record z-score runs after cropping and
    before padding, so that it describes exactly the recorded samples kept and the
    padding stays zero.
    """
    x = filtered(x, fs_in, cfg)
    x = fix_length(x, min(n_samples, x.shape[-1]), cfg.crop)
    scale = None
    if cfg.normalisation == "zscore":
        scale = zscore_scale(x)
        x = (x - scale[:, 0:1]) / scale[:, 1:2]
    return fix_length(x, n_samples).astype(np.float32), None if scale is None else scale.astype(np.float32)


def beat_windows(x: np.ndarray, fs_in: float, beat_samples: np.ndarray, cfg: PrepConfig
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Windows ``[-pre, +post)`` seconds around each beat of a whole record, after resampling and filtering.

    Returns ``(windows [n, leads, samples], beat positions at cfg.fs [n], kept mask over the input beats,
    scales)``; a beat whose window would leave the record is not kept. With ``zscore`` each window is
    standardised on its own, as beat classifiers expect, and ``scales`` ``[n, leads, 2]`` float32 holds
    each window's ``(mean, std)`` per lead (None otherwise).
    """
    x = filtered(x, fs_in, cfg)
    pre = int(round(cfg.beat_window[0] * cfg.fs))
    width = cfg.beat_samples
    centres = np.round(np.asarray(beat_samples) * cfg.fs / fs_in).astype(np.int64)
    keep = (centres - pre >= 0) & (centres - pre + width <= x.shape[-1])
    starts = centres[keep] - pre
    windows = np.stack([x[:, s : s + width] for s in starts]) if len(starts) else np.zeros((0, x.shape[0], width))
    scales = None
    if cfg.normalisation == "zscore":
        scales = zscore_scale(windows) if len(windows) else np.zeros((0, x.shape[0], 2))
        windows = (windows - scales[..., 0:1]) / scales[..., 1:2]
        scales = scales.astype(np.float32)
    return windows.astype(np.float32), centres[keep], keep, scales
