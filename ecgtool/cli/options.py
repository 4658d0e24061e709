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
    and without one the error is a usage error of the command. Another parameter the
    message names (``ConfigError.alternative``) is written as its flag too.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            param = self._param(e.parameter)
            message = e.worded(self._flag)
            if param is None:
                raise click.UsageError(message, ctx=ctx) from None
            raise click.BadParameter(message, ctx=ctx, param=param) from None

    def _param(self, name: str) -> click.Parameter | None:
        return next((p for p in self.params if p.name == name), None)

    def _flag(self, name: str) -> str:
        """The long flag of the parameter ``name`` (``tune_on_eval_store`` → ``--tune-on-eval-store``)."""
        param = self._param(name)
        return next((o for o in param.opts if o.startswith("--")), name) if param is not None else name


class AliasedOption(click.Option):
    """An option with old spellings (``aliases``) that still parse but appear nowhere else.

    The aliases are given to the parser alone, so ``--help``, TAB completion, error
    messages and the option's environment variable all know only the current name:
    one name per concept (docs/cli.md), without breaking the scripts written before a
    rename. An alias has no environment variable of its own.
    """

    def __init__(self, param_decls, *, aliases=(), **attrs):
        super().__init__(param_decls, **attrs)
        self.aliases = tuple(aliases)

    def add_to_parser(self, parser, ctx):
        shown = self.opts
        self.opts = [*shown, *self.aliases]
        try:
            super().add_to_parser(parser, ctx)
        finally:
            self.opts = shown


def option(*param_decls, aliases=(), **attrs):
    """``click.option`` with old spellings kept as hidden aliases (:class:`AliasedOption`)."""
    return click.option(*param_decls, cls=AliasedOption, aliases=aliases, **attrs)


def envvar_name(prefix: str, param: click.Option) -> str:
    """The environment variable of an option: the command's prefix and its first long flag, e.g. ``--batch-size``
    of ``train`` → ``ECGTOOL_TRAIN_BATCH_SIZE`` (click's own rule would use the Python name, e.g. ``as_json``)."""
    flag = next((o for o in param.opts if o.startswith("--")), None)
    word = flag[2:] if flag else param.name
    return f"{prefix}_{word.replace('-', '_').upper()}"


def command_prefix(path) -> str:
    """``ECGTOOL_`` and the command path as typed, e.g. ``("fetch", "ecg-arrhythmia")`` → ``ECGTOOL_FETCH_ECG_ARRHYTHMIA``."""
    return "_".join(["ECGTOOL", *(p.replace("-", "_").upper() for p in path)])


def _envvar_list(param: click.Option) -> list[str]:
    """The variables an option reads (click takes one name, a list, or None)."""
    return [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())


def _finite_first(callback):
    """An option callback that refuses NaN and infinities (click's float types take them) before ``callback``."""

    def check(ctx, param, value):
        values = value if isinstance(value, (tuple, list)) else (value,)
        bad = next((v for v in values if isinstance(v, float) and not math.isfinite(v)), None)
        if bad is not None:
            raise click.BadParameter(f"{bad} is not a finite number", ctx=ctx, param=param)
        return value if callback is None else callback(ctx, param, value)

    return check


def apply_conventions(command: click.Command, path=()) -> click.Command:
    """Give every option of ``command`` (and of its subcommands) its environment variable, named after its flag
    (:func:`envvar_name`); a variable an option names itself (``--mirror``'s ``ECGTOOL_MIRROR``) is read after it.
    The group applies this to each command it hands out (``LazyGroup.get_command``), so a new command follows the
    rule without doing anything; the option's Python name is no longer read from the environment."""
    prefix = command_prefix(path)
    if getattr(command, "_ecgtool_prefix", None) == prefix:
        return command
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        own = _envvar_list(param)
        name = envvar_name(prefix, param)
        param.envvar = [name, *(e for e in own if e != name)]
        param.allow_from_autoenv = False
        if isinstance(param.type, click.types.FloatParamType):  # FloatRange too: NaN passes every range check
            param.callback = _finite_first(param.callback)
    if isinstance(command, click.Group) and path:  # the root's (lazy) commands get theirs as it hands them out
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            apply_conventions(command.get_command(ctx, name), (*path, name))
    command._ecgtool_prefix = prefix
    return command


def _envvars(command: click.Command) -> set[str]:
    """Every environment variable ``command`` and its subcommands read (after :func:`apply_conventions`)."""
    names = {e for p in command.params if isinstance(p, click.Option) for e in _envvar_list(p)}
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            names |= _envvars(command.get_command(ctx, name))
    return names


def unread_envvars(command: click.Command, path, environ) -> list[str]:
    """Warnings for the ``ECGTOOL_<COMMAND>_…`` variables in ``environ`` that no option of ``command`` (at
    ``path``, after :func:`apply_conventions`) reads: a misspelt variable would otherwise be ignored in silence."""
    import difflib

    prefix = command_prefix(path) + "_"
    known = _envvars(command)
    paths = _command_paths(command, tuple(path))
    out = []
    for name in sorted(n for n in environ if n.startswith(prefix) and n not in known):
        # an option of a subcommand first (ECGTOOL_FETCH_RECORDS → …_FETCH_SYNTHETIC_NUM_RECORDS), else a misspelling
        tail = name[len(prefix):]
        close = sorted(k for k in known if k.endswith("_" + tail)) or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close[:2])}?)" if close else ""
        # the command the variable's prefix names: ECGTOOL_FETCH_SYNTHETIC_RECORDS is `fetch synthetic`'s, not `fetch`'s
        where = max((p for p in paths if name.startswith(command_prefix(p) + "_")), key=len)
        out.append(f"{name} names no option of `ecgtool {' '.join(where)}` and is ignored{hint}")
    return out


