"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import json
import sys

import click

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed repeats the run.")
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.",
)
output_option = click.option("-o", "--output", required=True, type=click.Path(), help="Output path.")


def emit_json(obj) -> None:
    """The machine-readable result of a command: JSON on stdout, nothing else there."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


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
