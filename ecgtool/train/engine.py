"""The optimisation loop that ``train``, ``pretrain`` and ``distill`` share.

An :class:`Engine` owns what does not depend on what is learnt: the device
(one GPU per rank under torchrun or srun), data-parallel wrapping (DDP,
optionally SyncBatchNorm) and ``torch.compile``, AdamW with a per-step
learning-rate schedule (linear warm-up, then cosine, step or constant), mixed
precision (bf16 or fp16 autocast, a grad scaler for fp16), random training
crops, pre-emption and exact resume. A subclass builds its module and loader,
calls :meth:`Engine.start`, and says what one batch costs
(:meth:`Engine.batch_loss`), what an epoch ends with (:meth:`Engine.end_epoch`)
and what the resume and final files are.

After each epoch a resumable checkpoint (``OUTPUT.resume``: weights,
optimiser, scheduler, grad scaler, RNG state, loader position, history and
whatever the subclass adds) is written atomically; :meth:`Engine.resume` picks
it up. SIGTERM or SIGUSR1 (Slurm's pre-emption warning) makes the run finish
its current step, write the same checkpoint at that position and stop with
:class:`Preempted`. Shuffling depends only on (seed, epoch) and the loader can
start an epoch at any batch, so a resumed run continues exactly as the
uninterrupted one would have.

``batch_size`` is the global batch, split evenly over the ranks, so a run's
batches, schedule and results do not depend on the number of processes
(BatchNorm statistics apart: they are per rank unless ``sync_bn``). The loss
an epoch logs, and any further terms a batch reports, are summed over every
rank; their partial sums are part of the resume position, so a resumed run
logs exactly what the uninterrupted one does.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import torch

from ecgtool.checkpoint import Checkpoint
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.outputs import check_new_output
from ecgtool.train import distributed
from ecgtool.train.choices import PRECISIONS, SCHEDULES
from ecgtool.train.prefetch import DataWait, prefetch

PREEMPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later"; requeue scripts look for it


class Preempted(Exception):
    """A pre-emption signal stopped the run after it wrote its resume checkpoint."""


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def check_number(name: str, value, *, low: float = 0.0, open_low: bool = False, high: float | None = None) -> None:
    """Refuse a numeric argument that is not a finite number in its range (``low``, excluded with ``open_low``,
    up to ``high``), naming it as the parameter ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low \
            or (open_low and value == low) or (high is not None and value > high):
        bound = f"in [{low:g}, {high:g}]" if high is not None else f"greater than {low:g}" if open_low else f"at least {low:g}"
        raise ConfigError(f"{name} must be a finite number {bound}, not {value}", name)


