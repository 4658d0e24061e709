"""Knowledge distillation: the loop behind ``ecgtool distill``.

A :class:`Distiller` is a :class:`~ecgtool.train.loop.Trainer` of the student (the same validation, best
epoch, thresholds tuned on validation, resume, DDP and precision) whose batches also feed a frozen teacher.
The loader reads every record twice, as the student's input and as the teacher's (``ChunkLoader`` with a
tuple of specs; each chunk is decoded once), and a training crop cuts the same window of both. The teacher is
rebuilt from its checkpoint — its own leads, normalisation statistics and input view — put in eval mode,
with no gradient; it never enters the optimiser or DDP.

The student reads ``student_leads`` (default: every lead of the store) found by name, so a student of lead I
is distilled from a 12-lead teacher on the same store, and its checkpoint's input spec names lead I: ``eval``,
``explain`` and ``profile`` then select that lead from any store holding it.

Methods (losses in ``losses.py``; facts and deviations in docs/distill-methods.md):

* ``kd``: ``α·T²·KL(teacher‖student) + (1−α)·hard``, per-class Bernoulli for multi-label tasks, softmax for
  multi-class ones; α = 0.5, T = 2 (our choice: MVMS-ECG's values; Hinton leaves them to the task).
* ``mvms`` (MVMS-ECG): ``α·T²·KL(softmax(t/T)‖softmax(s/T)) + (1−α)·BCE``, α = 0.5, T = 2, and Gaussian input
  noise of std 0.1 added to the teacher's and the student's inputs alike (the same noise on the leads they
  share) — in training only: the official code adds it at evaluation too (§1.2), which makes its test
  scores noisy.
* ``mvkt`` (MVKT-ECG): ``γ·BCE + α·MLKD + β·CLT``, γ (``hard_weight``) = 1, α = 1, β = 0.8, T = 1; CLT on the pooled features
  (``forward_features``) of both networks, projection heads to 128-d, a per-record memory bank (momentum
  0.5), 1024 negatives drawn among the records that share no label with the anchor, temperature 0.07.

"hard" is the classification loss ``train`` uses (BCE-with-logits for multi-label, cross-entropy for
multi-class). The history logs it as ``train_loss`` (comparable with ``val_loss``) and each distillation term
unweighted as ``train_<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ecgtool.checkpoint import Checkpoint
from ecgtool.data.inputs import InputSpec
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.provenance import fingerprint
from ecgtool.train import distributed
from ecgtool.train.choices import DISTILL_METHODS
from ecgtool.train.distill.losses import ContrastiveLeadTransfer, kd_loss, mlkd_loss, mvms_loss, sample_negatives
from ecgtool.train.engine import check_number
from ecgtool.train.loop import TrainArgs, Trainer, auxiliary_losses

# Each method's weights and temperature (None in DistillArgs: the method's); see the module docstring.
METHOD_DEFAULTS = {
    "kd": {"alpha": 0.5, "temperature": 2.0, "noise_std": 0.0},
    "mvms": {"alpha": 0.5, "temperature": 2.0, "noise_std": 0.1},
    "mvkt": {"alpha": 1.0, "temperature": 1.0, "noise_std": 0.0, "beta": 0.8, "hard_weight": 1.0},
}
CLT_DEFAULTS = {"embed_dim": 128, "negatives": 1024, "nce_temperature": 0.07, "momentum": 0.5,
                "negatives_from": "other-labels"}  # MVKT-ECG's CLT (CRD); "uniform": CRD's own sampling


@dataclass
class DistillArgs(TrainArgs):
    """Train's arguments (``model`` is the student) plus the teacher and the method's."""

    teacher: str = ""
    method: str = "kd"
    student_leads: list | None = None  # None: every lead of the training store
    alpha: float | None = None
    temperature: float | None = None
    beta: float | None = None  # CLT's weight (mvkt)
    hard_weight: float | None = None  # the classification loss's weight, MVKT's γ (train's gamma is the step decay)
    noise_std: float | None = None
    clt: dict = field(default_factory=dict)  # CLT_DEFAULTS overrides (mvkt)

    def with_defaults(self) -> DistillArgs:
        if self.method not in METHOD_DEFAULTS:
            raise ConfigError(f"unknown distillation method {self.method!r}; choose from {', '.join(DISTILL_METHODS)}", "method")
        defaults = METHOD_DEFAULTS[self.method]
        unknown = sorted(set(self.clt) - set(CLT_DEFAULTS))
        if unknown:
            raise ConfigError(f"CLT has no setting {', '.join(unknown)}; it takes {', '.join(CLT_DEFAULTS)}", "clt")
        if self.clt and self.method != "mvkt":
            raise ConfigError(f"CLT settings apply to --method mvkt, not {self.method}", "clt")
        for name in ("beta", "hard_weight"):  # mvkt's terms: kd and mvms have neither, and would ignore the value
            if getattr(self, name) is not None and name not in defaults:
                raise ConfigError(f"{name} applies to --method mvkt, not {self.method}", name)
        return replace(self, **{k: defaults.get(k) if getattr(self, k) is None else getattr(self, k)
                                for k in ("alpha", "temperature", "beta", "hard_weight", "noise_std")},
                       clt={**CLT_DEFAULTS, **self.clt} if self.method == "mvkt" else {})


# Softening temperatures: logits / T must stay finite (T = 1e-320 made the kd loss NaN), and the soft-target term is
# scaled by T^2. Distillation uses T from 1 to 20 (Hinton et al.), sharpening below 1 rarely under 0.1, and CRD's
# contrastive temperature is 0.07: bounds no run comes near.
TEMPERATURE_RANGE = (0.01, 1000.0)
MIN_NCE_TEMPERATURE = 1e-3


def _check_weights(args: DistillArgs) -> None:
    for name in ("alpha", "beta", "hard_weight", "noise_std"):
        value = getattr(args, name)
        if value is not None:  # alpha mixes soft and hard targets in kd and mvms, weighs MLKD alone in mvkt
            check_number(name, value, high=1.0 if name == "alpha" and args.method != "mvkt" else None)
    if args.temperature is not None:
        check_number("temperature", args.temperature, low=TEMPERATURE_RANGE[0], high=TEMPERATURE_RANGE[1])
    clt = args.clt
    if clt:
        for name in ("embed_dim", "negatives"):
            if isinstance(clt[name], bool) or not isinstance(clt[name], int) or clt[name] < 1:
                raise ConfigError(f"CLT {name} must be a whole number of at least 1, not {clt[name]!r}", "clt")
        nce = clt["nce_temperature"]
        if isinstance(nce, bool) or not isinstance(nce, (int, float)) or not MIN_NCE_TEMPERATURE <= nce <= TEMPERATURE_RANGE[1]:
            raise ConfigError(f"CLT nce_temperature must be a number from {MIN_NCE_TEMPERATURE:g} to {TEMPERATURE_RANGE[1]:g}, "
                              f"not {nce!r}", "clt")
        if not isinstance(clt["momentum"], (int, float)) or not 0 <= clt["momentum"] < 1:
            raise ConfigError(f"CLT momentum must be in [0, 1), not {clt['momentum']!r}", "clt")
        if clt["negatives_from"] not in ("other-labels", "uniform"):
            raise ConfigError(f"CLT negatives_from is other-labels or uniform, not {clt['negatives_from']!r}", "clt")


class _StudentWithCLT(nn.Module):
    """The student and CLT's projection heads as one module, so that DDP synchronises the heads' gradients
    with the student's: ``(x, teacher features, bank rows, negatives) -> (logits, CLT loss)``."""

    def __init__(self, student: nn.Module, clt: ContrastiveLeadTransfer):
        super().__init__()
        self.student, self.clt = student, clt

    def forward(self, x, teacher_features, index, negatives):
        features = self.student.forward_features(x)
        return self.student.forward_head(features), self.clt(features.float(), teacher_features, index, negatives)


