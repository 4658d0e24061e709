"""Supervised training: the loop behind ``ecgtool train``.

AdamW, a per-step cosine (or step) learning-rate schedule, BCE-with-logits for
multi-label tasks and cross-entropy for multi-class ones, validation after
every epoch, the best epoch by validation macro AUC kept, and per-class
decision thresholds tuned on validation (max F1) and stored in the checkpoint.

The loop itself — devices, DDP, mixed precision, the schedule, pre-emption and
exact ``--resume`` — is :class:`ecgtool.train.engine.Engine`'s, shared with
``pretrain`` and ``distill``; this module adds what is supervised: the model,
its loss, validation, the best epoch and the thresholds.

A model may ask for loss terms besides the classification loss (the dual-branch
network's correlation loss between its branches): ``EcgClassifier.auxiliary_losses``
returns them after each training forward pass, already weighted by the model;
the step minimises the classification loss plus their sum, and the history logs
each term's epoch mean as ``train_<name>`` next to ``train_loss`` (the
classification loss alone). Their partial sums are part of the resume position,
so a resumed run logs exactly what the uninterrupted one does.

With ``label_fraction`` below 1 the loader iterates over a nested, patient-wise, label-stratified
subset of the training store (``data.subsets``), recorded in ``train_args["label_subset"]`` (size and a
hash of its record ids) and checked by ``--resume``. ``augment`` names augmentations (``augment.py``)
applied to each training batch on the device after the crop — never to validation — from generators
seeded by (seed, epoch, step), so a resumed run repeats them.

With ``crop`` the model sees a random window of that many samples of each
record per step (the PTB-XL benchmark trains on 2.5 s crops this way) and is
validated on sliding windows with half-crop stride, aggregated by the maximum
probability, as ``eval`` applies it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from ecgtool.checkpoint import Checkpoint, ModelSpec, pretraining_overlap
from ecgtool.data.inputs import InputSpec, check_labels, classes_without_both, preprocessing_differences
from ecgtool.data.loader import ChunkLoader, auto_memory_budget
from ecgtool.data.store import open_store
from ecgtool.data.subsets import check_fraction, label_subset
from ecgtool.data.views import data_view
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.eval.metrics import macro_auc
from ecgtool.eval.predict import default_aggregate, predict, windows_for
from ecgtool.eval.thresholds import tune_thresholds
from ecgtool.models import create_model, model_info
from ecgtool.provenance import make_entry
from ecgtool.train import distributed, transfer
from ecgtool.train.augment import Augmenter, resolve_augment
from ecgtool.train.engine import Engine, check_number, check_optimisation_args, check_value_types, resume_path, without_speed

@dataclass
class TrainArgs:
    model: str
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    workers: int = 2  # loader threads decoding store chunks
    loader: str = "auto"  # memory | stream | auto (memory when the store fits the budget)
    crop: int = 0  # random training crops of this many samples; 0 = whole records
    label_fraction: float = 1.0  # train on this fraction of the store (data.subsets: nested, patient-wise, stratified)
    augment: list = field(default_factory=list)  # train.augment specs: "NAME[:KEY=VALUE...]" or dicts
    precision: str = "fp32"  # autocast dtype: fp32 (off), bf16 or fp16 (with a grad scaler)
    compile: bool = False  # torch.compile the model for training
    sync_bn: bool = False  # SyncBatchNorm across DDP ranks (CUDA)
    model_kwargs: dict = field(default_factory=dict)
    # transfer (train/transfer.py): start from a checkpoint's weights; train the head only; the encoder's own lr
    init: str | None = None
    freeze_encoder: bool = False
    encoder_lr: float | None = None


def check_train_args(args: TrainArgs) -> None:
    """Refuse numeric arguments no run can use (NaN, infinities, negatives) before anything is opened."""
    check_optimisation_args(args)
    if args.encoder_lr is not None:
        check_number("encoder_lr", args.encoder_lr, open_low=True)
        if args.freeze_encoder:
            raise ConfigError("encoder_lr: a frozen encoder (freeze_encoder) is not trained, so it takes no learning rate",
                              "encoder_lr")
    check_fraction(args.label_fraction)
    resolve_augment(args.augment)


def auxiliary_losses(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The loss terms the model's last training forward pass asks for besides the classification loss
    (``EcgClassifier.auxiliary_losses``), looked up on the model itself through a ``torch.compile``
    wrapper (``_orig_mod``) and a DDP wrapper (``module``); none for a model without the method."""
    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, torch.nn.parallel.DistributedDataParallel):
        inner = inner.module
    get = getattr(inner, "auxiliary_losses", None)
    return get() if get is not None else {}