def _kind(default) -> tuple[tuple, str] | None:
    """The types a value replacing ``default`` may have, and their name; None where any will do (a None default)."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "a whole number"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, (list, tuple)):
        return (list, tuple), "a list"
    if isinstance(default, dict):
        return (dict,), "a mapping"
    return None


def check_value_types(given: dict, defaults: dict, parameter: str, owner: str) -> None:
    """Refuse a ``KEY=VALUE`` setting (``--model-arg``, ``--method-arg``) whose value is not of its default's kind
    (``negatives=abc`` where the default is 64) as the ``ConfigError`` of ``parameter``, naming the expected kind:
    otherwise the value reaches the code as a string and fails there with a message about Python types."""
    for key, value in given.items():
        kind = _kind(defaults.get(key))
        if kind is None:
            continue
        types, name = kind
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"{owner} {key} takes {name} (default {defaults[key]!r}), not {value!r}", parameter)


# A warm-up longer than any run: int(warmup_epochs x steps per epoch) must be a number (1e308 overflowed), and no
# schedule warms up for longer than this many epochs.
MAX_WARMUP_EPOCHS = 100_000


STEP_DEFAULTS = {"step_size": 10, "gamma": 0.1}  # the step schedule's, as TrainArgs and PretrainArgs give them


def check_optimisation_args(args) -> None:
    """Refuse numeric arguments no run can use (NaN, infinities, negatives, absurd sizes) before anything is opened."""
    from ecgtool.processes import check_parallel

    check_number("lr", args.lr, open_low=True)
    for name in ("weight_decay", "gamma"):
        check_number(name, getattr(args, name))
    check_number("warmup_epochs", args.warmup_epochs, high=MAX_WARMUP_EPOCHS)
    # step_size and gamma shape the step schedule alone: another value beside another schedule would be ignored
    # in silence (as eval refuses a threshold objective when nothing is tuned)
    for name, default in STEP_DEFAULTS.items():
        if args.schedule and args.schedule != "step" and getattr(args, name) != default:
            raise ConfigError(f"{name} applies to the step schedule, not {args.schedule}", name)
    check_parallel(args.threads, "threads", "threads", "torch threads")
    check_parallel(args.workers, "workers", "workers", "loader threads")


def lr_factor(args, steps_per_epoch: int) -> Callable[[int], float]:
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


def random_crop(x, length: int, draws: int | None = None, part: slice = slice(None)):
    """An independent random window of ``length`` samples of each record of ``x [B, C, T]`` (or of a tuple
    of such inputs of the same records: the same window of each), drawn from the global generator (whose
    state the resume checkpoint keeps). Under DDP every rank draws the offsets of the whole global batch
    (``draws``) and uses its ``part``, as one process would."""
    first = x[0] if isinstance(x, tuple) else x
    start = torch.randint(0, first.shape[-1] - length + 1, (draws or len(first), 1))[part]  # on the CPU generator
    window = start.to(first.device) + torch.arange(length, device=first.device)

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, window.unsqueeze(1).expand(-1, t.shape[1], -1))

    return tuple(cut(t) for t in x) if isinstance(x, tuple) else cut(x)


SPEED_KEYS = ("epoch_seconds", "samples_per_s", "data_wait")  # an epoch record's timings (Engine._timing)


def without_speed(record: dict) -> dict:
    """An epoch record without its timings: what a checkpoint keeps as its metrics (how fast is not what)."""
    return {k: v for k, v in record.items() if k not in SPEED_KEYS}


def fresh_position() -> dict:
    """Where an epoch starts: its first batch, nothing summed yet (``aux_total``: the further terms' sums)."""
    return {"batch": 0, "loss_total": 0.0, "loss_count": 0, "aux_total": {}}


class Engine:
    """The shared loop; see the module docstring. ``args`` carries the optimisation fields (epochs, batch_size,
    lr, weight_decay, schedule, warmup_epochs, step_size, gamma, seed, device, threads, crop, precision,
    compile, sync_bn)."""

    loss_label = "loss"  # how errors name the logged loss, and the further terms a batch reports
    term_label = "loss term"
    betas = (0.9, 0.999)  # AdamW's; a method that fixes others sets them

    def __init__(self, args, out, inputs, *, overwrite: bool = False, on_step: Callable | None = None,
                 on_epoch: Callable | None = None, env: distributed.DistEnv | None = None):
        self.args = args
        self.env = env = env or distributed.DistEnv()
        self.out = Path(out)
        self.overwrite = overwrite
        self.inputs = tuple(inputs)
        check_new_output(self.out, overwrite, self.inputs)  # refuse before hours of training, not after
        check_new_output(resume_path(self.out), True, self.inputs)
        quiet = lambda *a: None  # noqa: E731
        # only rank 0 logs
        self.on_step, self.on_epoch = (on_step or quiet, on_epoch or quiet) if env.is_main else (quiet, quiet)
        self.device = torch.device(args.device)
        if env.active and self.device.type == "cuda":
            # one GPU per rank: the local rank's, or the only one a task sees (srun --gpus-per-task 1)
            self.device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(self.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {args.precision!r}; choose from {', '.join(PRECISIONS)}", "precision")
        if args.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {args.schedule!r}; choose from {', '.join(SCHEDULES)}", "schedule")
        if args.batch_size % env.world_size:
            raise ConfigError(f"batch_size {args.batch_size} is the global batch; it must divide evenly over {env.world_size} processes",
                              "batch_size")
        self.start_epoch = 0
        self.position = fresh_position()  # where the first epoch starts
        self.stop_requested = False
        self.history: list[dict] = []
        self.epoch_stats: dict = {}  # the last epoch's timings (SPEED_KEYS): end_epoch adds them to its record
        self.on_validate: Callable | None = None  # progress(done, total) of a validation pass (rank 0's share)

    def schedule_warnings(self) -> list[str]:
        """A warm-up as long as the run: the learning rate climbs the whole time and never reaches its peak (a
        short trial of a method whose reference warms up for 5 or 10 epochs), which would otherwise pass unseen."""
        args = self.args
        if not args.warmup_epochs or args.warmup_epochs < args.epochs:
            return []
        return [f"the warm-up of {args.warmup_epochs:g} epochs is not shorter than the run's {args.epochs}: the learning rate "
                f"rises the whole time and ends near {args.lr * args.epochs / args.warmup_epochs:.1e}, below its {args.lr:.1e} peak"]

    def start(self, module: torch.nn.Module, loader, parameter_groups: Callable[[torch.nn.Module], list]) -> None:
        """Put ``module`` (what learns) on the device, join the process group, wrap it, and make the optimiser
        over ``parameter_groups(module)`` (called after SyncBatchNorm replaced layers), scaler and schedule."""
        args = self.args
        self.model = module.to(self.device)
        distributed.init(self.env, self.device.type)
        self.net = self._training_module()
        self.loader = loader
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model), lr=args.lr, weight_decay=args.weight_decay,
                                           betas=self.betas)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.precision == "fp16")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(args, len(loader)))

    def trained_module(self) -> torch.nn.Module:
        """What the training step calls before wrapping: the module (a subclass may add trained parts around
        it, which DDP must then synchronise too)."""
        return self.model

    def _training_module(self) -> torch.nn.Module:
        """What the training step calls: the trained module, made DDP and/or compiled as asked."""
        net = self.trained_module()
        if self.env.active:
            from torch.nn.parallel import DistributedDataParallel

            if self.args.sync_bn:  # BatchNorm layers are replaced in place below the root
                converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
                if net is self.model:
                    self.model = converted
                net = converted
            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.args.compile:
            net = torch.compile(net)
        return net

    def autocast(self):
        """The mixed-precision context of a forward pass (none in fp32)."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()

    # -- what a subclass says --------------------------------------------------------------------
    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, rows, epoch: int, step: int):
        """``(objective, loss, terms)`` of one batch on the device: the scalar to minimise, the loss the
        history logs as ``train_loss``, and further named scalars it logs as ``train_<name>``."""
        raise NotImplementedError

    def train_mode(self) -> None:
        """Put the module in training mode at an epoch's start."""
        self.net.train()

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. an EMA target's update)."""

    def end_epoch(self, epoch: int, train_loss: float, terms: dict[str, float]) -> None:
        """After an epoch's steps: validate, append the epoch's record to ``history``, call ``on_epoch``."""
        raise NotImplementedError

    def resume_checkpoint(self, resume: dict) -> Checkpoint:
        """The checkpoint file that carries ``resume``."""
        raise NotImplementedError

    def resume_state(self) -> dict:
        """What the subclass adds to the resume record (e.g. the best epoch so far)."""
        return {}

    def check_resumable(self, ckpt: Checkpoint, path: Path) -> None:
        """Refuse a resume checkpoint written by another run (other options, stores, init)."""

    def restore(self, ckpt: Checkpoint) -> None:
        """Load the weights and the subclass's state from a resume checkpoint."""
        raise NotImplementedError

    def finish(self) -> Checkpoint:
        """The final checkpoint, written by rank 0 after the last epoch."""
        raise NotImplementedError

    # -- resume ----------------------------------------------------------------------------
    def resume(self) -> bool:
        path = resume_path(self.out)
        if not path.exists():
            return False
        ckpt = Checkpoint.load(path)
        self.check_resumable(ckpt, path)
        r = ckpt.resume
        self.restore(ckpt)
        self.optimizer.load_state_dict(r["optimizer"])
        self.scheduler.load_state_dict(r["scheduler"])
        self.scaler.load_state_dict(r["scaler"])
        set_rng_state(r["rng"], self.device)
        self.start_epoch = r["epoch"]
        self.position = r["position"]
        self.history = r["history"]
        return True

    def _save_resume(self, epoch: int, position: dict) -> None:
        """The resume checkpoint: training continues at ``position`` (batch, partial loss sums) of ``epoch``."""
        if not self.env.is_main:
            return
        resume = {
            "epoch": epoch,
            "position": position,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.device),
            "history": self.history,
            **self.resume_state(),
        }
        self.resume_checkpoint(resume).save(resume_path(self.out), overwrite=True)

    # -- the loop ----------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        """One epoch (from ``self.position`` when resuming mid-epoch): the mean logged loss over all ranks,
        and the mean of each further term the batches reported."""
        self.train_mode()
        start, total, count = self.position["batch"], self.position["loss_total"], self.position["loss_count"]
        aux_total = dict(self.position.get("aux_total") or {})  # resume checkpoints from before the terms have none
        if not self.env.is_main:
            total, count, aux_total = 0.0, 0, {}  # the saved partial sums are every rank's together: rank 0 carries them
        self.position = fresh_position()
        self.loader.set_epoch(epoch, start)
        crop = self.args.crop
        clock = DataWait(self.device)
        clock.start()
        counted = count
        with closing(clock.timed(prefetch(self.loader, self.device))) as batches:
            total, count, aux_total = self._steps(batches, epoch, start, total, count, aux_total, crop)
        clock.stop()
        self.epoch_stats = self._timing(clock, count - counted)
        total, count, aux_total = self._sum_ranks(total, count, aux_total)
        return total / max(count, 1), {name: value / max(count, 1) for name, value in aux_total.items()}

    def _steps(self, batches, epoch: int, start: int, total: float, count: int, aux_total: dict, crop: int):
        """The epoch's steps over ``batches`` (on the device): this rank's running sums."""
        for step, (x, y, rows) in enumerate(batches, start=start):
            if crop and crop < (x[0] if isinstance(x, tuple) else x).shape[-1]:
                x = random_crop(x, crop, *self._global_draws())  # after the copy: the draws stay in this thread's order
            objective, loss, terms = self.batch_loss(x, y, rows, epoch, step)
            if not torch.isfinite(objective):
                self._refuse_nonfinite(loss, terms, epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(objective).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.after_step()
            total += loss.item() * len(y)
            count += len(y)
            for name, term in terms.items():
                aux_total[name] = aux_total.get(name, 0.0) + term.item() * len(y)
            self.on_step(epoch, step + 1, len(self.loader), total / count)
            if step + 1 < len(self.loader) and self._stop():
                total_all, count_all, aux_all = self._sum_ranks(total, count, aux_total)  # the partial sums of all ranks
                self._save_resume(epoch, {"batch": step + 1, "loss_total": total_all, "loss_count": count_all,
                                          "aux_total": aux_all})
                # a launcher tears the job down when the first rank exits: none may leave before rank 0 has written
                distributed.barrier()
                raise Preempted(f"stopped by a signal at epoch {epoch + 1}, step {step + 1}")
        return total, count, aux_total

    def _timing(self, clock: DataWait, samples: int) -> dict:
        """The epoch's speed, for its history record: wall seconds of its training steps (after a resume: of
        those this run took), records per second (every rank's ``samples``), and the share of the time the
        step waited for its batch (over all ranks)."""
        wait, elapsed, samples = distributed.all_sum([clock.wait, clock.elapsed, samples], self.device)
        seconds = elapsed / self.env.world_size
        return {"epoch_seconds": seconds, "samples_per_s": samples / seconds if seconds > 0 else math.nan,
                "data_wait": min(1.0, wait / elapsed) if elapsed > 0 else math.nan}

    def _global_draws(self) -> tuple:
        """Under DDP, the global batch and this rank's part of it (random draws are made for the whole
        global batch on every rank, as one process would); nothing for one process."""
        return (self.args.batch_size, self.loader.rank_slice(self.args.batch_size)) if self.env.active else ()

    def _refuse_nonfinite(self, loss: torch.Tensor, terms: dict, epoch: int, step: int) -> None:
        bad = [name for name, term in terms.items() if not torch.isfinite(term)]
        if torch.isfinite(loss) and bad:
            what, value = f"the {self.term_label} {bad[0]!r}", terms[bad[0]].item()
        else:
            what, value = f"the {self.loss_label if not torch.isfinite(loss) else 'loss'}", loss.item()
        raise EcgtoolError(f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; lower --lr")

    def _sum_ranks(self, total: float, count: float, aux_total: dict[str, float]) -> tuple[float, float, dict[str, float]]:
        """The partial sums of every rank (the same terms on each: one model), in one collective."""
        names = sorted(aux_total)
        summed = distributed.all_sum([total, count, *(aux_total[n] for n in names)], self.device)
        return summed[0], summed[1], dict(zip(names, summed[2:]))

    def _stop(self) -> bool:
        """Whether a pre-emption signal reached this process, or under DDP any rank (a collective
        per step only when there are ranks to ask: it synchronises the GPU)."""
        return distributed.any_rank(self.stop_requested, self.device) if self.env.active else self.stop_requested

    @contextmanager
    def _preemptible(self):
        """SIGTERM/SIGUSR1 set a flag the loop checks after each step (main thread only: Python's rule)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            self.stop_requested = True

        previous = {s: signal.signal(s, request_stop) for s in PREEMPT_SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def run(self) -> Checkpoint:
        with self._preemptible():
            for epoch in range(self.start_epoch, self.args.epochs):
                train_loss, terms = self.train_epoch(epoch)
                self.end_epoch(epoch, train_loss, terms)
                self._save_resume(epoch + 1, fresh_position())
                if epoch + 1 < self.args.epochs and self._stop():
                    distributed.barrier()
                    raise Preempted(f"stopped by a signal after epoch {epoch + 1}")
        if not self.history:
            raise EcgtoolError("training ran no epoch")
        return self.finish()