class Distiller(Trainer):
    """A student distilled from ``args.teacher`` on a training store (and validated on a validation store)."""

    kind = "student"
    step = "distill"

    def __init__(self, args: DistillArgs, train_path, val_path, out, *, overwrite: bool = False,
                 on_step: Callable | None = None, on_epoch: Callable | None = None, env: distributed.DistEnv | None = None):
        args = args.with_defaults()
        _check_weights(args)
        if args.augment:
            raise ConfigError("distill does not augment: the teacher and the student see the same records", "augment")
        if not args.teacher:
            raise ConfigError("distillation needs a teacher checkpoint", "teacher")
        self.teacher_ckpt = teacher = Checkpoint.load(args.teacher)
        if teacher.is_encoder:
            raise ConfigError(f"the teacher {teacher.name} is an encoder: it has no classifier head to distil from; "
                              "train it first", "teacher")
        self.teacher_fingerprint = fingerprint(args.teacher)
        super().__init__(args, train_path, val_path, out, overwrite=overwrite, on_step=on_step, on_epoch=on_epoch, env=env,
                         more_inputs=(args.teacher,))

    # -- the hooks of Trainer ----------------------------------------------------------------------
    def input_spec(self, spec: InputSpec) -> InputSpec:
        """The student's input: ``student_leads`` of the store (by name), and the teacher checked against it."""
        s, teacher, args = self.train_store, self.teacher_ckpt, self.args
        if tuple(teacher.classes) != tuple(s.classes) or teacher.multi_label != s.multi_label:
            raise ConfigError(f"the teacher {teacher.name} classifies {', '.join(teacher.classes)}; {s.path} holds "
                              f"{', '.join(s.classes)}: distil on a store of the teacher's task", "teacher")
        try:
            teacher.input.check(s, "the training store", windows=True, model=f"the teacher {teacher.name}")
            if self.val_store is not None:
                teacher.input.check(self.val_store, "the validation store", windows=True, model=f"the teacher {teacher.name}")
        except EcgtoolError as e:
            raise ConfigError(str(e), "teacher") from None
        if teacher.input.samples != spec.samples:
            fix = ("no --crop" if teacher.input.samples == s.n_samples else f"--crop {teacher.input.samples}"
                   if teacher.input.samples < s.n_samples else "a store of its record length")
            raise ConfigError(f"the teacher {teacher.name} takes inputs of {teacher.input.samples} samples and sees the "
                              f"student's window: distil with {fix}", "teacher")
        if args.student_leads is not None and not list(args.student_leads):
            raise ConfigError(f"no student lead named: give at least one of the training store's ({', '.join(s.leads)}), "
                              "or none for all of them", "student_leads")
        leads = list(s.leads if args.student_leads is None else args.student_leads)
        missing = [lead for lead in leads if lead not in s.leads]
        if missing or len(set(leads)) != len(leads):
            what = f"lacks lead(s) {', '.join(missing)}" if missing else "is asked for a lead twice"
            raise ConfigError(f"the training store {s.path} {what} (student leads {', '.join(leads)}; it has "
                              f"{', '.join(s.leads)})", "student_leads")
        norm = dict(spec.normalisation)
        if norm.get("method") == "dataset":  # the student's statistics, in its own lead order
            index = [list(s.leads).index(lead) for lead in leads]
            norm = {**norm, "mean": [norm["mean"][i] for i in index], "std": [norm["std"][i] for i in index]}
        return replace(spec, leads=tuple(leads), normalisation=norm)

    def loader_specs(self):
        return (self.input, self.teacher_ckpt.input)

    def parameter_groups(self, model: nn.Module) -> list:
        groups = super().parameter_groups(model)
        if self.clt is None:
            return groups
        groups = list(groups) if isinstance(groups, list) else [{"params": list(groups)}]
        return groups + [{"params": list(self.clt.parameters()), "lr": self.args.lr}]

    def trained_module(self) -> nn.Module:
        return self.model if self.clt is None else _StudentWithCLT(self.model, self.clt)

    def start(self, module, loader, parameter_groups) -> None:
        """Build the teacher and (mvkt) CLT on the device before the loop wraps the student."""
        args = self.args
        teacher = self.teacher_ckpt.build_model().to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.clt = None
        if args.method == "mvkt":
            c = args.clt
            self.bank_rows = np.asarray(self.subset.indices)  # bank row i <-> store row bank_rows[i]
            self.clt = ContrastiveLeadTransfer(
                module.num_features, teacher.num_features, len(self.bank_rows), embed_dim=c["embed_dim"],
                negatives=c["negatives"], temperature=c["nce_temperature"], momentum=c["momentum"],
                gather=distributed.all_gather if self.env.active else None).to(self.device)
            labels = torch.from_numpy(self.train_store.labels[self.bank_rows].astype(np.float32))
            self.bank_labels = labels.to(self.device) if c["negatives_from"] == "other-labels" else None
        self.noise_index = self._shared_leads()
        self.distillation = self._record()
        super().start(module, loader, parameter_groups)

    def batch_loss(self, x, y, rows, epoch, step):
        args = self.args
        xs, xt = x
        if args.noise_std:
            xs, xt = self._add_noise(xs, xt)
        with torch.no_grad(), self.autocast():
            teacher_features = self.teacher.forward_features(xt)
            teacher_logits = self.teacher.forward_head(teacher_features).float()
        soft = self.multi_label
        with self.autocast():
            if self.clt is None:
                logits = self.net(xs)
                clt = None
            else:
                index = torch.as_tensor(np.searchsorted(self.bank_rows, rows), device=self.device)
                logits, clt = self.net(xs, teacher_features.float(), index, self._negatives(index))
            logits = logits.float()
            hard = self.criterion(logits, y if soft else y.argmax(dim=1))
        t = args.temperature
        if args.method == "kd":
            term = kd_loss(logits, teacher_logits, multi_label=self.multi_label, temperature=t)
            objective = args.alpha * term + (1 - args.alpha) * hard
            terms = {"kd": term}
        elif args.method == "mvms":
            term = mvms_loss(logits, teacher_logits, y, alpha=1.0, temperature=t)  # alpha 1: T²·softmax-KL alone
            objective = args.alpha * term + (1 - args.alpha) * hard
            terms = {"kd": term}
        else:
            term = mlkd_loss(logits, teacher_logits, temperature=t)
            objective = args.hard_weight * hard + args.alpha * term + args.beta * clt
            terms = {"mlkd": term, "clt": clt}
        aux = auxiliary_losses(self.model)  # a student's own extra terms (as train adds them)
        if aux:
            objective = objective + sum(term.float() for term in aux.values())
        return objective, hard, {**{k: v.detach() for k, v in terms.items()}, **aux}

    def resume_state(self) -> dict:
        state = super().resume_state()
        if self.clt is not None:
            state["clt"] = {k: v.detach().cpu().clone() for k, v in self.clt.state_dict().items()}
        return state

    def restore(self, ckpt: Checkpoint) -> None:
        super().restore(ckpt)
        if self.clt is not None:
            self.clt.load_state_dict(ckpt.resume["clt"])

    def check_resumable(self, ckpt: Checkpoint, path) -> None:
        super().check_resumable(ckpt, path)
        if (ckpt.distillation or {}).get("teacher", {}).get("fingerprint") != self.teacher_fingerprint:
            raise EcgtoolError(f"{path} was distilled from another teacher than {self.args.teacher} (its contents "
                               "differ); resume with the same one")

    def provenance_extra(self) -> dict:
        return {"method": self.args.method, "teacher": {"path": str(self.args.teacher), "fingerprint": self.teacher_fingerprint}}

    # -- pieces -------------------------------------------------------------------------------------
    def _record(self) -> dict:
        from pathlib import Path

        args, teacher = self.args, self.teacher_ckpt
        hyper = {k: getattr(args, k) for k in ("alpha", "temperature", "noise_std")}
        if args.method == "mvkt":
            hyper.update(beta=args.beta, hard_weight=args.hard_weight, **args.clt)
        return {"method": args.method, "hyperparameters": hyper,
                "teacher": {"path": str(Path(args.teacher).resolve()), "fingerprint": self.teacher_fingerprint,
                            "model": teacher.model.name, "leads": list(teacher.input.leads),
                            "samples": teacher.input.samples}}

    def _shared_leads(self) -> list[int] | None:
        """Where the student's leads sit in the teacher's input, when both are raw leads (so that one noise
        draw serves both, as MVMS adds the same noise to both inputs); None otherwise."""
        s, t = self.input, self.teacher_ckpt.input
        if s.channels != len(s.leads) or t.channels != len(t.leads) or not set(s.leads) <= set(t.leads):
            return None
        return [list(t.leads).index(lead) for lead in s.leads]

    def _add_noise(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian noise of std ``noise_std`` on the lead channels, drawn for the global batch on every rank
        (as one process would) from the global generator, which the resume checkpoint keeps."""
        std, draws = self.args.noise_std, self._global_draws()
        n = draws[0] if draws else len(xt)
        part = draws[1] if draws else slice(None)
        nt = len(self.teacher_ckpt.input.leads)
        noise_t = (torch.randn((n, nt, xt.shape[-1])) * std)[part].to(xt.device)
        xt = torch.cat([xt[:, :nt] + noise_t, xt[:, nt:]], dim=1)
        ns = len(self.input.leads)
        if self.noise_index is not None:
            noise_s = noise_t[:, self.noise_index]
        else:
            noise_s = (torch.randn((n, ns, xs.shape[-1])) * std)[part].to(xs.device)
        return torch.cat([xs[:, :ns] + noise_s, xs[:, ns:]], dim=1), xt

    def _negatives(self, index: torch.Tensor) -> torch.Tensor:
        """CLT's negatives for this rank's anchors, drawn for the global batch (every rank the same draws)."""
        k = self.args.clt["negatives"]
        every = distributed.all_gather(index) if self.env.active else index
        exclude = None
        if self.bank_labels is not None:
            exclude = (self.bank_labels[every] @ self.bank_labels.T) > 0  # records sharing a label with the anchor
            exclude[exclude.sum(dim=1) >= len(self.bank_rows) - 1] = False  # none left: any other record
        draws = sample_negatives(len(self.bank_rows), every.cpu(), k, exclude=None if exclude is None else exclude.cpu())
        mine = self.loader.rank_slice(len(every)) if self.env.active else slice(None)
        return draws[mine].to(self.device)
