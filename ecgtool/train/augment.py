"""ECG augmentations for training: small torch functions on the batch tensor, on its device.

Each applies to a record with probability ``prob`` (torch_ecg's default 0.5 for
every augmenter) and acts on the lead channels only (not on a channel an input
view adds, e.g. the R-peak marks of ``rpeaks``). Defaults and where they come from:

================ ======================================= ==========================================
name             what (default strength)                 source
================ ======================================= ==========================================
lead_mask        zero ``leads`` randomly chosen leads    the research notebook ("随机mask某导联");
                 (1)                                     strength ours
segment_mask     zero the first or the last part of      the research notebook ("随机mask某段(仅开头
                 every lead, a width drawn uniformly in  或结尾)"); strength ours
                 [1 sample, ``max_fraction`` × length]
                 (0.2)
noise            add white Gaussian noise of ``std`` ×   the research notebook ("增加随机噪声");
                 each lead's own standard deviation      0.05 is about torch_ecg's strongest
                 (0.05)                                  Gaussian level (0.01 of the amplitude)
baseline_wander  sinusoids at 0.33, 0.1, 0.05, 0.01 Hz, torch_ecg ``BaselineWanderAugmenter``
                 random phases, amplitudes a row of      (``bw_fs``, ``ampl_ratio``, ``gaussian``
                 torch_ecg's 7-level ratio table, plus   defaults)
                 Gaussian noise of 0.001/0.003/0.01 ×
                 the lead's amplitude, per lead
amplitude_scale  multiply each record by a gain drawn   torch_ecg ``RandomRenormalize``: its
                 from N(1, ``std``) (0.18)               target std N(0.2, 0.036) is a gain
                                                         N(1, 0.18) (without its mean shift)
time_stretch     resample by 1 ± r, r from               torch_ecg ``StretchCompress``
                 clip(N(``ratio``, 0.382 ``ratio``), 0,  (``ratio`` 6 %)
                 2 ``ratio``), then cut (stretch) or
                 zero-pad (compress) around the centre
                 to the same length (0.06)
mixup            x ← λx + (1−λ)x', y ← λy + (1−λ)y'      Zhang et al. 2018; torch_ecg ``Mixup``
                 with a partner among the batch's other  (``alpha`` 0.5, one λ ~ Beta(α, α) per
                 chosen records (``alpha`` 0.5)          batch)
================ ======================================= ==========================================

torch_ecg (DeepPSP/torch_ecg, ``torch_ecg/augmenters/*.py`` at b10c415) is not
a dependency: it pulls some thirty packages and draws from process-global
NumPy/``random`` state in multiprocessing pools, which could not be made exact
under ``--resume``. "Amplitude" is torch_ecg's ``get_ampl``: the largest
peak-to-peak range over 0.2 s windows with half overlap; torch_ecg computes it
but adds its table's values unscaled, so there the "ratios" are in signal units —
here they are ratios, as its documentation says.

Randomness: every draw of a step comes from generators seeded by ``(seed,
epoch, step)`` — NumPy for the per-record parameters, a ``torch.Generator`` on
the batch's device for the noise fields — so a resumed run repeats them with no
state to save. Like ``random_crop`` they are drawn for the whole global batch
(``draws`` records) and a DDP rank uses its ``part``; mixup gathers the global
batch (``gather``) so that its partners are the ones one process would pick.
A mixed batch's labels are soft: BCE and cross-entropy (torch ≥ 1.10) both take them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ecgtool.errors import ConfigError


@dataclass
class Draws:
    """One step's random draws for a global batch of ``n`` records, of which this process holds ``part``."""

    rng: np.random.Generator
    gen: torch.Generator
    n: int
    part: slice
    device: torch.device
    fs: float
    gather: Callable[[torch.Tensor], torch.Tensor]  # this rank's rows -> the global batch's

    def uniform(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) draws, one ``shape`` per record of the global batch; this rank's part."""
        return torch.as_tensor(self.rng.random((self.n, *shape))[self.part], dtype=torch.float32, device=self.device)

    def hit(self, prob: float) -> torch.Tensor:
        """Which of this rank's records an augmentation applies to, ``[B]`` bool."""
        return self.uniform() < prob

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal fields ``[B, *shape]`` drawn on the device for the global batch; this rank's part."""
        return torch.randn((self.n, *shape), generator=self.gen, device=self.device)[self.part]


