"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import json
import math
import sys

import click

from ecgtool.data.choices import LOADER_MODES
from ecgtool.errors import ConfigError
from ecgtool.eval.options import AGGREGATES
from ecgtool.train.choices import PRECISIONS, SCHEDULES


class LibraryCommand(click.Command):
    """A command that reports a library's ``ConfigError`` as a usage error (exit 2) of the flag that set the value.

    The library names its parameter; the flag is the option whose click name is the
    parameter's (e.g. ``lowcut`` → ``--lowcut``, ``normalisation`` → ``--normalise``),
    and without one the error is a usage error of the command.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            param = next((p for p in self.params if p.name == e.parameter), None)
            if param is None:
                raise click.UsageError(str(e), ctx=ctx) from None
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None


overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
seed_option = click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Random seed; the same seed repeats the run.")
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.",
)
output_option = click.option("-o", "--output", required=True, type=click.Path(), help="Output path.")


def window_options(f):
    """``--window-stride`` and ``--aggregate``: the sliding windows of a model trained on crops (eval, explain)."""
    f = click.option("--aggregate", type=click.Choice(AGGREGATES),
                     help="How window probabilities combine into a record's [default: max for multi-label, mean for multi-class].")(f)
    return click.option("--window-stride", type=click.IntRange(1),
                        help="Stride of the sliding windows for records longer than the model's input [default: half the input].")(f)


def key_values(ctx, param, values) -> dict:
    """A repeatable ``KEY=VALUE`` option as a dict, each value read as JSON where it parses (``3``, ``[1, 2]``,
    ``true``) and kept as a string otherwise."""
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param=param)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _finite(obj):
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def emit_json(obj) -> None:
    """The machine-readable result of a command: strict JSON on stdout, nothing else there."""
    json.dump(_finite(obj), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def stderr_console():
    """The console for logs and warnings: a line is never wrapped (a Slurm log is read with grep)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def stdout_console():
    from rich.console import Console

    return Console()


def resolve_device(name: str):
    """Turn --device into a torch.device, with a clear error when CUDA is asked for but absent."""
    import torch

    from ecgtool.errors import EcgtoolError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise click.BadParameter(f"unknown device {name!r}", param_hint="--device") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EcgtoolError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EcgtoolError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def supervised_options(f):
    """The options of a supervised training run that ``train`` and ``distill`` share (train/loop.TrainArgs);
    the command receives them as keyword arguments and turns them into arguments with :func:`train_fields`."""
    options = [
        click.option("--val", "val_store", type=click.Path(exists=True, file_okay=False), help="Validation store: best epoch by macro AUC, thresholds tuned on it."),
        click.option("--epochs", type=click.IntRange(1), default=20, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Peak learning rate (AdamW)."),
        click.option("--weight-decay", type=click.FloatRange(0), default=1e-2, show_default=True),
        click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True, help="Learning-rate schedule, stepped per batch."),
        click.option("--warmup-epochs", type=click.FloatRange(0), default=0.0, show_default=True, help="Linear warm-up length."),
        click.option("--step-size", type=click.IntRange(1), default=10, show_default=True, help="Epochs between decays (step schedule)."),
        click.option("--gamma", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="Decay factor (step schedule)."),
        click.option("--model-arg", "model_kwargs", multiple=True, callback=key_values, metavar="KEY=VALUE", help="Extra model constructor argument (JSON value); repeatable."),
        click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default)."),
        click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Loader threads decoding store chunks."),
        click.option("--loader", "loader_mode", type=click.Choice(LOADER_MODES), default="auto", show_default=True,
                     help="Hold the training store in memory, or stream it chunk by chunk (auto: memory when the decoded store fits in half the available RAM, shared among the node's processes)."),
        click.option("--crop", type=click.IntRange(0), default=0, help="Train on random crops of this many samples (validation and eval then use sliding windows); 0: whole records."),
        click.option("--label-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                     help="Train on this fraction of the training store's records: whole patients, stratified by label, nested across fractions for one --seed."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="Mixed precision: autocast to bf16, or fp16 with a grad scaler (for CUDA)."),
        click.option("--compile", "compile_", is_flag=True, help="torch.compile the model for training (for CUDA)."),
        click.option("--sync-bn", is_flag=True, help="Synchronise BatchNorm statistics across DDP ranks (CUDA)."),
        click.option("--init", "init", type=click.Path(exists=True, dir_okay=False),
                     help="Start from this checkpoint's weights (a pretrain encoder, or a classifier whose head is dropped): the same model and input; the head starts afresh."),
        click.option("--freeze-encoder", is_flag=True, help="Train the head only (linear probe): every other weight, BatchNorm statistics included, stays as initialised."),
        click.option("--encoder-lr", type=click.FloatRange(0, min_open=True), default=None,
                     help="Learning rate of every weight outside the head (default: --lr); scheduled like --lr."),
        click.option("--resume", is_flag=True, help="Continue the interrupted run that wrote OUTPUT.resume."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def train_fields(opts: dict) -> dict:
    """The TrainArgs fields of :func:`supervised_options`' values (all but ``val_store`` and ``resume``)."""
    renamed = {"loader_mode": "loader", "compile_": "compile"}
    return {renamed.get(k, k): v for k, v in opts.items() if k not in ("val_store", "resume")}
