"""Supervised training: the loop behind ``ecgtool train``.

AdamW, a per-step cosine (or step) learning-rate schedule, BCE-with-logits for
multi-label tasks and cross-entropy for multi-class ones, validation after
every epoch, the best epoch by validation macro AUC kept, and per-class
decision thresholds tuned on validation (max F1) and stored in the checkpoint.

After each epoch a resumable checkpoint (``OUTPUT.resume``: model, optimiser,
scheduler, RNG state, best-so-far) is written atomically; ``--resume`` picks it
up. Shuffling depends only on (seed, epoch), so a resumed run continues exactly
as the uninterrupted one would have.

With ``crop`` the model sees a random window of that many samples of each
record per step (the PTB-XL benchmark trains on 2.5 s crops this way) and is
validated on sliding windows with half-crop stride, aggregated by the maximum
probability, as ``eval`` applies it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ecgtool.data.loader import ChunkLoader, InputSpec, check_store_fits, input_spec
from ecgtool.data.store import open_store
from ecgtool.data.views import data_view
from ecgtool.errors import EcgtoolError
from ecgtool.eval.metrics import macro_auc
from ecgtool.eval.predict import predict, windows_for
from ecgtool.eval.thresholds import tune_thresholds
from ecgtool.models import create_model, model_info
from ecgtool.outputs import check_new_output
from ecgtool.provenance import make_entry
from ecgtool.train.checkpoint import load_checkpoint, save_checkpoint

SCHEDULES = ("cosine", "step", "constant")


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
    crop: int = 0  # random training crops of this many samples; 0 = whole records
    model_kwargs: dict = field(default_factory=dict)


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def lr_factor(args: TrainArgs, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimiser step ``t`` (linear warm-up, then the schedule)."""
    total = args.epochs * steps_per_epoch
    warmup = int(args.warmup_epochs * steps_per_epoch)

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if args.schedule == "cosine":
            progress = (t - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if args.schedule == "step":
            return args.gamma ** ((t // steps_per_epoch) // args.step_size)
        return 1.0

    return factor


def rng_state(device: torch.device) -> dict:
    """The random state a run depends on: the CPU generator, and the training GPU's (never every GPU's)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def random_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    """An independent random window of ``length`` samples of each record of ``x [B, C, T]``
    (drawn from the global generator, whose state the resume checkpoint keeps)."""
    start = torch.randint(0, x.shape[-1] - length + 1, (len(x), 1))
    index = (start + torch.arange(length)).unsqueeze(1).expand(-1, x.shape[1], -1)
    return x.gather(-1, index)


class Trainer:
    def __init__(self, args: TrainArgs, train_path, val_path, out, *, overwrite: bool = False,
                 on_step: Callable | None = None, on_epoch: Callable | None = None):
        self.args = args
        self.out = Path(out)
        self.overwrite = overwrite
        check_new_output(self.out, overwrite)  # refuse before hours of training, not after
        self.on_step, self.on_epoch = on_step or (lambda *a: None), on_epoch or (lambda *a: None)
        self.train_store = open_store(train_path)
        self.val_store = open_store(val_path) if val_path else None
        self.device = torch.device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        s = self.train_store
        if len(s) == 0:
            raise EcgtoolError(f"{s.path} has no records")
        self.multi_label = s.multi_label
        self.input = input_spec(s, data_view(model_info(args.model)["input_view"]))
        if args.crop:
            if args.crop > s.n_samples:
                raise EcgtoolError(f"--crop {args.crop} is longer than the {s.n_samples} samples of {s.path}'s records")
            self.input["samples"] = args.crop
        self.windows = None
        if self.val_store is not None:
            check_store_fits({"classes": s.classes, "multi_label": s.multi_label, "input": self.input}, self.val_store,
                             "validation store", windows=True)
            self.windows = windows_for(self.input["samples"], self.val_store.n_samples)
        if not self.multi_label:
            for store in filter(None, (s, self.val_store)):
                if (store.labels.sum(axis=1) != 1).any():
                    raise EcgtoolError(f"{store.path} is multi-class but has records without exactly one label; rerun prep without --keep-unlabelled")
        torch.manual_seed(args.seed)
        kwargs = dict(args.model_kwargs)
        if "fs" in model_info(args.model)["default_kwargs"]:
            kwargs.setdefault("fs", s.fs)  # models whose filters or windows are in seconds get the store's rate
        self.model = create_model(args.model, num_classes=len(s.classes), num_leads=len(s.leads),
                                  num_samples=self.input["samples"], **kwargs).to(self.device)
        pin = self.device.type == "cuda"
        # drop_last keeps BatchNorm away from a final batch of one record.
        self.loader = ChunkLoader(s, args.batch_size, spec=InputSpec(s, view=self.input["view"]), shuffle=True, seed=args.seed,
                                  drop_last=len(s) > args.batch_size, pin_memory=pin, workers=args.workers)
        self.val_loader = (
            ChunkLoader(self.val_store, max(args.batch_size, 256), pin_memory=pin, workers=args.workers,
                        spec=InputSpec(self.val_store, leads=self.input["leads"], normalisation=self.input["normalisation"],
                                       view=self.input["view"]))
            if self.val_store else None
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(args, len(self.loader)))
        self.criterion = torch.nn.BCEWithLogitsLoss() if self.multi_label else torch.nn.CrossEntropyLoss()
        self.start_epoch = 0
        self.history: list[dict] = []
        self.best = {"metric": -math.inf, "epoch": None, "state": None, "val_probs": None}

    # -- resume ----------------------------------------------------------------------------
    def resume(self) -> bool:
        path = resume_path(self.out)
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        if ckpt["train_args"] != _args_for_checkpoint(self.args):
            raise EcgtoolError(f"{path} was written with different training options; rerun with them or without --resume")
        before = [i["fingerprint"] for i in ckpt["provenance"][-1]["inputs"]]
        now = [i["fingerprint"] for i in self._provenance()[-1]["inputs"]]
        if before != now:
            raise EcgtoolError(f"{path} was trained on other stores than the ones given now; resume with the same --val and training store")
        r = ckpt["resume"]
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(r["optimizer"])
        self.scheduler.load_state_dict(r["scheduler"])
        set_rng_state(r["rng"], self.device)
        self.start_epoch = r["epoch"]
        self.history = r["history"]
        self.best = {
            "metric": r["best_metric"], "epoch": r["best_epoch"], "state": r["best_state"],
            "val_probs": None if r["best_val_probs"] is None else r["best_val_probs"].numpy(),
        }
        return True

    # -- the loop ----------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        self.loader.set_epoch(epoch)
        total, count = 0.0, 0
        for step, (x, y, _) in enumerate(self.loader):
            if self.args.crop and self.args.crop < x.shape[-1]:
                x = random_crop(x, self.args.crop)
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            logits = self.model(x)
            loss = self.criterion(logits, y if self.multi_label else y.argmax(dim=1))
            if not torch.isfinite(loss):
                raise EcgtoolError(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.item() * len(x)
            count += len(x)
            self.on_step(epoch, step + 1, len(self.loader), total / count)
        return total / max(count, 1)

    def validate(self) -> tuple[dict, np.ndarray | None]:
        if self.val_loader is None:
            return {}, None
        probs, rows = predict(self.model, self.val_loader, self.device, self.multi_label, self.windows)
        y = self.val_store.labels[rows]
        return {"val_loss": _prob_loss(probs, y, self.multi_label), "val_macro_auc": macro_auc(y, probs)}, probs

    def run(self) -> dict:
        args = self.args
        for epoch in range(self.start_epoch, args.epochs):
            train_loss = self.train_epoch(epoch)
            metrics, probs = self.validate()
            record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": self.scheduler.get_last_lr()[0], **metrics}
            self.history.append(record)
            # Without validation the last epoch is "best"; with it, the highest macro AUC (NaN never wins).
            score = metrics.get("val_macro_auc", epoch)
            if self.val_loader is None or (score == score and score > self.best["metric"]):
                self.best = {"metric": score, "epoch": epoch + 1, "val_probs": probs,
                             "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
            self.on_epoch(record, self.best["epoch"])
            self._save_resume(epoch + 1)
        return self._finish()

    def _base_checkpoint(self) -> dict:
        s = self.train_store
        return {
            "kind": "classifier",
            "model": {"name": self.args.model, "kwargs": self.model.model_kwargs},
            "classes": s.classes,
            "class_descriptions": s.attrs.get("class_descriptions", {}),
            "task": s.attrs["task"],
            "multi_label": self.multi_label,
            "input": self.input,
            "train_args": _args_for_checkpoint(self.args),
        }

    def _provenance(self) -> list[dict]:
        inputs = [self.train_store.path] + ([self.val_store.path] if self.val_store else [])
        return list(self.train_store.attrs["provenance"]) + [make_entry("train", inputs, model=self.args.model)]

    def _save_resume(self, next_epoch: int) -> None:
        best_probs = self.best["val_probs"]
        save_checkpoint(resume_path(self.out), {
            **self._base_checkpoint(),
            "state_dict": self.model.state_dict(),
            "thresholds": None,
            "metrics": self.history[-1] if self.history else {},
            "history": self.history,
            "provenance": self._provenance(),
            "resume": {
                "epoch": next_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(self.device),
                "history": self.history,
                "best_metric": self.best["metric"],
                "best_epoch": self.best["epoch"],
                "best_state": self.best["state"],
                "best_val_probs": None if best_probs is None else torch.from_numpy(best_probs),
            },
        }, overwrite=True)

    def _finish(self) -> dict:
        if not self.history:
            raise EcgtoolError("training ran no epoch")
        if self.best["state"] is None:
            raise EcgtoolError(
                f"validation macro AUC was undefined in every epoch: {self.val_store.path} needs positive and "
                "negative records of at least one class"
            )
        thresholds = None
        if self.multi_label:
            if self.best["val_probs"] is not None:
                rows = np.arange(len(self.val_store))
                values = tune_thresholds(self.val_store.labels[rows], self.best["val_probs"])
                source = f"tuned on validation store {self.val_store.path} (per class, max F1, epoch {self.best['epoch']})"
            else:
                values, source = np.full(len(self.train_store.classes), 0.5), "default 0.5 (no validation store)"
            thresholds = {"values": values.tolist(), "source": source}
        best_record = next(h for h in self.history if h["epoch"] == self.best["epoch"])
        ckpt = {
            **self._base_checkpoint(),
            "state_dict": self.best["state"],
            "thresholds": thresholds,
            "metrics": {**best_record, "best_epoch": self.best["epoch"]},
            "history": self.history,
            "provenance": self._provenance(),
        }
        save_checkpoint(self.out, ckpt, overwrite=self.overwrite)
        resume_path(self.out).unlink(missing_ok=True)
        return ckpt


def _args_for_checkpoint(args: TrainArgs) -> dict:
    d = asdict(args)
    d.pop("device")  # where it ran is not what it is: resuming on another device is allowed
    d.pop("threads")
    d.pop("workers")
    return d


def _prob_loss(p: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """The training loss recomputed from probabilities (BCE or cross-entropy), for the validation log."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y.argmax(1)])))