def _command_paths(command: click.Command, path: tuple) -> list[tuple]:
    """``path`` and the paths of every subcommand below it."""
    out = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            out += _command_paths(command.get_command(ctx, name), (*path, name))
    return out


overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
seed_option = click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Random seed; the same seed repeats the run.")
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.",
)
def log_dir_option_for(what: str):
    """``--log-dir``, whose help says what an epoch's record holds (``what``: pretraining has no validation)."""
    return click.option(
        "--log-dir", type=click.Path(file_okay=False),
        help=f"Also write each epoch's {what} here as they come: history.csv, run.json, and "
             "TensorBoard event files when tensorboard is installed.")


log_dir_option = log_dir_option_for("losses and validation metrics")
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
        except RecursionError:  # e.g. thousands of "[": refused, not an unexpected error
            raise click.BadParameter(f"{key}=: the JSON value nests too deeply", param=param) from None
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


def print_warnings(console, warnings) -> None:
    """Each of ``warnings`` as one ``warning: …`` line on ``console`` (stderr), the text escaped: a path or a value
    holding square brackets is printed as it is, not read as rich markup."""
    from rich.markup import escape

    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def stdout_console():
    """The console for a command's result. On a terminal it fits the window; redirected to a file or a pipe it
    widens to each table's natural width (unless the table fills the width it is given) and never wraps a line,
    where rich's default of 80 columns cut record names and probabilities to "SYN…" and "0.3…"."""
    from rich.console import Console
    from rich.measure import Measurement

    class ResultConsole(Console):
        def print(self, *objects, **kwargs):
            if not self.is_terminal:
                wide = self.options.update_width(1_000_000)
                natural = max((Measurement.get(self, wide, o).maximum for o in objects
                               if not isinstance(o, str) and not getattr(o, "expand", False)), default=0)  # fetch --list wraps its prose
                self.width = max(self.width, natural)
            super().print(*objects, **kwargs)

    return ResultConsole(soft_wrap=not sys.stdout.isatty())


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


RANDOM_INIT = "random"


class InitPath(click.Path):
    """``--init``: a checkpoint file, or ``random`` for the model's own random initialisation, said explicitly
    (the random-encoder baseline of a linear probe: ``--init random --freeze-encoder``)."""

    def convert(self, value, param, ctx):
        return value if value == RANDOM_INIT else super().convert(value, param, ctx)


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
        click.option("--warmup-epochs", type=click.FloatRange(0), default=0.0, show_default=True, help="Linear warm-up length in epochs (at most 100,000)."),
        click.option("--step-size", type=click.IntRange(1), default=10, show_default=True, help="Epochs between decays (step schedule)."),
        click.option("--gamma", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="Decay factor (step schedule)."),
        click.option("--model-arg", "model_kwargs", multiple=True, callback=key_values, metavar="KEY=VALUE", help="Extra model constructor argument (JSON value); repeatable."),
        click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default; at most 4 per CPU)."),
        click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Loader threads decoding store chunks (at most 4 per CPU)."),
        click.option("--loader", "loader_mode", type=click.Choice(LOADER_MODES), default="auto", show_default=True,
                     help="Hold the training store in memory, or stream it chunk by chunk (auto: memory when the decoded store fits in half the available RAM, shared among the node's processes)."),
        click.option("--crop", type=click.IntRange(0), default=0, help="Train on random crops of this many samples (validation and eval then use sliding windows); 0: whole records."),
        click.option("--label-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                     help="Train on this fraction of the training store's records: whole patients, stratified by label, nested across fractions for one --seed."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="Mixed precision: autocast to bf16, or fp16 with a grad scaler (for CUDA)."),
        click.option("--compile", "compile_", is_flag=True, help="torch.compile the model for training (for CUDA)."),
        click.option("--sync-bn", is_flag=True, help="Synchronise BatchNorm statistics across DDP ranks (CUDA)."),
        click.option("--init", "init", type=InitPath(exists=True, dir_okay=False), metavar="CKPT|random",
                     help="Start from this checkpoint's weights (a pretrain encoder, or a classifier whose head is dropped): the same model and input; the head starts afresh. "
                          "random: the model's own random initialisation (as without --init), for --freeze-encoder's random-encoder baseline."),
        click.option("--freeze-encoder", is_flag=True, help="Train the head only (linear probe): every other weight, BatchNorm statistics included, stays as initialised; needs --init."),
        click.option("--encoder-lr", type=click.FloatRange(0, min_open=True), default=None,
                     help="Learning rate of every weight outside the head (default: --lr); scheduled like --lr."),
        click.option("--resume", is_flag=True, help="Continue the interrupted run that wrote OUTPUT.resume."),
        log_dir_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def train_fields(opts: dict) -> dict:
    """The TrainArgs fields of :func:`supervised_options`' values (all but ``val_store``, ``resume`` and ``log_dir``).

    A frozen encoder that nothing initialised is random weights: a linear probe of noise, which a forgotten
    ``--init`` would give without a word. It is the random-encoder baseline only when asked for by name."""
    if opts.get("freeze_encoder") and opts.get("init") is None:
        raise click.UsageError("--freeze-encoder needs --init: the checkpoint whose encoder to freeze (or --init random "
                               "for the random-encoder baseline)")
    renamed = {"loader_mode": "loader", "compile_": "compile"}
    fields = {renamed.get(k, k): v for k, v in opts.items() if k not in ("val_store", "resume", "log_dir")}
    if fields.get("init") == RANDOM_INIT:  # the library's own default: no checkpoint to load
        fields["init"] = None
    return fields
