"""``ecgtool train``: a model on a training store → a checkpoint."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, device_option, json_option, key_values, overwrite_option, seed_option
from ecgtool.data.choices import LOADER_MODES
from ecgtool.train.choices import AUGMENTATIONS, PRECISIONS, SCHEDULES


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
@click.argument("model_name", metavar="MODEL")
@click.argument("train_store", type=click.Path(exists=True, file_okay=False))
@click.option("--val", "val_store", type=click.Path(exists=True, file_okay=False), help="Validation store: best epoch by macro AUC, thresholds tuned on it.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option("--epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-2, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True, help="Learning-rate schedule, stepped per batch.")
@click.option("--warmup-epochs", type=click.FloatRange(0), default=0.0, show_default=True, help="Linear warm-up length.")
@click.option("--step-size", type=click.IntRange(1), default=10, show_default=True, help="Epochs between decays (step schedule).")
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="Decay factor (step schedule).")
@click.option("--model-arg", "model_kwargs", multiple=True, callback=key_values, metavar="KEY=VALUE", help="Extra model constructor argument (JSON value); repeatable.")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Loader threads decoding store chunks.")
@click.option("--loader", "loader_mode", type=click.Choice(LOADER_MODES), default="auto", show_default=True,
              help="Hold the training store in memory, or stream it chunk by chunk (auto: memory when the decoded store fits in half the available RAM, shared among the node's processes).")
@click.option("--crop", type=click.IntRange(0), default=0, help="Train on random crops of this many samples (validation and eval then use sliding windows); 0: whole records.")
@click.option("--label-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Train on this fraction of the training store's records: whole patients, stratified by label, nested across fractions for one --seed.")
@click.option("--augment", multiple=True, metavar="NAME[:KEY=VALUE...]", shell_complete=_complete_augment,
              help=f"Augment training batches (comma-separated or repeatable): {', '.join(AUGMENTATIONS)}; "
                   "e.g. noise:std=0.1. README lists their defaults.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Mixed precision: autocast to bf16, or fp16 with a grad scaler (for CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model for training (for CUDA).")
@click.option("--sync-bn", is_flag=True, help="Synchronise BatchNorm statistics across DDP ranks (CUDA).")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False),
              help="Start from this checkpoint's weights (a pretrain encoder, or a classifier whose head is dropped): the same model and input; the head starts afresh.")
@click.option("--freeze-encoder", is_flag=True, help="Train the head only (linear probe): every other weight, BatchNorm statistics included, stays as initialised.")
@click.option("--encoder-lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate of every weight outside the head (default: --lr); scheduled like --lr.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run that wrote OUTPUT.resume.")
@click.option("--list-models", is_flag=True, expose_value=False, is_eager=True, callback=_list_models, help="List the registered models and exit.")
@seed_option
@device_option
@overwrite_option
@json_option
def train(model_name, train_store, val_store, output, epochs, batch_size, lr, weight_decay, schedule, warmup_epochs,
          step_size, gamma, model_kwargs, threads, workers, loader_mode, crop, label_fraction, augment, precision, compile_, sync_bn, init, freeze_encoder, encoder_lr, resume, seed, device, overwrite, as_json):
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
    args = TrainArgs(
        model=model_name, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
        warmup_epochs=warmup_epochs, step_size=step_size, gamma=gamma, seed=seed,
        device=str(resolve_device(device)), threads=threads, workers=workers, loader=loader_mode, crop=crop,
        label_fraction=label_fraction, augment=[a for item in augment for a in item.split(",") if a.strip()],
        precision=precision, compile=compile_, sync_bn=sync_bn,
        model_kwargs=model_kwargs, init=init, freeze_encoder=freeze_encoder, encoder_lr=encoder_lr,
    )
    env = distributed.detect()
    ckpt = run_loop(lambda on_step, on_epoch: Trainer(args, train_store, val_store, output, overwrite=overwrite, on_step=on_step,
                                                      on_epoch=on_epoch, env=env),
                    epochs=epochs, resume=resume, overwrite=overwrite, env=env)
    main = env.is_main
    if not main:
        return
    if val_store is None:  # said at the end, where it explains the checkpoint (and an error stays the only line)
        stderr_console().print("[yellow]no --val store: the last epoch was kept and thresholds default to 0.5")
    if as_json:
        emit_json({"checkpoint": output, "metrics": ckpt.metrics, "thresholds": ckpt.thresholds})
    else:
        click.echo(output)
