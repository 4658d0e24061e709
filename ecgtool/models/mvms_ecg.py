"""MVMS-ECG: multi-view multi-scale network over anatomical lead groups, and its single-view student.

Paper: S. Yang, C. Lian, Z. Zeng, B. Xu, J. Zang, Z. Zhang. "A Multi-View
Multi-Scale Neural Network for Multi-Label ECG Classification." IEEE
Transactions on Emerging Topics in Computational Intelligence 7(3), 2023
(MVMS-ECG).
Official code (read for reference, re-implemented, nothing copied):
ysxGitHub/MVMS-net ``models/model.py`` (``Res2Block``, ``MyNet``,
``AdaptiveWeight``, ``MyNet6View``), ``models/attention.py`` (``CoordAtt``),
``main_distillation.py`` / ``config.py`` (teacher ``MyNet6View``, student
``MyNet`` on all 12 leads; PTB-XL at 100 Hz, i.e. 1000 samples; experiment
``exp0`` = the 71 "all" statements).

What follows the official code exactly (checked layer by layer, parameter
counts asserted in ``tests/test_models_multiview.py``):

* six views by lead angle, in this order and with these lead orders inside a
  view: {aVR}, {I, aVL}, {V1, V2}, {V3, V4}, {V5, V6}, {II, III, aVF}
  (indices [3], [0, 4], [6, 7], [8, 9], [10, 11], [1, 2, 5] of the standard
  order I, II, III, aVR, aVL, aVF, V1-V6);
* per view: stem Conv1d(k=25, padding 0, no bias) -> 64, BN, Mish; two
  Res2Blocks 64->128 and 128->128, kernel 15, stride 2, scale 4, width
  int(128 * 26/64) = 52; global average pool -> 128;
* Res2Block internals: 1x1 conv (no bias) to 4*52 channels, then Mish
  *before* BN (the official "bn reverse"); the 4 chunks are processed as in the
  official ``first_block=True`` mode, which both blocks use: chunks 1-3 each go
  through their own k15 stride-2 conv (no bias, padding 7) + BN + Mish with no
  hierarchical sum, chunk 4 is average-pooled (k3, stride 2, padding 1);
  concat -> 1x1 conv (no bias) -> BN -> coordinate attention -> + shortcut
  (1x1 strided conv *with* bias + BN) -> Mish;
* 1D coordinate attention (official ``CoordAtt`` applied to (N, C, 1, T);
  ``CoordAttention1d`` lives in the shared ``models/attention.py``):
  mid = max(8, C // 16); the sequence [mean over time, x_1 .. x_T] goes through
  one 1x1 conv (bias) + BN + h-swish; the first position gives a channel gate
  sigmoid(conv_h(.)), the other T positions a per-time gate sigmoid(conv_w(.));
  out = x * gate_t * gate_c. Conv2d 1x1 == Conv1d 1x1 and BatchNorm2d over
  (N, mid, T+1, 1) == BatchNorm1d over (N, mid, T+1), so this is the same
  function with the same parameters;
* fusion: every view's vector v_i is weighted by sigmoid(Linear(128 -> 1)(v_i))
  and the weighted vectors are summed; Linear(128 -> classes);
* single-view student (``mvms_single``): the same per-view network on all
  leads with its own Linear(128 -> classes) (official ``MyNet(single_view=False)``);
* initialisation: PyTorch defaults, except that the attention's 1x1 convs
  (Conv2d in the official code, the only modules its init loop matches) get
  kaiming-normal (fan_out, relu) weights.

What had to be decided here (configurable):

* the lead views are kwargs (``views``: list of lists of lead indices or
  standard lead names), so they are JSON-serialisable and stored in
  checkpoints. Default: the six anatomical views when ``num_leads == 12``;
  with any other number of leads the paper's views do not exist, and the
  documented fallback is ``view_fallback="per_lead"`` (every lead is its own
  view; ``"all"`` = one view of all leads);
* the lead views are selected inside ``forward`` (index_select on the lead
  axis), so training, evaluation, explanation and profiling see the same views;
* ``Mish``, ``Hardswish`` and the residual sum are not in-place (hook-safe).

Distillation (the paper's teacher -> student loss) is a training recipe, not
part of the architecture; it is not implemented here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ecgtool.models.attention import CoordAttention1d
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["CoordAttention1d", "Res2Block1d", "MVMSViewNet", "MVMSNet", "MVMS_VIEWS", "mvms_ecg", "mvms_single"]

_PAPER = ("Yang, Lian, Zeng et al. A Multi-View Multi-Scale Neural Network for Multi-Label ECG Classification "
          "(MVMS-ECG). IEEE Transactions on Emerging Topics in Computational Intelligence 7(3), 2023")
_SOURCE = ("ysxGitHub/MVMS-net models/model.py, models/attention.py, main_distillation.py "
           "(read for reference, re-implemented)")

STANDARD_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
# The official MyNet6View lead groups, in the official order (indices in STANDARD_LEADS).
MVMS_VIEWS: list[list[int]] = [[3], [0, 4], [6, 7], [8, 9], [10, 11], [1, 2, 5]]


class Res2Block1d(nn.Module):
    """Official MVMS Res2Block in its ``first_block=True`` mode (both blocks of the network use it)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 15, stride: int = 2,
                 scale: int = 4, base_width: int = 26, attention: bool = True):
        super().__init__()
        width = int(out_channels * (base_width / 64.0))
        self.scale = scale
        n_branches = max(scale, 2) - 1
        self.conv1 = nn.Conv1d(in_channels, width * scale, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm1d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
            for _ in range(n_branches)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(n_branches))
        # The untouched last chunk is average-pooled to the branches' stride.
        self.pool = nn.AvgPool1d(kernel_size=3, stride=stride, padding=1) if scale > 1 else None
        self.conv3 = nn.Conv1d(width * scale, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm1d(out_channels)
        self.attention = CoordAttention1d(out_channels) if attention else nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=stride),  # with bias, as official
                nn.BatchNorm1d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.act(self.conv1(x)))  # official order: activation, then BN
        chunks = torch.chunk(out, self.scale, dim=1)
        parts = [self.act(bn(conv(chunks[i]))) for i, (conv, bn) in enumerate(zip(self.convs, self.bns))]
        if self.pool is not None:
            parts.append(self.pool(chunks[len(self.convs)]))
        out = torch.cat(parts, dim=1)
        out = self.attention(self.bn3(self.conv3(out)))
        return self.act(out + self.shortcut(x))


