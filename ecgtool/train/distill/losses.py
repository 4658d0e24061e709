"""Loss terms of the distillation methods (issue 14): classic KD, MVMS-ECG, and MVKT-ECG's MLKD and CLT.

Re-implemented from the description in docs/distill-methods.md (its section numbers are cited below as §);
no code was copied. Neither official repository has a licence, so they were read, not reused.

Sources:
* Classic KD: Hinton G, Vinyals O, Dean J. Distilling the Knowledge in a Neural Network. arXiv 1503.02531
  (2015). Multi-label form: each class an independent Bernoulli, the consensus of the references in §3
  (penghui-yang/L2D ``mld.py`` @ e3c438a, fschmid56/EfficientAT ``ex_audioset.py`` @ 0cc9f62, the
  mdistiller-style BinaryKL).
* MVMS-ECG: Multi-view multi-scale ECG distillation, IEEE TETCI 2023; ysxGitHub/MVMS-net @ 2ea558b,
  ``utils.py`` l.62-73 ``KdLoss`` (§1.1).
* MVKT-ECG: Qin Y et al., Comput. Biol. Med. 2023, doi 10.1016/j.compbiomed.2023.107503, arXiv 2301.12178;
  QINYZz/MVKT-ECG @ 209abc7: MLKD ``transferring.py`` l.389-400 (§2.2), CLT ``loss/criterion.py`` and
  ``loss/memory.py`` (§2.4), which follow CRD: Tian Y, Krishnan D, Isola P. Contrastive Representation
  Distillation. ICLR 2020; HobbitLong/RepDistiller ``crd/memory.py`` @ 97c4c00, ``crd/criterion.py`` @ 1fb2343.

What follows the sources exactly:
* :func:`mvms_loss` is MVMS-net's ``KdLoss``: a *softmax* KD over the classes even though the task is
  multi-label (softmax ties the labels together; §1.1, §1.4 item 5), kept for fidelity.
* :class:`ContrastiveLeadTransfer` is CRD as MVKT uses it (§2.4): Linear + L2-norm heads on both sides (both
  trainable), one per-record memory bank per side (uniform init, momentum update, re-normalised), scores
  exp(<bank row, embedding>/T) divided by a Z fixed on the first batch, NCE with P_n = 1/n_data, the two
  directions summed. ``mlkd_loss(compat=True)`` reproduces the official MLKD value.

Deviations, on purpose:
* MLKD (``compat=False``, the default): the official code divides the *probabilities* by T after the sigmoid,
  which only scales the loss by 1/T, and its ``KLDivLoss`` 'mean' reduction adds a factor 1/2 (§2.2, §2.6
  item 1). Here T divides the logits (it softens, as "KD" and ``kd_T`` intend, §4 item 2) and the loss is
  multiplied by T² (Hinton's scaling, §3), so gradients keep their size when T changes. §4 item 2 leaves the
  T² open; with it, MLKD equals :func:`kd_loss` ``multi_label=True`` at the same T, one definition of
  "multi-label KD" rather than two. At MVKT's shipped T = 1 the T² is 1 and the only difference from the
  official value is its factor 1/2, which can be folded into the weight α.
* Negatives for CLT are drawn by the caller (:func:`sample_negatives`), not by a dataset: uniform over the
  other records (CRD's default), or excluding records that share a positive label with the anchor, MVKT's
  "disease-aware" negatives done for multi-label data. The official bucketing by first label is broken on
  PTB-XL (§2.6 item 2); the official code samples among records whose first label differs.
* Scores and the NCE are computed in float32 with autocast off: exp(1/0.07) ≈ 1.6e6 overflows float16.
* Under DDP (``gather``) Z and the bank update use the global batch, so every rank keeps the same banks; a
  bank row written twice in one (gathered) batch takes its last occurrence, so the update is deterministic.
* The teacher's logits and features are detached here: in both methods the teacher is frozen (§1.2, §2.3).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_loss", "mvms_loss", "mlkd_loss", "ContrastiveLeadTransfer", "sample_negatives"]

NCE_EPS = 1e-7  # CRD's eps in the NCE denominators (§2.4)
MLKD_COMPAT_EPS = 1e-8  # the official MLKD's eps added to the scaled probabilities (§2.2)


def _bernoulli_kl(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Per-element KL(Bern(sigmoid(t)) ‖ Bern(sigmoid(s))), from log-sigmoids so it stays finite for any logit."""
    log_ps, log_qs = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)  # log p_s, log(1 - p_s)
    log_pt, log_qt = F.logsigmoid(teacher_logits), F.logsigmoid(-teacher_logits)
    return log_pt.exp() * (log_pt - log_ps) + log_qt.exp() * (log_qt - log_qs)


