"""The ``ecgtool`` command group.

Subcommands live in one thin module each and are imported only when invoked
(or when their own ``--help`` is asked for), so ``ecgtool --help`` and TAB
completion never import torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from ecgtool import __version__
from ecgtool.cli.options import apply_conventions
from ecgtool.errors import EcgtoolError

# name -> (module, attribute, one-line help shown by `ecgtool --help` without importing the module)
COMMANDS = {
    "fetch": ("ecgtool.cli.fetch", "fetch", "Download a dataset (or generate the built-in synthetic one)."),
    "prep": ("ecgtool.cli.prep", "prep", "Preprocess a raw dataset directory into an ECG store."),
    "merge": ("ecgtool.cli.merge", "merge", "Join the parts of a `prep --shard` run into one store."),
    "split": ("ecgtool.cli.split", "split", "Split a store patient-wise into train/val/test stores."),
    "pretrain": ("ecgtool.cli.pretrain", "pretrain", "Pretrain an encoder self-supervised (CPC, CLOCS, ST-MEM, ECG-JEPA)."),
    "train": ("ecgtool.cli.train", "train", "Train a model on a store and write a checkpoint."),
    "distill": ("ecgtool.cli.distill", "distill", "Distil a teacher checkpoint into a (reduced-lead) student."),
    "eval": ("ecgtool.cli.eval", "eval_", "Evaluate a checkpoint on a store."),
    "predict": ("ecgtool.cli.predict", "predict", "Apply a checkpoint to raw recordings (WFDB, .mat, CSV)."),
    "profile": ("ecgtool.cli.profile", "profile", "Count parameters and MACs and measure latency."),
    "explain": ("ecgtool.cli.explain", "explain", "Explain decisions: saliency maps and clinical ECG charts."),
    "export": ("ecgtool.cli.export", "export", "Export a checkpoint's model to ONNX or TorchScript, parity-checked."),
    "info": ("ecgtool.cli.info", "info", "Summarise a store or a checkpoint."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return apply_conventions(getattr(importlib.import_module(module), attr), (name,))

    def format_commands(self, ctx, formatter):
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # the reader went away (`ecgtool … | head`): stop quietly, as a shell tool does
            _drop_stdout()
            ctx.exit(141)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # one line for the user; the traceback only on request
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, EcgtoolError):
                message = str(e)
            elif isinstance(e, OSError) and e.filename:
                message = f"{e.filename}: {e.strerror}"
            else:
                message = f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)"
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


# show_default: every option's default in --help (click passes it down to the subcommands' contexts); the
# environment variables are set on each option from its flag by apply_conventions (docs/cli.md)
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="ecgtool")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """Deep-learning ECG classification research, one Unix-style step at a time.

    Every option can also be set from the environment: ECGTOOL_<COMMAND>_<OPTION>,
    the command as typed and the option's long flag, upper case, dashes as
    underscores: ECGTOOL_TRAIN_BATCH_SIZE=32, ECGTOOL_FETCH_SYNTHETIC_SEED=1.
    The command line wins. Reference: docs/cli.md.
    """
    ctx.ensure_object(dict)["debug"] = debug
    name = ctx.invoked_subcommand
    if name in COMMANDS and not ctx.resilient_parsing:
        import os

        from ecgtool.cli.options import unread_envvars

        for warning in unread_envvars(ctx.command.get_command(ctx, name), (name,), os.environ):
            click.echo(f"warning: {warning}", err=True)


apply_conventions(cli)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit raises no second BrokenPipeError."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    try:
        cli(prog_name="ecgtool")
    finally:  # click ends with sys.exit; what is still buffered is flushed here, where a closed pipe can be caught
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
            sys.exit(141)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