def _rows(mask: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    return mask.view(-1, *([1] * (ndim - 1)))


def lead_mask(x: torch.Tensor, d: Draws, prob: float = 0.5, leads: int = 1) -> torch.Tensor:
    """Zero ``leads`` distinct leads (drawn uniformly) of each chosen record."""
    order = d.uniform(x.shape[1]).argsort(dim=1)[:, :leads]  # a random subset of the leads
    masked = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device).scatter_(1, order, True)
    return x.masked_fill((masked & _rows(d.hit(prob), 2)).unsqueeze(-1), 0.0)


def segment_mask(x: torch.Tensor, d: Draws, prob: float = 0.5, max_fraction: float = 0.2) -> torch.Tensor:
    """Zero, in every lead, the first or the last ``w`` samples, ``w`` uniform in [1, max_fraction × length]."""
    length = x.shape[-1]
    widest = max(1, int(max_fraction * length))
    width = 1 + (d.uniform() * widest).long().clamp(max=widest - 1)  # [B] in 1..widest
    at_end = d.uniform() < 0.5
    t = torch.arange(length, device=x.device)
    inside = torch.where(at_end[:, None], t >= length - width[:, None], t < width[:, None])
    return x.masked_fill((inside & d.hit(prob)[:, None]).unsqueeze(1), 0.0)


def noise(x: torch.Tensor, d: Draws, prob: float = 0.5, std: float = 0.05) -> torch.Tensor:
    """Add Gaussian noise of ``std`` times each lead's own standard deviation."""
    scale = std * x.std(dim=-1, keepdim=True) * _rows(d.hit(prob))
    return x + scale * d.normal(*x.shape[1:])


BW_FS = (0.33, 0.1, 0.05, 0.01)  # Hz
BW_AMPL_RATIO = (  # one row per level, one column per frequency (torch_ecg's defaults)
    (0.01, 0.01, 0.02, 0.03), (0.01, 0.02, 0.04, 0.05), (0.1, 0.06, 0.04, 0.02), (0.02, 0.04, 0.07, 0.1),
    (0.05, 0.1, 0.16, 0.25), (0.1, 0.15, 0.25, 0.3), (0.25, 0.25, 0.3, 0.35),
)
BW_GAUSSIAN_STD = (0.001, 0.003, 0.01)