def _softmax_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) over the class axis, summed over classes, divided by the batch size."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    return float(temperature)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, *, multi_label: bool,
            temperature: float = 2.0) -> Tensor:
    """Classic KD (Hinton), T²-scaled, KL(teacher ‖ student) at temperature T on the logits ``(B, C)``.

    Multi-label: per-class Bernoulli KL between sigmoid(t/T) and sigmoid(s/T), summed over classes, mean over
    the batch (each label its own two-outcome distribution, §3). Multi-class: softmax KL, batchmean. T² keeps
    the gradient size independent of T (the soft targets' gradients shrink as 1/T²). The teacher is detached."""
    t = _check_temperature(temperature)
    teacher_logits = teacher_logits.detach()
    if multi_label:
        kl = _bernoulli_kl(student_logits / t, teacher_logits / t).sum(dim=1).mean()
    else:
        kl = _softmax_kl(student_logits, teacher_logits, t)
    return kl * t * t


def mvms_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *, alpha: float = 0.5,
              temperature: float = 2.0) -> Tensor:
    """MVMS-net's ``KdLoss`` (§1.1): alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) batchmean + (1 − alpha)·BCE.

    The BCE is with logits on the hard (multi-hot) ``targets``, mean over batch x classes. The KD term is a
    softmax over the classes, as the official code does, although the task is multi-label."""
    t = _check_temperature(temperature)
    kl = _softmax_kl(student_logits, teacher_logits.detach(), t)
    bce = F.binary_cross_entropy_with_logits(student_logits, targets.to(student_logits.dtype))
    return alpha * t * t * kl + (1.0 - alpha) * bce


def mlkd_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0,
              compat: bool = False) -> Tensor:
    """MVKT-ECG's multi-label KD (MLKD): per-class Bernoulli KL(teacher ‖ student), summed over classes, mean
    over the batch.

    ``compat=False`` (default): T divides the logits and the loss is multiplied by T², i.e. exactly
    ``kd_loss(multi_label=True)`` (see the module doc for why T² was chosen).

    ``compat=True`` gives the official code's value (§2.2): sigmoid first, then both [p, 1 − p] pairs divided
    by T (plus 1e-8) and fed to a per-class ``KLDivLoss`` with 'mean' reduction over the B x 2 entries, summed
    over classes. That is (1/(2T))·(the Bernoulli KL above at T = 1), up to the 1e-8 terms: T only rescales."""
    t = _check_temperature(temperature)
    teacher_logits = teacher_logits.detach()
    if not compat:
        return kd_loss(student_logits, teacher_logits, multi_label=True, temperature=t)
    p_s, p_t = torch.sigmoid(student_logits), torch.sigmoid(teacher_logits)
    q_s = torch.stack([p_s, 1 - p_s], dim=-1) / t + MLKD_COMPAT_EPS  # (B, C, 2)
    q_t = torch.stack([p_t, 1 - p_t], dim=-1) / t + MLKD_COMPAT_EPS
    per_entry = q_t * (q_t.log() - q_s.log())
    return per_entry.mean(dim=(0, 2)).sum()  # 'mean' over B x 2 for each class, then the sum over classes