class MVMSViewNet(EcgClassifier):
    """The per-view network (official ``MyNet``): stem, two Res2Blocks, global average pool[, head].

    With ``num_classes=None`` it is a feature extractor (``single_view=True`` in the
    official code); otherwise it is the single-view classifier ``mvms_single``.
    """

    def __init__(self, in_channels: int, num_classes: int | None = None, stem_channels: int = 64,
                 stem_kernel: int = 25, widths: Sequence[int] = (128, 128), kernel_size: int = 15,
                 stride: int = 2, scale: int = 4, base_width: int = 26, attention: bool = True):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, stem_channels, kernel_size=stem_kernel, padding=0, bias=False),
            nn.BatchNorm1d(stem_channels),
            nn.Mish(),
        )
        c1, c2 = widths
        self.layer1 = Res2Block1d(stem_channels, c1, kernel_size, stride, scale, base_width, attention)
        self.layer2 = Res2Block1d(c1, c2, kernel_size, stride, scale, base_width, attention)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(1))
        self.num_features = c2
        if num_classes is not None:
            self.head = nn.Linear(c2, num_classes)
            self.stages = ["stem", "layer1", "layer2", "global_pool", "head"]
            self.default_cam_layer = "layer2"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Without a head (a view of the multi-view teacher) the pooled features are the output.
        feats = self.forward_features(x)
        return self.forward_head(feats) if hasattr(self, "head") else feats