def amplitude(x: torch.Tensor, fs: float, window: float = 0.2) -> torch.Tensor:
    """``[B, C, 1]``: the largest peak-to-peak range over ``window``-second windows with half overlap (torch_ecg's ``get_ampl``)."""
    half = max(1, int(round(window * fs)) // 2)
    if x.shape[-1] < 2 * half:
        return x.amax(-1, keepdim=True) - x.amin(-1, keepdim=True)
    w = x.unfold(-1, 2 * half, half)
    return (w.amax(-1) - w.amin(-1)).amax(-1, keepdim=True)


def baseline_wander(x: torch.Tensor, d: Draws, prob: float = 0.5) -> torch.Tensor:
    """torch_ecg's baseline wander: per chosen (record, lead), sinusoids at ``BW_FS`` with random phases
    and a level of ``BW_AMPL_RATIO``, and per chosen (record, lead) Gaussian noise of a ``BW_GAUSSIAN_STD``,
    both relative to the lead's amplitude; each (record, lead) is chosen with ``prob`` (torch_ecg
    pads its tables with zero rows to that effect)."""
    b, c, length = x.shape
    ratios = torch.tensor(BW_AMPL_RATIO, device=x.device)
    level = (d.uniform(c) * len(BW_AMPL_RATIO)).long().clamp(max=len(BW_AMPL_RATIO) - 1)  # [B, C]
    sine_on = d.uniform(c) < prob
    phase = d.uniform(c, len(BW_FS)) * 2 * math.pi  # [B, C, F]
    g_level = (d.uniform(c) * len(BW_GAUSSIAN_STD)).long().clamp(max=len(BW_GAUSSIAN_STD) - 1)
    g_on = d.uniform(c) < prob
    field = d.normal(c, length)
    t = torch.arange(length, device=x.device, dtype=x.dtype) / d.fs
    freqs = torch.tensor(BW_FS, device=x.device, dtype=x.dtype)
    waves = torch.sin(2 * math.pi * freqs[:, None] * t + phase[..., None])  # [B, C, F, T]
    wander = (ratios[level] * sine_on[..., None])[..., None].mul(waves).sum(2)
    gauss = (torch.tensor(BW_GAUSSIAN_STD, device=x.device)[g_level] * g_on)[..., None] * field
    return x + amplitude(x, d.fs) * (wander + gauss)


def amplitude_scale(x: torch.Tensor, d: Draws, prob: float = 0.5, std: float = 0.18) -> torch.Tensor:
    """Multiply each chosen record (all its leads) by a gain drawn from N(1, std), clipped at 0."""
    gain = (1 + std * torch.as_tensor(d.rng.standard_normal(d.n)[d.part], dtype=x.dtype, device=x.device)).clamp(min=0)
    return x * _rows(torch.where(d.hit(prob), gain, torch.ones_like(gain)))


def time_stretch(x: torch.Tensor, d: Draws, prob: float = 0.5, ratio: float = 0.06) -> torch.Tensor:
    """torch_ecg's stretch-or-compress: resample each chosen record to ``round((1 ± r) × length)`` samples
    (linear, end points aligned), r from clip(N(ratio, 0.382 ratio), 0, 2 ratio), then keep the centre
    ``length`` samples of a stretched record or zero-pad a compressed one on both sides."""
    length = x.shape[-1]
    r = np.clip(ratio + 0.382 * ratio * d.rng.standard_normal(d.n), 0, 2 * ratio)[d.part]
    sign = np.where(d.rng.random(d.n)[d.part] < 0.5, -1, 1)
    chosen = d.hit(prob).cpu().numpy()
    new_len = np.where(chosen, np.round((1 + sign * r) * length).astype(np.int64), length).clip(min=2)
    half = np.abs(new_len - length) // 2
    offset = np.where(new_len >= length, half, -half)  # output sample i is resampled sample i + offset
    j = torch.arange(length, device=x.device)[None, :] + torch.as_tensor(offset, device=x.device)[:, None]  # [B, T]
    n = torch.as_tensor(new_len, device=x.device)[:, None]
    valid = (j >= 0) & (j < n)
    pos = j.clamp(min=0).to(x.dtype) * ((length - 1) / (n - 1).to(x.dtype))  # align_corners=True
    lo = pos.floor().long().clamp(max=length - 1)
    hi = (lo + 1).clamp(max=length - 1)
    frac = (pos - lo.to(x.dtype)).unsqueeze(1)
    take = lambda idx: x.gather(-1, idx.unsqueeze(1).expand(-1, x.shape[1], -1))  # noqa: E731
    out = (take(lo) * (1 - frac) + take(hi) * frac) * valid.unsqueeze(1)
    return torch.where(_rows(torch.as_tensor(chosen, device=x.device)), out, x)


def mixup(x: torch.Tensor, y: torch.Tensor, d: Draws, prob: float = 0.5, alpha: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each chosen record and its labels with another chosen record of the global batch
    (a random permutation of the chosen ones), with one λ ~ Beta(alpha, alpha) for the batch."""
    lam = float(d.rng.beta(alpha, alpha))
    chosen = np.flatnonzero(d.rng.random(d.n) < prob)
    partner = np.arange(d.n)
    partner[chosen] = chosen[d.rng.permutation(len(chosen))]
    xg, yg = d.gather(x), d.gather(y)
    idx = torch.as_tensor(partner[d.part], device=x.device)
    on = torch.zeros(d.n, dtype=torch.bool)
    on[chosen] = True
    on = on[d.part].to(x.device)
    x_mixed = torch.where(_rows(on), lam * x + (1 - lam) * xg[idx], x)
    y_mixed = torch.where(_rows(on, 2), lam * y + (1 - lam) * yg[idx], y)
    return x_mixed, y_mixed


@dataclass(frozen=True)
class Augmentation:
    fn: Callable
    params: dict  # name -> default
    signal_only: bool = True  # False: it moves samples or mixes records (wrong for a view's extra channels)


AUGMENTATIONS = {
    "lead_mask": Augmentation(lead_mask, {"prob": 0.5, "leads": 1}),
    "segment_mask": Augmentation(segment_mask, {"prob": 0.5, "max_fraction": 0.2}),
    "noise": Augmentation(noise, {"prob": 0.5, "std": 0.05}),
    "baseline_wander": Augmentation(baseline_wander, {"prob": 0.5}),
    "amplitude_scale": Augmentation(amplitude_scale, {"prob": 0.5, "std": 0.18}),
    "time_stretch": Augmentation(time_stretch, {"prob": 0.5, "ratio": 0.06}, signal_only=False),
    "mixup": Augmentation(mixup, {"prob": 0.5, "alpha": 0.5}, signal_only=False),
}

_BOUNDS = {  # parameter -> (low, high, low open, high open)
    "prob": (0.0, 1.0, False, False), "leads": (1, math.inf, False, True), "max_fraction": (0.0, 1.0, True, False),
    "std": (0.0, math.inf, False, True), "ratio": (0.0, 1.0, False, True), "alpha": (0.0, math.inf, True, True),
}


def _check(name: str, key: str, value) -> float | int:
    low, high, low_open, high_open = _BOUNDS[key]
    if key == "leads":
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise ConfigError(f"{name}: leads must be a whole number, not {value!r}", "augment")
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: {key} must be a number, not {value!r}", "augment")
    else:
        value = float(value)
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low) or (high_open and value == high):
        lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
        raise ConfigError(f"{name}: {key} must lie in {lo}, {hi}, not {value}", "augment")
    return value


def resolve_augment(items) -> list[dict]:
    """``["noise", "mixup:alpha=0.2", {"name": "lead_mask", "leads": 2}]`` → complete specs
    ``[{"name": ..., every parameter ...}]`` with the defaults filled in, checked."""
    out = []
    for item in items:
        if isinstance(item, str):
            name, *pairs = item.strip().split(":")
            given = {}
            for pair in pairs:
                key, sep, raw = pair.partition("=")
                if not sep:
                    raise ConfigError(f"{item!r}: write NAME or NAME:KEY=VALUE[:KEY=VALUE...]", "augment")
                try:
                    given[key.strip()] = float(raw)
                except ValueError:
                    raise ConfigError(f"{item!r}: {key} must be a number, not {raw!r}", "augment") from None
        elif isinstance(item, dict) and "name" in item:
            name, given = item["name"], {k: v for k, v in item.items() if k != "name"}
        else:
            raise ConfigError(f"{item!r} is not an augmentation; write NAME or NAME:KEY=VALUE", "augment")
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}", "augment")
        defaults = AUGMENTATIONS[name].params
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"{name} has no parameter {unknown[0]!r}; it takes {', '.join(defaults)}", "augment")
        out.append({"name": name, **{k: _check(name, k, given.get(k, v)) for k, v in defaults.items()}})
    names = [spec["name"] for spec in out]
    if len(set(names)) < len(names):
        raise ConfigError(f"augmentation {next(n for n in names if names.count(n) > 1)!r} is given twice", "augment")
    return out


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class Augmenter:
    """The augmentations of a run, applied in the given order to each training batch."""

    def __init__(self, specs, *, seed: int, fs: float, n_leads: int, channels: int | None = None,
                 gather: Callable[[torch.Tensor], torch.Tensor] | None = None, where: str = "the input"):
        self.specs = resolve_augment(specs)
        self.seed, self.fs, self.n_leads = seed, fs, n_leads
        self.gather = gather or _identity
        extra = (channels or n_leads) - n_leads
        for spec in self.specs:
            if extra and not AUGMENTATIONS[spec["name"]].signal_only:
                raise ConfigError(f"{spec['name']} would move or mix the channel {where} adds to the leads; "
                                  "choose another augmentation", "augment")
            if spec["name"] == "lead_mask" and spec["leads"] >= n_leads:
                raise ConfigError(f"lead_mask: leads must be fewer than the input's {n_leads} lead(s), not {spec['leads']}",
                                  "augment")

    @property
    def mixes_labels(self) -> bool:
        return any(spec["name"] == "mixup" for spec in self.specs)

    def draws(self, epoch: int, step: int, n: int, part: slice, device: torch.device) -> Draws:
        entropy = np.random.SeedSequence([self.seed, epoch, step, 0x61756720])  # the last word: "aug " (not the loader's stream)
        rng = np.random.default_rng(entropy)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(entropy.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return Draws(rng, gen, n, part, device, self.fs, self.gather)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int, draws: int | None = None,
                 part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of step ``step`` of ``epoch`` augmented; ``draws``/``part`` as in ``random_crop``."""
        if not self.specs:
            return x, y
        d = self.draws(epoch, step, draws or len(x), part, x.device)
        leads, rest = x[:, : self.n_leads], x[:, self.n_leads :]
        for spec in self.specs:
            aug = AUGMENTATIONS[spec["name"]]
            params = {k: v for k, v in spec.items() if k != "name"}
            if aug.fn is mixup:
                leads, y = mixup(leads, y, d, **params)
            else:
                leads = aug.fn(leads, d, **params)
        return (torch.cat([leads, rest], dim=1) if rest.shape[1] else leads), y