class ContrastiveLeadTransfer(nn.Module):
    """MVKT-ECG's contrastive lead transfer (CLT) = CRD's NCE objective with per-record memory banks (§2.4).

    State: two trainable heads ``embed_s`` (student_dim → embed_dim) and ``embed_t`` (teacher_dim → embed_dim),
    each followed by L2 normalisation; buffers ``memory_s`` (student-side bank, CRD's memory_v1) and
    ``memory_t`` (teacher-side, memory_v2), ``n_data x embed_dim``, uniform in [−s, s], s = 1/sqrt(embed_dim/3);
    and ``z`` = [Z of the student-anchor scores, Z of the teacher-anchor scores], −1 until the first batch.
    All of it is in ``state_dict``: an exact resume needs the banks and Z, not only the heads.

    ``negatives`` (K) is recorded for the caller that draws ``negatives_index``; the loss takes K from
    that tensor's width, and P_n = 1/n_data, as CRD."""

    def __init__(self, student_dim: int, teacher_dim: int, n_data: int, *, embed_dim: int = 128,
                 negatives: int = 1024, temperature: float = 0.07, momentum: float = 0.5,
                 gather: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        if n_data < 2:
            raise ValueError(f"CLT needs at least two records in the memory bank, not {n_data}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], not {momentum}")
        self.n_data, self.embed_dim, self.negatives = int(n_data), int(embed_dim), int(negatives)
        self.temperature, self.momentum = _check_temperature(temperature), float(momentum)
        self.gather = gather
        self.embed_s = nn.Linear(student_dim, self.embed_dim)
        self.embed_t = nn.Linear(teacher_dim, self.embed_dim)
        bound = 1.0 / math.sqrt(self.embed_dim / 3)
        self.register_buffer("memory_s", torch.rand(self.n_data, self.embed_dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("memory_t", torch.rand(self.n_data, self.embed_dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("z", torch.full((2,), -1.0))

    def _gather(self, x: Tensor) -> Tensor:
        return x if self.gather is None else self.gather(x)

    def _scores(self, bank: Tensor, v: Tensor, rows: Tensor) -> Tensor:
        """exp(<bank[rows], v>/T) ``(B, K + 1)``; bank rows are a detached copy, so the update cannot alter them."""
        weight = bank.index_select(0, rows.reshape(-1)).detach().view(rows.shape[0], rows.shape[1], -1)
        return torch.exp(torch.bmm(weight, v.unsqueeze(2)).squeeze(2) / self.temperature)

    def _nce(self, scores: Tensor) -> Tensor:
        """CRD's NCE of ``scores (B, 1 + K)`` (the positive first): −(Σ log D1 + Σ log D0) / B."""
        k = scores.shape[1] - 1
        noise = k / self.n_data  # K·P_n with P_n uniform
        log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
        log_d0 = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
        return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]

    @torch.no_grad()
    def _set_z(self, out_s: Tensor, out_t: Tensor) -> None:
        """Fix Z = mean(exp-scores)·n_data from the first (global) batch, once per direction (as CRD). Every rank
        holds the same Z (set from the global batch, or loaded from one checkpoint), so all ranks take the
        gather here on the same step and the collectives stay in step."""
        for i, out in enumerate((out_s, out_t)):
            if self.z[i] < 0:
                self.z[i] = self._gather(out.detach()).mean() * self.n_data

    @torch.no_grad()
    def _update(self, index: Tensor, v_s: Tensor, v_t: Tensor) -> None:
        """bank[y] ← normalise(m·bank[y] + (1 − m)·v) at the rows of the (global) batch; other rows untouched."""
        index = self._gather(index.reshape(-1))
        v = self._gather(torch.stack([v_s.detach(), v_t.detach()], dim=1))  # one collective for both sides
        positions = torch.arange(index.numel(), device=index.device)
        last = torch.full((self.n_data,), -1, dtype=torch.long, device=index.device)
        last.scatter_reduce_(0, index, positions, reduce="amax")
        keep = last[index] == positions  # a row written twice takes its last occurrence
        rows, v = index[keep], v[keep.to(v.device)]
        for bank, new in ((self.memory_s, v[:, 0]), (self.memory_t, v[:, 1])):
            mixed = bank.index_select(0, rows) * self.momentum + new.to(bank.dtype) * (1 - self.momentum)
            bank.index_copy_(0, rows, F.normalize(mixed, dim=1))

    def forward(self, f_s: Tensor, f_t: Tensor, index: Tensor, negatives_index: Tensor) -> Tensor:
        """CLT loss of pooled features ``f_s (B, student_dim)`` and ``f_t (B, teacher_dim)`` (the teacher's
        is detached here), records at bank rows ``index (B,)``, negatives at rows ``negatives_index (B, K)``.

        NCE(student anchor vs teacher bank) + NCE(teacher anchor vs student bank), with the banks as they
        were before this batch; then both banks are updated at ``index`` (under no_grad)."""
        if index.shape[0] != f_s.shape[0] or negatives_index.shape[0] != f_s.shape[0]:
            raise ValueError(f"index {tuple(index.shape)} and negatives_index {tuple(negatives_index.shape)} "
                             f"must have one row per record of the batch ({f_s.shape[0]})")
        index = index.long().to(self.memory_s.device)
        rows = torch.cat([index.view(-1, 1), negatives_index.long().to(index.device)], dim=1)  # positive first
        dtype = self.embed_s.weight.dtype  # float32 under autocast (whose parameters stay float32)
        with torch.autocast(device_type=f_s.device.type, enabled=False):
            v_s = F.normalize(self.embed_s(f_s.flatten(1).to(dtype)), dim=1)
            v_t = F.normalize(self.embed_t(f_t.detach().flatten(1).to(dtype)), dim=1)
            out_s = self._scores(self.memory_t, v_s, rows)  # student anchor vs the teacher bank
            out_t = self._scores(self.memory_s, v_t, rows)  # teacher anchor vs the student bank
            self._set_z(out_s, out_t)
            loss = self._nce(out_s / self.z[0]) + self._nce(out_t / self.z[1])
        self._update(index, v_s, v_t)
        return loss


def sample_negatives(n_data: int, index: Tensor, negatives: int, *, generator: torch.Generator | None = None,
                     exclude: Tensor | None = None) -> Tensor:
    """Bank rows ``(B, K)`` of negatives for the anchors at rows ``index (B,)``: uniform over ``0..n_data−1``
    (CRD's default) without the anchor's own row, and without the rows where ``exclude (B, n_data)`` is True
    (e.g. records sharing a positive label with the anchor, MVKT's disease-aware negatives, §4 item 3).

    Without replacement when a row's pool holds at least K records, with replacement otherwise (as the
    official dataset's ``np.random.choice``). Uses ``generator`` (on ``index``'s device) or the global RNG."""
    index = index.long().view(-1)
    b = index.numel()
    allowed = torch.ones(b, n_data, dtype=torch.bool, device=index.device)
    if exclude is not None:
        if tuple(exclude.shape) != (b, n_data):
            raise ValueError(f"exclude must be (B, n_data) = ({b}, {n_data}), not {tuple(exclude.shape)}")
        allowed &= ~exclude.to(device=index.device, dtype=torch.bool)
    allowed[torch.arange(b, device=index.device), index] = False
    pool = allowed.sum(dim=1)
    if bool((pool == 0).any()):
        raise ValueError("an anchor has no record left to draw negatives from")
    # without replacement: the K largest of uniform keys over the allowed rows (much faster than multinomial
    # without replacement for a bank of 10^4 records); rows whose pool is smaller than K are redrawn below
    keys = torch.rand(b, n_data, generator=generator, device=index.device).masked_fill_(~allowed, -1.0)
    out = keys.topk(negatives, dim=1).indices if negatives <= n_data else \
        torch.empty(b, negatives, dtype=torch.long, device=index.device)
    small = pool < negatives
    if bool(small.any()):
        out[small] = torch.multinomial(allowed[small].float(), negatives, replacement=True, generator=generator)
    return out
