"""Self-supervised pretraining: the loop behind ``ecgtool pretrain``.

One or more stores (pooled, ``data.pooled``; labels never read) feed a pretraining objective
(``cpc``, ``clocs``, ``st_mem``, ``jepa`` in this package) around a registered backbone; the shared
:class:`~ecgtool.train.engine.Engine` runs it (DDP, mixed precision, the schedule, pre-emption, exact
``--resume``). The result is an encoder checkpoint (``checkpoint.encoder_checkpoint``): the backbone's
weights without its head, the input it was pretrained on, and a pretraining record of the method, its
hyperparameters and every store's records, which ``eval`` checks for leakage.

Each step sees a random window of ``crop`` samples of every record (``Method.seconds`` at the stores' rate
by default), and the patient codes of its records (``data.pooled.patient_codes``) for the methods that
contrast patients (CLOCS). The backbone's classification head takes no part in pretraining: it is frozen,
so DDP finds no unused parameter, and left out of the checkpoint. There is no validation: the last epoch
is kept (the CLOCS reference stops early on a held-out contrastive loss; that is left out).
"""

from __future__ import annotations

import importlib
import inspect
import json
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ecgtool.checkpoint import HEAD_PREFIX, Checkpoint, encoder_checkpoint
from ecgtool.data.inputs import InputSpec
from ecgtool.data.loader import ChunkLoader, auto_memory_budget
from ecgtool.data.pooled import PooledStore, patient_codes
from ecgtool.data.store import open_store
from ecgtool.data.views import data_view
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.models import create_model, model_info
from ecgtool.provenance import make_entry
from ecgtool.train import distributed
from ecgtool.train.engine import Engine, check_optimisation_args, check_value_types, resume_path, without_speed
from ecgtool.train.pretrain.methods import METHODS


@dataclass
class PretrainArgs:
    method: str
    backbone: str = ""  # "": the method's (methods.METHODS)
    epochs: int = 0  # 0 (and None below): the method's default
    batch_size: int = 0
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str = ""
    warmup_epochs: float | None = None
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    workers: int = 2
    loader: str = "auto"
    crop: int = 0  # samples per input; 0: the method's window at the stores' rate (whole records when shorter)
    precision: str = "fp32"
    compile: bool = False
    sync_bn: bool = False
    model_kwargs: dict = field(default_factory=dict)  # the backbone's constructor arguments
    method_kwargs: dict = field(default_factory=dict)  # the objective's hyperparameters

    def with_defaults(self) -> PretrainArgs:
        """These arguments with every unset one taken from the method's defaults."""
        m = METHODS[self.method]
        from dataclasses import replace

        return replace(self, backbone=self.backbone or m.backbone, epochs=self.epochs or m.epochs,
                       batch_size=self.batch_size or m.batch_size, lr=m.lr if self.lr is None else self.lr,
                       weight_decay=m.weight_decay if self.weight_decay is None else self.weight_decay,
                       schedule=self.schedule or m.schedule,
                       warmup_epochs=m.warmup_epochs if self.warmup_epochs is None else self.warmup_epochs)