class Trainer(Engine):
    """A classifier on a training store (and a validation store) → the best epoch's checkpoint."""

    loss_label = "classification loss"
    term_label = "auxiliary loss"
    kind = "classifier"  # the checkpoint's kind, and its provenance step below
    step = "train"

    def __init__(self, args: TrainArgs, train_path, val_path, out, *, overwrite: bool = False,
                 on_step: Callable | None = None, on_epoch: Callable | None = None, env: distributed.DistEnv | None = None,
                 more_inputs: tuple = ()):
        check_train_args(args)
        super().__init__(args, out, (train_path, val_path, args.init, *more_inputs), overwrite=overwrite, on_step=on_step,
                         on_epoch=on_epoch, env=env)
        env = self.env
        self.train_store = open_store(train_path)
        self.val_store = open_store(val_path) if val_path else None
        if self.val_store is not None and len(self.val_store) == 0:
            raise ConfigError(f"the validation store {val_path} has no records", "val_store")
        s = self.train_store
        if len(s) == 0:
            raise EcgtoolError(f"{s.path} has no records")
        self.subset = label_subset(s, args.label_fraction, args.seed)
        n_train = len(self.subset.indices)
        if env.active and n_train < args.batch_size:
            raise EcgtoolError(f"{s.path} has {n_train} records{' in the label fraction' if args.label_fraction < 1 else ''}, "
                               f"fewer than one global batch of {args.batch_size}")
        self.multi_label = s.multi_label
        if args.crop > s.n_samples:
            raise ConfigError(f"crop {args.crop} is longer than the {s.n_samples} samples of {s.path}'s records", "crop")
        self.input = self.input_spec(InputSpec.of_store(s, data_view(model_info(args.model)["input_view"]),
                                                        samples=args.crop or None))
        self.windows = None
        if self.val_store is not None:
            check_labels(self.val_store, s.classes, s.multi_label, "validation store")
            self.input.check(self.val_store, "validation store", windows=True)
            self.windows = windows_for(self.input.samples, self.val_store.n_samples, aggregate=default_aggregate(s.multi_label))
            if len(classes_without_both(self.val_store)) == len(self.val_store.classes):
                # the best epoch is chosen by that AUC: without one, the run could only fail at its end
                raise EcgtoolError(undefined_auc(self.val_store.path, "would be"))
        if not self.multi_label:
            for store in filter(None, (s, self.val_store)):
                if (store.labels.sum(axis=1) != 1).any():
                    raise EcgtoolError(f"{store.path} is multi-class but has records without exactly one label; rerun prep without --keep-unlabelled")
        # not errors (a subset of a dataset may lack a rare class), but never silent
        self.warnings = classes_without_both(s, "training store") + [
            f"class {c} has no record in the {args.label_fraction:g} label fraction of {s.path}" for c in self.subset.missing_classes] + (
            [w + ": it is left out of the validation macro AUC" for w in classes_without_both(self.val_store, "validation store")]
            if self.val_store is not None else [])
        if self.val_store is not None:
            self.warnings += preprocessing_differences(s.attrs.get("preprocessing"), self.val_store, f"this {args.model}")
        torch.manual_seed(args.seed)
        check_value_types(args.model_kwargs, model_info(args.model)["default_kwargs"], "model_kwargs", args.model)
        kwargs = dict(args.model_kwargs)
        if "fs" in model_info(args.model)["default_kwargs"]:
            kwargs.setdefault("fs", s.fs)  # models whose filters or windows are in seconds get the store's rate
        try:
            model = create_model(args.model, num_classes=len(s.classes), num_leads=len(self.input.leads),
                                 num_samples=self.input.samples, **kwargs)
        except (TypeError, ValueError, RuntimeError) as e:
            if not args.model_kwargs:  # not the user's arguments: a bug, with its traceback under --debug
                raise
            given = ", ".join(f"{k}={v!r}" for k, v in args.model_kwargs.items())
            raise ConfigError(f"{given}: {args.model} cannot be built with these arguments ({type(e).__name__}: {e})",
                              "model_kwargs") from e
        self.init_record: dict | None = None  # what the checkpoint records of --init (transfer.init_record)
        self.pretraining: dict | None = None  # the pretraining record the weights inherit from --init
        self.distillation: dict | None = None  # a student's record of its teacher and method (distill)
        self.init = self._apply_init(model)
        if args.freeze_encoder:
            transfer.freeze_encoder(model)
        pin = self.device.type == "cuda"
        # drop_last keeps BatchNorm away from a final batch of one record, and every DDP rank at the same step count.
        loader = ChunkLoader(s, args.batch_size // env.world_size, spec=self.loader_specs(), shuffle=True, indices=self.subset.indices,
                                  seed=args.seed, drop_last=n_train > args.batch_size or env.active, pin_memory=pin,
                                  workers=args.workers, rank=env.rank, world_size=env.world_size, mode=args.loader,
                                  memory_budget=auto_memory_budget(env.local_world_size))
        self.val_loader = (
            ChunkLoader(self.val_store, max(args.batch_size, 256), pin_memory=pin, workers=args.workers,
                        indices=np.arange(len(self.val_store))[env.rank::env.world_size],  # each rank predicts its share
                        spec=self.input)
            if self.val_store else None
        )
        self.augment = Augmenter(args.augment, seed=args.seed, fs=self.input.fs, n_leads=len(self.input.leads),
                                 channels=self.input.channels, gather=distributed.all_gather,
                                 where=f"the {self.input.view['name']} input view of {args.model}") if args.augment else None
        self.start(model, loader, self.parameter_groups)
        self.criterion = torch.nn.BCEWithLogitsLoss() if self.multi_label else torch.nn.CrossEntropyLoss()
        self.best = {"metric": -math.inf, "epoch": None, "state": None, "val_probs": None}

    # -- what a subclass (distill) changes -------------------------------------------------------
    def input_spec(self, spec: InputSpec) -> InputSpec:
        """The model's input, given the training store's (all its leads)."""
        return spec

    def loader_specs(self):
        """What the training loader reads each record as: the model's input (``ChunkLoader``'s ``spec``)."""
        return self.input

    def parameter_groups(self, model: torch.nn.Module) -> list:
        args = self.args
        return transfer.parameter_groups(model, args.lr, args.freeze_encoder, args.encoder_lr)

    def provenance_extra(self) -> dict:
        """Further fields of this run's provenance entry."""
        return {}

    def _apply_init(self, model: torch.nn.Module) -> Checkpoint | None:
        """``init``: check the checkpoint against the model just built and load its weights but the head's."""
        if not self.args.init:
            return None
        init = Checkpoint.load(self.args.init)
        transfer.check_init(init, self.args.model, model.model_kwargs, self.input, self.train_store)
        transfer.apply_init(model, init)
        self.init_record = transfer.init_record(init)
        self.pretraining = transfer.inherited_pretraining(init)
        if not init.is_encoder:
            self.warnings.append(f"--init {init.path} is a {init.kind} checkpoint (classes {', '.join(init.classes)}): "
                                 "its head is dropped and this run's head starts afresh")
        if self.val_store is not None:
            self.warnings += [w + ": validation metrics may be optimistic"
                              for w in pretraining_overlap(init.replace(pretraining=self.pretraining), self.val_store)]
        return init

    # -- resume ----------------------------------------------------------------------------
    def check_resumable(self, ckpt: Checkpoint, path) -> None:
        if _saved_args(ckpt.train_args) != self._train_args():
            if {k: v for k, v in _saved_args(ckpt.train_args).items() if k != "label_subset"} == _args_for_checkpoint(self.args):
                raise EcgtoolError(f"{path} was trained on another label subset than --label-fraction "
                                   f"{self.args.label_fraction:g} selects now; rerun without --resume")
            raise EcgtoolError(f"{path} was written with different training options; rerun with them or without --resume")
        before = [i["fingerprint"] for i in ckpt.provenance[-1]["inputs"]]
        now = [i["fingerprint"] for i in self._provenance()[-1]["inputs"]]
        if before != now:
            raise EcgtoolError(f"{path} was trained on other stores than the ones given now; resume with the same --val and training store")
        if (ckpt.init or {}).get("fingerprint") != (self.init_record or {}).get("fingerprint"):
            raise EcgtoolError(f"{path} was started from another --init checkpoint than {self.args.init} (its contents differ); "
                               "resume with the same one")

    def restore(self, ckpt: Checkpoint) -> None:
        r = ckpt.resume
        self.model.load_state_dict(ckpt.state_dict)
        self.best = {
            "metric": r["best_metric"], "epoch": r["best_epoch"], "state": r["best_state"],
            "val_probs": None if r["best_val_probs"] is None else r["best_val_probs"].numpy(),
        }

    # -- the loop ----------------------------------------------------------------------------
    def train_mode(self) -> None:
        self.net.train()
        if self.args.freeze_encoder:
            transfer.hold_encoder_in_eval(self.model)  # the frozen encoder's BatchNorm statistics and Dropout: as in eval

    def batch_loss(self, x, y, rows, epoch, step):
        """The classification loss plus the model's auxiliary terms (``auxiliary_losses``), after augmentation."""
        if self.augment is not None:  # soft labels after mixup: cross-entropy takes class probabilities too
            x, y = self.augment(x, y, epoch, step, *self._global_draws())
        soft = self.multi_label or (self.augment is not None and self.augment.mixes_labels)
        with self.autocast():
            logits = self.net(x)
            loss = self.criterion(logits.float(), y if soft else y.argmax(dim=1))
        aux = auxiliary_losses(self.model)
        return (loss + sum(term.float() for term in aux.values()) if aux else loss), loss, aux

    def validate(self) -> tuple[dict, np.ndarray | None]:
        if self.val_loader is None:
            return {}, None
        probs, rows = predict(self.model, self.val_loader, self.device, self.multi_label, self.windows, self.on_validate)
        probs, rows = distributed.gather_rows(probs, rows)
        y = self.val_store.labels[rows]
        return {"val_loss": _prob_loss(probs, y, self.multi_label), "val_macro_auc": macro_auc(y, probs)}, probs

    def end_epoch(self, epoch: int, train_loss: float, aux: dict[str, float]) -> None:
        metrics, probs = self.validate()
        record = {"epoch": epoch + 1, "train_loss": train_loss, **{f"train_{name}": value for name, value in aux.items()},
                  "lr": self.scheduler.get_last_lr()[0], **metrics, **self.epoch_stats}
        self.history.append(record)
        # Without validation the last epoch is "best"; with it, the highest macro AUC (NaN never wins).
        score = metrics.get("val_macro_auc", epoch)
        if self.val_loader is None or (score == score and score > self.best["metric"]):
            self.best = {"metric": score, "epoch": epoch + 1, "val_probs": probs,
                         "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        self.on_epoch(record, self.best["epoch"])

    def _checkpoint(self, state_dict: dict, thresholds: dict | None, metrics: dict, resume: dict | None = None) -> Checkpoint:
        s = self.train_store
        return Checkpoint(
            kind=self.kind, model=ModelSpec(self.args.model, self.model.model_kwargs), state_dict=state_dict,
            classes=tuple(s.classes), class_descriptions=s.attrs.get("class_descriptions", {}), task=s.attrs["task"],
            multi_label=self.multi_label, input=self.input, thresholds=thresholds, train_args=self._train_args(),
            metrics=metrics, history=self.history, provenance=self._provenance(), resume=resume,
            pretraining=self.pretraining, init=self.init_record, distillation=self.distillation,
            preprocessing=self._preprocessing(),
        )

    def _preprocessing(self) -> dict | None:
        """How the training store's rows were made (its prep settings, row length and dtype): what ``predict``
        replays on raw recordings. None for a store without the record (one not written by prep)."""
        s = self.train_store
        prep = s.attrs.get("preprocessing")
        return {**prep, "dtype": str(s.signals.dtype)} if isinstance(prep, dict) else None

    def _train_args(self) -> dict:
        """The training arguments a checkpoint records (and ``--resume`` must find again), with the label subset."""
        d = _args_for_checkpoint(self.args)
        if self.args.label_fraction < 1:
            d["label_subset"] = self.subset.to_dict()
        return d

    def _provenance(self) -> list[dict]:
        inputs = [self.train_store.path] + ([self.val_store.path] if self.val_store else [])
        init = {"init": {k: self.init_record[k] for k in ("path", "fingerprint", "kind")}} if self.init_record else {}
        return list(self.train_store.attrs["provenance"]) + [make_entry(self.step, inputs, model=self.args.model, **init,
                                                                              **self.provenance_extra())]

    def resume_state(self) -> dict:
        best_probs = self.best["val_probs"]
        return {"best_metric": self.best["metric"], "best_epoch": self.best["epoch"], "best_state": self.best["state"],
                "best_val_probs": None if best_probs is None else torch.from_numpy(best_probs)}

    def resume_checkpoint(self, resume: dict) -> Checkpoint:
        latest = self.history[-1] if self.history else {}
        return self._checkpoint(self.model.state_dict(), None, without_speed(latest), resume=resume)

    def finish(self) -> Checkpoint:
        if self.best["state"] is None:
            raise EcgtoolError(undefined_auc(self.val_store.path, "was"))
        thresholds = None
        if self.multi_label:
            if self.best["val_probs"] is not None:
                rows = np.arange(len(self.val_store))
                values = tune_thresholds(self.val_store.labels[rows], self.best["val_probs"])
                source = f"tuned on validation store {self.val_store.path} (per class, max F1, epoch {self.best['epoch']})"
            else:
                values, source = np.full(len(self.train_store.classes), 0.5), "default 0.5 (no validation store)"
            # the windows they were tuned under: eval refuses them for another aggregation
            thresholds = {"values": values.tolist(), "source": source,
                          "windows": None if self.windows is None else self.windows.to_dict()}
        best_record = next(h for h in self.history if h["epoch"] == self.best["epoch"])
        ckpt = self._checkpoint(self.best["state"], thresholds, {**without_speed(best_record), "best_epoch": self.best["epoch"]})
        if self.env.is_main:
            ckpt.save(self.out, overwrite=self.overwrite, inputs=self.inputs)
            resume_path(self.out).unlink(missing_ok=True)
        distributed.barrier()
        return ckpt


def undefined_auc(val_path, was: str) -> str:
    return (f"validation macro AUC {was} undefined in every epoch: {val_path} needs positive and negative records of at "
            "least one class")


def _args_for_checkpoint(args: TrainArgs) -> dict:
    d = asdict(args)
    d.pop("device")  # where it ran is not what it is: resuming on another device is allowed
    d.pop("threads")
    d.pop("workers")
    d.pop("compile")  # how fast, not what
    d["augment"] = resolve_augment(args.augment)  # every parameter, defaults included
    return d


def _saved_args(saved: dict) -> dict:
    """A resume checkpoint's training arguments, with the defaults of options it predates (all of which
    leave a run as it was without them): the comparison with this run's arguments."""
    defaults = _args_for_checkpoint(TrainArgs(model=""))
    del defaults["model"], defaults["model_kwargs"]
    return {**defaults, **saved}


def _prob_loss(p: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """The training loss recomputed from probabilities (BCE or cross-entropy), for the validation log."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y.argmax(1)])))