class LeadViews(nn.Module):
    """Selects each view's leads (inside forward) and runs that view's network: -> (B, n_views, C)."""

    def __init__(self, views: list[list[int]], **net_kwargs):
        super().__init__()
        self.nets = nn.ModuleList(MVMSViewNet(len(v), **net_kwargs) for v in views)
        for i, leads in enumerate(views):
            self.register_buffer(f"leads_{i}", torch.tensor(leads, dtype=torch.long), persistent=False)
        self.num_features = self.nets[0].num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [net(x.index_select(1, getattr(self, f"leads_{i}"))) for i, net in enumerate(self.nets)]
        return torch.stack(outs, dim=1)


class AdaptiveWeightFusion(nn.Module):
    """Official ``AdaptiveWeight`` fusion: sum_i sigmoid(Linear_i(v_i)) * v_i over the views."""

    def __init__(self, num_views: int, dim: int):
        super().__init__()
        self.weights = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_views))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, V, D) -> (B, D)
        out = None
        for i, lin in enumerate(self.weights):
            v = feats[:, i]
            term = torch.sigmoid(lin(v)) * v
            out = term if out is None else out + term
        return out


def _resolve_views(views, num_leads: int, view_fallback: str) -> list[list[int]]:
    if views is None:
        if num_leads == 12:
            return [list(v) for v in MVMS_VIEWS]
        if view_fallback == "per_lead":
            return [[i] for i in range(num_leads)]
        if view_fallback == "all":
            return [list(range(num_leads))]
        raise ValueError(f"view_fallback must be 'per_lead' or 'all', got {view_fallback!r}")
    out = []
    for view in views:
        idx = [STANDARD_LEADS.index(v) if isinstance(v, str) else int(v) for v in view]
        if not idx or any(i < 0 or i >= num_leads for i in idx):
            raise ValueError(f"view {view!r} selects leads outside 0..{num_leads - 1}")
        out.append(idx)
    if not out:
        raise ValueError("views must not be empty")
    return out


class MVMSNet(EcgClassifier):
    """Multi-view network (official ``MyNet6View``): ``views`` -> ``fusion`` -> ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 views: list[list[int | str]] | None = None, view_fallback: str = "per_lead", **net_kwargs):
        super().__init__()
        self.view_leads = _resolve_views(views, num_leads, view_fallback)
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.views = LeadViews(self.view_leads, **net_kwargs)
        self.num_features = self.views.num_features
        self.fusion = AdaptiveWeightFusion(len(self.view_leads), self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.stages = ["views", "fusion", "head"]
        # Any "views.nets.<i>.layer2" works; view 0 exists under every fallback.
        self.default_cam_layer = "views.nets.0.layer2"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(self.views(x))


_VIEW_DOC = ("six anatomical lead views {aVR},{I,aVL},{V1,V2},{V3,V4},{V5,V6},{II,III,aVF} selected in forward; "
             "fewer/more than 12 leads: every lead its own view (view_fallback='per_lead') or one view ('all')")


@register_model(default_cfg=dict(family="mvms_ecg", paper=_PAPER, source=_SOURCE,
                                 input_view={"name": "raw", "in_model": _VIEW_DOC}))
def mvms_ecg(num_classes: int, num_leads: int = 12, num_samples: int = 1000,
             views: list | None = None, view_fallback: str = "per_lead", **kwargs) -> MVMSNet:
    """MVMS-ECG teacher: six lead-angle views, each a Res2Net+coordinate-attention net, sigmoid-weighted fusion."""
    return MVMSNet(num_classes, num_leads, num_samples, views=views, view_fallback=view_fallback, **kwargs)


@register_model(default_cfg=dict(family="mvms_ecg", paper=_PAPER, source=_SOURCE,
                                 input_view={"name": "raw", "in_model": "single view of all leads"}))
def mvms_single(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> MVMSViewNet:
    """MVMS-ECG single-view student: the per-view Res2Net+coordinate-attention net on all leads."""
    model = MVMSViewNet(num_leads, num_classes=num_classes, **kwargs)
    model.num_classes, model.num_leads, model.num_samples = num_classes, num_leads, num_samples
    return model