@contextmanager
def _seeded(seed: int, device: torch.device):
    """The global generators (CPU and ``device``'s) seeded with ``seed`` inside, restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _objective_class(method: str):
    module, name = METHODS[method].objective.split(":")
    return getattr(importlib.import_module(f"ecgtool.train.pretrain.{module}"), name)


class Pretrainer(Engine):
    """``method`` on ``store_paths`` → an encoder checkpoint at ``out``."""

    loss_label = "pretraining loss"
    term_label = "logged term"

    def __init__(self, args: PretrainArgs, store_paths, out, *, overwrite: bool = False, on_step: Callable | None = None,
                 on_epoch: Callable | None = None, env: distributed.DistEnv | None = None):
        if args.method not in METHODS:
            raise ConfigError(f"unknown pretraining method {args.method!r}; choose from {', '.join(METHODS)}", "method")
        self.method = METHODS[args.method]
        args = args.with_defaults()
        check_optimisation_args(args)
        self.betas = self.method.betas
        store_paths = list(store_paths)
        if not store_paths:
            raise ConfigError("give at least one store to pretrain on", "stores")
        seen = [Path(p).resolve() for p in store_paths]
        twice = next((p for i, p in enumerate(store_paths) if seen[i] in seen[:i]), None)
        if twice is not None:
            raise ConfigError(f"{twice} is given twice: each store is pooled once", "stores")
        super().__init__(args, out, store_paths, overwrite=overwrite, on_step=on_step, on_epoch=on_epoch, env=env)
        env = self.env
        self.stores = [open_store(p) for p in store_paths]
        for store in self.stores:
            if len(store) == 0:
                raise EcgtoolError(f"{store.path} has no records")
        first = self.stores[0]
        info = self._backbone_info(args.backbone)
        self.warnings: list[str] = []
        if first.fs != self.method.fs:
            self.warnings.append(f"{args.method} pretrains at {self.method.fs:g} Hz in its reference code; "
                                 f"{first.path} is at {first.fs:g} Hz")
        samples = args.crop or min(first.n_samples, round(self.method.seconds * first.fs))
        if samples > first.n_samples:
            raise ConfigError(f"crop {samples} is longer than the {first.n_samples} samples of {first.path}'s records", "crop")
        if not args.crop and samples < round(self.method.seconds * first.fs):
            self.warnings.append(f"{first.path}'s records are {first.n_samples / first.fs:g} s, shorter than the "
                                 f"{self.method.seconds:g} s {args.method} pretrains on: the whole record is the input")
        self.crop_given = bool(args.crop)
        self.samples = args.crop = samples  # every step crops to it (and the checkpoint's arguments say so)
        self.spec = InputSpec.of_store(first, data_view(info["input_view"]), samples=samples)
        self.corpus = self.stores[0] if len(self.stores) == 1 else PooledStore(self.stores, self.spec)
        if len(self.stores) == 1:
            self.spec.check(first, "pretraining store", windows=True)
        self.patients = torch.from_numpy(patient_codes(self.corpus))
        n = len(self.corpus)
        if n < args.batch_size:
            raise EcgtoolError(f"{self.corpus.path} has {n} records, fewer than one batch of {args.batch_size}; "
                               "lower --batch-size")
        torch.manual_seed(args.seed)
        objective_class = _objective_class(args.method)
        pin = self.device.type == "cuda"
        loader = ChunkLoader(self.corpus, args.batch_size // env.world_size, spec=self.spec, shuffle=True, seed=args.seed,
                             drop_last=True, pin_memory=pin, workers=args.workers, rank=env.rank,
                             world_size=env.world_size, mode=args.loader, memory_budget=auto_memory_budget(env.local_world_size))
        hyper = {**self.method.objective_kwargs, **args.method_kwargs}
        if args.method == "jepa":
            hyper.setdefault("total_steps", args.epochs * len(loader))  # the EMA schedule spans the run
        if args.method.startswith("clocs") and args.backbone == "clocs_cnn":
            hyper.setdefault("embedding_dim", 0)  # its last layer is the embedding the loss acts on
        accepted = inspect.signature(objective_class).parameters
        # before the backbone is built: building CLOCS's reads the mode (an unknown one is no ValueError there)
        fixed = sorted(set(args.method_kwargs) & set(self.method.objective_kwargs))
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} is set by the method's name ({args.method})", "method_kwargs")
        unknown = sorted(set(hyper) - set(accepted) - {"fs", "leads", "samples"})
        if unknown:
            known = [k for k, p in accepted.items() if p.kind == p.KEYWORD_ONLY and k not in ("fs", "leads", "samples")]
            raise ConfigError(f"{args.method} has no hyperparameter {', '.join(unknown)}; it takes {', '.join(known)}",
                              "method_kwargs")
        check_value_types(args.method_kwargs, {k: p.default for k, p in accepted.items() if p.default is not p.empty},
                          "method_kwargs", args.method)
        backbone = self._build_backbone(info, hyper)
        common = dict(fs=first.fs, leads=list(self.spec.leads), samples=samples)
        try:
            objective = objective_class(backbone, **common, **hyper)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{args.method} cannot pretrain {args.backbone} with these settings: {e}",
                              self._objective_culprit(objective_class, backbone, common, hyper)) from e
        for name, p in objective.encoder.named_parameters():  # the classifier head takes no part (and is not saved)
            if name.startswith(HEAD_PREFIX):
                p.requires_grad_(False)
        self.objective = objective
        self.start(objective, loader, lambda m: [p for p in m.parameters() if p.requires_grad])

    # -- building ------------------------------------------------------------------------------
    def _backbone_info(self, name: str) -> dict:
        try:
            info = model_info(name)
        except KeyError as e:
            raise ConfigError(str(e).strip("'\""), "backbone") from None
        default = self.method.backbone
        if name != default and not self.method.any_backbone and model_info(default)["family"] != info["family"]:
            raise ConfigError(f"{self.args.method} pretrains a {model_info(default)['family']} encoder "
                              f"({default} or another size of it), not {name}", "backbone")
        return info

    def _build_backbone(self, info: dict, hyper: dict) -> torch.nn.Module:
        """The backbone for this input: CLOCS's is built for its views (half the input in the segment modes)."""
        args, first = self.args, self.stores[0]
        check_value_types(args.model_kwargs, info["default_kwargs"], "model_kwargs", args.backbone)
        kwargs = dict(args.model_kwargs)
        if "fs" in info["default_kwargs"]:
            kwargs.setdefault("fs", first.fs)
        num_samples, num_leads = self.samples, len(self.spec.leads)
        if args.method.startswith("clocs"):
            from ecgtool.train.pretrain.clocs import view_samples

            num_samples = view_samples(hyper["mode"], self.samples)
            # the reference encoder sees one lead per view; any other backbone all leads unless told otherwise
            num_leads = kwargs.pop("num_leads", 1 if args.backbone == "clocs_cnn" else num_leads)
        try:
            return create_model(args.backbone, num_classes=1, num_leads=num_leads, num_samples=num_samples, **kwargs)
        except (TypeError, ValueError, RuntimeError) as e:
            if not args.model_kwargs:
                source = "" if self.crop_given else f" ({args.method}'s window of the records)"
                raise ConfigError(f"{args.backbone} cannot take {num_leads} leads x {num_samples} samples{source} "
                                  f"({type(e).__name__}: {e})", "crop") from e
            given = ", ".join(f"{k}={v!r}" for k, v in args.model_kwargs.items())
            raise ConfigError(f"{given}: {args.backbone} cannot be built with these arguments ({type(e).__name__}: {e})",
                              "model_kwargs") from e

    def _objective_culprit(self, objective_class, backbone, common: dict, hyper: dict) -> str:
        """The option to name when the objective refuses: --method-arg when it accepts the backbone without the
        hyperparameters given there, else what built the backbone and its input (--model-arg, or --crop)."""
        args = self.args
        if args.method_kwargs:
            try:
                objective_class(backbone, **common, **{k: v for k, v in hyper.items() if k not in args.method_kwargs})
                return "method_kwargs"
            except (TypeError, ValueError):
                pass
        return "model_kwargs" if args.model_kwargs else "crop"

    def encoder_input(self) -> InputSpec:
        """What the encoder takes: the pretraining input at the backbone's own length and leads (a single-lead
        CLOCS encoder takes lead II where it saw it, else the first view lead)."""
        kwargs = self.objective.backbone.model_kwargs
        spec = self.spec.with_samples(kwargs.get("num_samples", self.samples))
        if kwargs.get("num_leads", len(spec.leads)) == 1 and len(spec.leads) > 1:
            from dataclasses import replace

            seen = list(getattr(self.objective, "view_leads", spec.leads))
            lead = "II" if "II" in seen else seen[0]
            norm = dict(spec.normalisation)
            if norm.get("method") == "dataset":
                i = list(spec.leads).index(lead)
                norm = {**norm, "mean": [norm["mean"][i]], "std": [norm["std"][i]]}
            spec = replace(spec, leads=(lead,), normalisation=norm)
        return spec

    # -- the engine's hooks ----------------------------------------------------------------------
    def batch_loss(self, x, y, rows, epoch, step):
        patients = self.patients[torch.as_tensor(rows)].to(self.device, non_blocking=True)
        with self._draws(epoch, step), self.autocast():
            out = self.net(x, patients)
        loss = out["loss"].float()
        terms = {name: value.detach().float() for name, value in out.items() if name != "loss"}
        return loss, loss, terms

    def _draws(self, epoch: int, step: int):
        """Where the objective's random draws (masks, negatives, dropout) come from. One process: the global
        generator, whose state the resume checkpoint keeps. Under DDP every rank holds the same generator
        state (the crops are drawn for the global batch on every rank), so the objective would draw the same
        masks for each rank's different records: each rank draws from its own generator, seeded by
        (seed, epoch, step, rank), instead (a resumed run repeats them; the run differs from a one-process
        run by these draws)."""
        if not self.env.active:
            return nullcontext()
        return _seeded(int(np.random.SeedSequence([self.args.seed, epoch, step, self.env.rank]).generate_state(1)[0]),
                       self.device)

    def after_step(self) -> None:
        self.objective.after_step()

    def end_epoch(self, epoch: int, train_loss: float, terms: dict[str, float]) -> None:
        record = {"epoch": epoch + 1, "train_loss": train_loss, **{f"train_{k}": v for k, v in terms.items()},
                  "lr": self.scheduler.get_last_lr()[0], **self.epoch_stats}
        self.history.append(record)
        self.on_epoch(record, None)  # no validation: no best epoch

    def _train_args(self) -> dict:
        d = asdict(self.args)
        for key in ("device", "threads", "workers", "compile"):  # where and how fast, not what
            d.pop(key)
        return json.loads(json.dumps(d))

    def _checkpoint(self, resume: dict | None = None) -> Checkpoint:
        latest = self.history[-1] if self.history else {}
        provenance = (list(self.stores[0].attrs.get("provenance", [])) if len(self.stores) == 1 else []) + [
            make_entry("pretrain", [s.path for s in self.stores], method=self.args.method, model=self.args.backbone)]
        ckpt = encoder_checkpoint(self.objective.backbone, self.stores, method=self.args.method,
                                  hyperparameters=self.objective.hyperparameters(), train_args=self._train_args(),
                                  metrics=without_speed(latest), history=self.history, input=self.encoder_input(), provenance=provenance)
        return ckpt.replace(resume=resume) if resume is not None else ckpt

    def resume_checkpoint(self, resume: dict) -> Checkpoint:
        objective = {k: v.detach().cpu().clone() for k, v in self.objective.state_dict().items()}
        return self._checkpoint({**resume, "objective": objective})

    def check_resumable(self, ckpt: Checkpoint, path) -> None:
        if ckpt.train_args != self._train_args() or (ckpt.pretraining or {}).get("method") != self.args.method:
            raise EcgtoolError(f"{path} was written with different pretraining options; rerun with them or without --resume")
        before = [s["fingerprint"] for s in (ckpt.pretraining or {}).get("stores", [])]
        from ecgtool.provenance import fingerprint

        if before != [fingerprint(s.path) for s in self.stores]:
            raise EcgtoolError(f"{path} was pretrained on other stores than the ones given now; resume with the same stores")

    def restore(self, ckpt: Checkpoint) -> None:
        self.objective.load_state_dict(ckpt.resume["objective"])

    def finish(self) -> Checkpoint:
        ckpt = self._checkpoint()
        if self.env.is_main:
            ckpt.save(self.out, overwrite=self.overwrite, inputs=self.inputs)
            resume_path(self.out).unlink(missing_ok=True)
        distributed.barrier()
        return ckpt
