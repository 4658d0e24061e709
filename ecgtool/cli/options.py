"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import json
import math
import sys

import click

from ecgtool.errors import ConfigError


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
