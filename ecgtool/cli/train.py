"""``ecgtool train``: a model on a training store → a checkpoint."""

from __future__ import annotations

import click

from ecgtool.cli.options import (LibraryCommand, device_option, json_option, option, overwrite_option, seed_option,
                                 supervised_options, train_fields)
from ecgtool.cli.completion import complete_model
from ecgtool.train.choices import AUGMENTATIONS


def _complete_augment(ctx, param, incomplete):
    """TAB on --augment: the names, after any already written in the comma-separated list."""
    done, _, last = incomplete.rpartition(",")
    return [f"{done},{name}" if done else name for name in AUGMENTATIONS if name.startswith(last)]


def _list_models(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from ecgtool.models import list_models, model_info

    for name in list_models():
        click.echo(f"{name}\t{model_info(name)['description']}")
    ctx.exit(0)


@click.command(cls=LibraryCommand)
@click.argument("model_name", metavar="MODEL", shell_complete=complete_model)
@click.argument("train_store", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@supervised_options
@click.option("--augment", multiple=True, metavar="NAME[:KEY=VALUE...]", shell_complete=_complete_augment,
              help=f"Augment training batches (comma-separated or repeatable): {', '.join(AUGMENTATIONS)}; "
                   "e.g. noise:std=0.1. docs/transfer.md lists their defaults.")
@option("--list", "list_models", aliases=("--list-models",), is_flag=True, expose_value=False, is_eager=True, callback=_list_models,
        help="List the registered models (what MODEL can name) and exit.")
@seed_option
@device_option
@overwrite_option
@json_option
def train(model_name, train_store, output, augment, seed, device, overwrite, as_json, **loop):
    """Train MODEL on TRAIN_STORE and write the best checkpoint to OUTPUT.

    Prints the checkpoint path (the final metrics as JSON with --json);
    progress and per-epoch metrics go to stderr. Under torchrun or srun it
    trains data-parallel (--batch-size is the global batch); only rank 0
    writes. SIGTERM or SIGUSR1 writes OUTPUT.resume after the current step and
    exits with status 75; rerun with --resume to continue exactly.
    """
    from ecgtool.cli.options import emit_json, resolve_device, stderr_console
    from ecgtool.cli.running import run_loop
    from ecgtool.models import model_info
    from ecgtool.train import distributed
    from ecgtool.train.loop import TrainArgs, Trainer

    try:
        model_info(model_name)  # an unknown name raises the registry's "did you mean" error
    except KeyError as e:
        raise click.BadParameter(str(e), param_hint="MODEL") from None
    args = TrainArgs(model=model_name, seed=seed, device=str(resolve_device(device)), **train_fields(loop),
                     augment=[a for item in augment for a in item.split(",") if a.strip()])
    env = distributed.detect()
    val_store = loop["val_store"]
    ckpt = run_loop(lambda on_step, on_epoch: Trainer(args, train_store, val_store, output, overwrite=overwrite, on_step=on_step,
                                                      on_epoch=on_epoch, env=env),
                    output=output, epochs=args.epochs, resume=loop["resume"], overwrite=overwrite, env=env,
                    log_dir=loop["log_dir"])
    main = env.is_main
    if not main:
        return
    if val_store is None:  # said at the end, where it explains the checkpoint (and an error stays the only line)
        stderr_console().print("[yellow]no --val store: the last epoch was kept and thresholds default to 0.5")
    if as_json:
        emit_json({"checkpoint": output, "metrics": ckpt.metrics, "thresholds": ckpt.thresholds})
    else:
        click.echo(output)
