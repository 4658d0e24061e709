"""MINA: Multilevel Knowledge-Guided Attention for single-lead ECG classification.

Paper: S. Hong, C. Xiao, T. Ma, H. Li, J. Sun. "MINA: Multilevel Knowledge-Guided
Attention for Modeling Electrocardiography Signals." IJCAI 2019, arXiv:1905.11333.

Official code: https://github.com/hsd1503/MINA (``mina.py``: ``Net``/``BaseNet``,
``compute_beat``/``compute_rhythm``/``compute_freq``; ``util.py``:
``filter_channel``). Read for reference and re-implemented here; no code copied.

What follows the official code exactly (CinC 2017: 1 lead, 3000 samples at
300 Hz, segments of ``n_split=50``, 4 frequency channels, 2 classes: the
official ``Net`` fixes ``n_class = 2``, AF against everything else, 115,274
parameters; ``mina(num_classes=2, num_leads=1, num_samples=3000)`` has the same
count):

* per frequency channel a ``BaseNet``: the signal is cut into non-overlapping
  segments of ``segment_len`` (50) samples; ``Conv1d(1, 64, k=32, s=2)`` + ReLU
  on each segment; beat-level attention: the knowledge signal
  ``|first difference|`` (with a leading 0) goes through its own
  ``Conv1d(1, 1, k=32, s=2)`` + ReLU, is concatenated to the 64 conv channels,
  scored by ``v^T tanh([h; k] W)`` (W 65x8, v 8x1, plain ``randn`` initialised
  parameters) and softmax-normalised over the conv positions; weighted sum ->
  one 64-d vector per segment;
* BiLSTM(64 -> 32 per direction) over the segments; rhythm-level attention
  guided by each segment's standard deviation (population std), W 65x8, v 8x1;
  weighted sum -> 64 -> ``Linear(64, 8)`` + ReLU + dropout 0.5;
* frequency-level attention over the 4 channels guided by each channel's
  total periodogram power (``scipy.signal.periodogram(x, fs)`` summed: constant
  detrend, boxcar window, one-sided density), W 9x2, v 2x1, softmax over
  channels; weighted sum -> 8 features -> ``Linear(8, classes)``.

Deliberate differences / design choices (configurable):

* **No double softmax**: the reference applies ``F.softmax`` to the output and
  then trains with ``CrossEntropyLoss`` (which applies log-softmax again); here
  the model returns logits.
* Attention normalisation uses ``torch.softmax`` (the reference's
  ``exp(e) / sum(exp(e))`` is the same function, numerically less stable).
* **Frequency channels are computed inside the model** with fixed linear-phase
  FIR filters designed with ``scipy.signal.firwin`` at construction (stored as
  non-trainable buffers, applied with zero-padded 'same' convolution). The
  reference pre-computes first-order Butterworth IIR outputs (``lfilter``,
  causal, so with phase lag) in ``util.py``. Channels are the reference's
  (``filter_channel`` since its "fix channel" commit of July 2019): raw,
  0.001-0.5 Hz (baseline wander), 0.5-50 Hz (ECG band), >50 Hz (noise)
  (``bands``); only the filter type differs. A band whose lower edge is below
  the FIR's frequency resolution (``fs / numtaps``) is designed as a low-pass;
  a band with no upper edge (``None``) or one at/above Nyquist as a high-pass;
  a band starting at/above Nyquist gives an all-zero channel (4 channels
  kept). ``fs`` (default 300 Hz, CinC 2017) must be the sampling rate of the
  input.
* The knowledge features (|first difference|, per-segment std, periodogram
  power) are computed in ``forward`` in torch from each frequency channel, so
  training, evaluation, explanation and profiling see them identically.
* Multi-lead input: each lead is filtered separately; the leads are the input
  channels of the segment conv and of the beat-knowledge conv; the rhythm
  (segment std) and frequency (periodogram power) knowledge are averaged over
  leads. With ``num_leads=1`` the parameter count equals the official model.
* If ``num_samples`` is not a multiple of ``segment_len`` the trailing
  remainder is dropped (the reference requires divisibility).

The official preprocessing (``util.make_data_physionet``) is not part of the
model; to reproduce its setting, prepare the data the same way: each record is
z-scored on its own (its mean and standard deviation), then cut into windows of
3000 samples (10 s at 300 Hz) with a stride of 500 samples, 50 for AF records
(``stride // 10``, which oversamples the minority class); labels are AF = 1,
every other class = 0; records are split 75/10/15 % at random before cutting.

Input view: raw signal; filter bank, segmentation and knowledge features are
computed in the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .explainable import Attention, PoolingAttention, Spans, capture, check_recomputed
from .layers import EcgClassifier
from .registry import register_model

__all__ = ["MINA", "FrequencyFilterBank", "mina", "periodogram_power"]

_PAPER = (
    "Hong, Xiao, Ma, Li, Sun. MINA: Multilevel Knowledge-Guided Attention for Modeling "
    "Electrocardiography Signals. IJCAI 2019. arXiv:1905.11333"
)
_SOURCE = (
    "Re-implemented after the official code https://github.com/hsd1503/MINA (mina.py, util.py), "
    "read for reference"
)
_DEFAULT_BANDS = [[0.001, 0.5], [0.5, 50.0], [50.0, None]]


def design_band_fir(band, fs: float, numtaps: int) -> np.ndarray:
    """Linear-phase FIR taps (``scipy.signal.firwin``, Hamming) for ``band = [low, high]``.

    ``high`` None (or >= Nyquist) -> high-pass at ``low``; ``low`` below the
    FIR's resolution ``fs / numtaps`` (or None) -> low-pass at ``high``;
    otherwise band-pass. A band starting at/above Nyquist gives all-zero taps
    (the channel, e.g. >50 Hz at fs=100, is then identically zero; the
    architecture keeps its 4 channels).
    """
    from scipy.signal import firwin

    nyq = 0.5 * fs
    low, high = band
    if low is not None and low >= nyq:
        return np.zeros(numtaps)  # band entirely above Nyquist: an all-zero channel
    if high is not None and high >= nyq:
        high = None
    if low is not None and low < fs / numtaps:
        low = None
    if low is None and high is None:
        taps = np.zeros(numtaps)  # whole spectrum: identity
        taps[numtaps // 2] = 1.0
        return taps
    if high is None:
        return firwin(numtaps, low, pass_zero=False, fs=fs)
    if low is None:
        return firwin(numtaps, high, pass_zero=True, fs=fs)
    return firwin(numtaps, [low, high], pass_zero=False, fs=fs)


class FrequencyFilterBank(nn.Module):
    """``(B, L, T)`` -> ``(B, 1 + n_bands, L, T)``: the raw signal followed by each band.

    Fixed FIR filters (non-trainable buffer), zero-padded 'same' convolution
    applied to every lead separately.
    """

    def __init__(self, fs: float = 300.0, bands=None, numtaps: int | None = None):
        super().__init__()
        bands = _DEFAULT_BANDS if bands is None else bands
        if numtaps is None:
            numtaps = 2 * round(2 * fs) + 1  # ~4 s: resolves the 0.5 Hz edge
        if numtaps % 2 == 0:
            numtaps += 1  # odd length -> integer group delay, exact 'same' alignment
        self.fs, self.numtaps, self.bands = float(fs), int(numtaps), [list(b) for b in bands]
        taps = np.stack([design_band_fir(b, fs, numtaps) for b in bands])
        # conv1d computes cross-correlation: flip to get a true convolution
        self.register_buffer("taps", torch.tensor(taps[:, ::-1].copy(), dtype=torch.float32).unsqueeze(1))

    @property
    def num_channels(self) -> int:
        return 1 + len(self.bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, t = x.shape
        flat = x.reshape(b * l, 1, t)
        filtered = F.conv1d(flat, self.taps.to(x.dtype), padding=self.numtaps // 2)  # (B*L, n_bands, T)
        filtered = filtered.reshape(b, l, -1, t).transpose(1, 2)
        return torch.cat([x.unsqueeze(1), filtered], dim=1)

    def extra_repr(self) -> str:
        return f"fs={self.fs}, numtaps={self.numtaps}, bands={self.bands}"


def periodogram_power(x: torch.Tensor, fs: float) -> torch.Tensor:
    """Sum of ``scipy.signal.periodogram(x, fs)`` density over frequency, along the last axis.

    Constant detrend, boxcar window, one-sided spectrum (bins except DC and,
    for even length, Nyquist doubled), scaled by ``1 / (fs * N)``.
    """
    n = x.shape[-1]
    x = x - x.mean(dim=-1, keepdim=True)
    p = torch.fft.rfft(x, dim=-1).abs().pow(2) / (fs * n)
    weights = torch.full((p.shape[-1],), 2.0, dtype=p.dtype, device=p.device)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return (p * weights).sum(dim=-1)


class _KnowledgeAttention(nn.Module):
    """Additive attention ``softmax_over_dim1(tanh([h; k] W) v)`` as in the reference."""

    def __init__(self, feat_dim: int, att_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(feat_dim + 1, att_dim))
        self.v = nn.Parameter(torch.randn(att_dim, 1))

    def weights(self, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The attention over dim 1 ``(N, S, 1)``."""
        return torch.softmax(torch.tanh(torch.cat([h, k], dim=-1) @ self.W) @ self.v, dim=1)

    def forward(self, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``h``: ``(N, S, D)``, ``k``: ``(N, S, 1)`` -> pooled ``(N, D)``."""
        return (self.weights(h, k) * h).sum(dim=1)


class _SegmentConv(nn.Module):
    """Conv1d + ReLU applied per segment; output laid out as ``(B, C, n_seg * P)`` along time."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, segment_len: int):
        super().__init__()
        self.segment_len = segment_len
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        s = t // self.segment_len
        seg = x[..., : s * self.segment_len].reshape(b, c, s, self.segment_len)
        seg = seg.permute(0, 2, 1, 3).reshape(b * s, c, self.segment_len)
        y = F.relu(self.conv(seg))  # (B*S, C', P)
        p = y.shape[-1]
        return y.reshape(b, s, -1, p).permute(0, 2, 1, 3).reshape(b, -1, s * p)

    def spans(self, positions: int) -> Spans:
        """Position p of segment s covers ``s*L + p*stride + [0, kernel)``."""
        k, stride = self.conv.kernel_size[0], self.conv.stride[0]
        per_seg = (self.segment_len - k) // stride + 1
        n_seg = positions // per_seg
        return Spans((np.arange(n_seg)[:, None] * self.segment_len + np.arange(per_seg)[None] * stride).ravel(), k)


class MinaBranch(nn.Module):
    """The reference's ``BaseNet`` for one frequency channel: ``(B, L, T)`` -> ``(B, out_size)``."""

    def __init__(self, num_leads: int, segment_len: int = 50, conv_channels: int = 64, kernel_size: int = 32,
                 stride: int = 2, att_cnn_dim: int = 8, rnn_hidden: int = 32, att_rnn_dim: int = 8,
                 out_size: int = 8, dropout: float = 0.5):
        super().__init__()
        self.segment_len = segment_len
        self.conv = _SegmentConv(num_leads, conv_channels, kernel_size, stride, segment_len)
        self.conv_k = _SegmentConv(num_leads, 1, kernel_size, stride, segment_len)
        self.beat_att = _KnowledgeAttention(conv_channels, att_cnn_dim)
        self.lstm = nn.LSTM(conv_channels, rnn_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.rhythm_att = _KnowledgeAttention(2 * rnn_hidden, att_rnn_dim)
        self.fc = nn.Linear(2 * rnn_hidden, out_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        s = t // self.segment_len
        # knowledge: |first difference| (leading 0) and per-segment std (averaged over leads)
        k_beat = torch.cat([torch.zeros_like(x[..., :1]), (x[..., 1:] - x[..., :-1]).abs()], dim=-1)
        seg = x[..., : s * self.segment_len].reshape(b, x.shape[1], s, self.segment_len)
        k_rhythm = seg.std(dim=-1, unbiased=False).mean(dim=1)  # (B, S)

        h = self.conv(x)  # (B, C, S*P)
        kb = self.conv_k(k_beat)  # (B, 1, S*P)
        p = h.shape[-1] // s
        h = h.reshape(b, -1, s, p).permute(0, 2, 3, 1).reshape(b * s, p, -1)  # (B*S, P, C)
        kb = kb.reshape(b, 1, s, p).permute(0, 2, 3, 1).reshape(b * s, p, 1)
        seg_feat = self.beat_att(h, kb).reshape(b, s, -1)  # (B, S, C)

        o, _ = self.lstm(seg_feat)  # (B, S, 2H)
        r = self.rhythm_att(o, k_rhythm.unsqueeze(-1))
        return self.dropout(F.relu(self.fc(r)))


class MinaBranches(nn.Module):
    """One :class:`MinaBranch` per frequency channel: ``(B, F, L, T)`` -> ``(B, F, out_size)``."""

    def __init__(self, n_channels: int, **branch_kwargs):
        super().__init__()
        self.branches = nn.ModuleList([MinaBranch(**branch_kwargs) for _ in range(n_channels)])

    def __getitem__(self, i: int) -> MinaBranch:
        return self.branches[i]

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return torch.stack([br(xs[:, i]) for i, br in enumerate(self.branches)], dim=1)


class FrequencyAttention(nn.Module):
    """Channel attention guided by periodogram power: ``(B, F, D)``, ``(B, F, 1)`` -> ``(B, D)``."""

    def __init__(self, feat_dim: int = 8, att_dim: int = 2):
        super().__init__()
        self.att = _KnowledgeAttention(feat_dim, att_dim)

    def forward(self, feats: torch.Tensor, k_freq: torch.Tensor) -> torch.Tensor:
        return self.att(feats, k_freq)


class MINA(EcgClassifier):
    """MINA over ``(batch, num_leads, num_samples)``.

    Top-level submodules in forward order (see ``stages``): ``filter_bank``
    (fixed FIR frequency channels), ``branches`` (one knowledge-guided
    CNN + BiLSTM per channel), ``freq_attention`` and ``head`` (linear).
    """

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 1,
        num_samples: int = 3000,
        fs: float = 300.0,
        bands=None,
        numtaps: int | None = None,
        segment_len: int = 50,
        conv_channels: int = 64,
        kernel_size: int = 32,
        conv_stride: int = 2,
        rnn_hidden: int = 32,
        att_dim: int = 8,
        out_size: int = 8,
        freq_att_dim: int = 2,
        dropout: float = 0.5,
    ):
        super().__init__()
        if num_samples < segment_len:
            raise ValueError(f"num_samples ({num_samples}) must be >= segment_len ({segment_len}).")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.fs = float(fs)
        self.filter_bank = FrequencyFilterBank(fs=fs, bands=bands, numtaps=numtaps)
        self.branches = MinaBranches(
            self.filter_bank.num_channels, num_leads=num_leads, segment_len=segment_len,
            conv_channels=conv_channels, kernel_size=kernel_size, stride=conv_stride, att_cnn_dim=att_dim,
            rnn_hidden=rnn_hidden, att_rnn_dim=att_dim, out_size=out_size, dropout=dropout,
        )
        self.freq_attention = FrequencyAttention(out_size, freq_att_dim)
        self.num_features = out_size
        self.head = nn.Linear(out_size, num_classes)
        self.stages = ["filter_bank", "branches", "freq_attention", "head"]
        self.default_cam_layer = "branches.branches.0.conv"  # raw channel's segment conv, (B, 64, T')

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> attended features ``(batch, num_features)``."""
        xs = self.filter_bank(x)  # (B, F, L, T)
        k_freq = periodogram_power(xs, self.fs).mean(dim=2, keepdim=True)  # (B, F, 1)
        feats = self.branches(xs)  # (B, F, D)
        return self.freq_attention(feats, k_freq)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def positions(self, layer_name, layer, x, shape):
        return layer.spans(shape[-1]) if isinstance(layer, _SegmentConv) else None

    def attention(self, x):
        """Knowledge-guided attention at three levels: over conv positions within each segment (beat),
        over segments (rhythm), over frequency channels; their product weighs each position."""
        captured: dict = {}

        def hook_for(key):
            def hook(module, inputs, out):
                h, k = inputs
                a = module.weights(h, k)[..., 0]
                check_recomputed(f"mina {key[0]} attention", (a.unsqueeze(-1) * h).sum(dim=1), out)
                captured[key] = a
            return hook

        branches = self.branches.branches
        hooks = [(self.freq_attention.att, hook_for(("frequency",)), False)]
        for f, branch in enumerate(branches):
            hooks += [(branch.beat_att, hook_for(("beat", f)), False), (branch.rhythm_att, hook_for(("rhythm", f)), False)]
        capture(self, x, hooks)
        b = x.shape[0]
        freq = captured[("frequency",)]  # (B, F)
        rhythm = torch.stack([captured[("rhythm", f)] for f in range(len(branches))], dim=1)  # (B, F, S)
        n_seg = rhythm.shape[-1]
        beat = torch.stack([captured[("beat", f)].reshape(b, n_seg, -1) for f in range(len(branches))], dim=1)  # (B, F, S, P)
        weight = (freq[:, :, None, None] * rhythm[..., None] * beat).sum(dim=1).reshape(b, -1)  # sums to 1 per record
        arrays = {"attention_beat": beat.cpu().numpy(), "attention_rhythm": rhythm.cpu().numpy(),
                  "attention_frequency": freq.cpu().numpy()}
        info = {"attention": "knowledge-guided: beat (positions within a segment), rhythm (segments), frequency (channels)",
                "combined": "product of the three levels, summed over frequency channels",
                "frequency_channels": ["raw"] + [f"{lo}-{hi} Hz" for lo, hi in self.filter_bank.bands],
                "segment": branches[0].segment_len}
        return Attention([PoolingAttention(weight, branches[0].conv.spans(weight.shape[-1]))], arrays, info)


@register_model(
    default_cfg=dict(
        family="mina",
        paper=_PAPER,
        source=_SOURCE,
        input_view={
            "name": "raw",
            "in_model": "FIR frequency channels (raw, 0.001-0.5, 0.5-50, >50 Hz at fs), segments of 50, "
                        "|first difference|, per-segment std, periodogram power",
        },
    )
)
def mina(num_classes: int, num_leads: int = 12, num_samples: int = 1000, fs: float = 300.0, **kwargs) -> MINA:
    """MINA: per-frequency-channel CNN+BiLSTM with beat/rhythm/frequency knowledge-guided attention (logits)."""
    return MINA(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, fs=fs, **kwargs)
