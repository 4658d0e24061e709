"""``ecgtool distill``: a teacher checkpoint and a training store → a student checkpoint."""

from __future__ import annotations

import click

from ecgtool.cli.options import (LibraryCommand, device_option, json_option, key_values, overwrite_option, seed_option,
                                 supervised_options, train_fields)
from ecgtool.cli.completion import complete_model
from ecgtool.train.choices import DISTILL_METHODS


def _leads(ctx, param, value):
    # given but naming no lead ("", ","): an empty list, which the loop refuses, never "every lead"
    return None if value is None else [lead.strip() for lead in value.split(",") if lead.strip()]


@click.command(cls=LibraryCommand)
@click.argument("teacher", type=click.Path(exists=True, dir_okay=False))
@click.argument("train_store", type=click.Path(exists=True, file_okay=False))
@click.option("--student", "model_name", required=True, metavar="MODEL", shell_complete=complete_model, help="The student: any registered model (train --list).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Student checkpoint to write.")
@click.option("--method", type=click.Choice(DISTILL_METHODS), default="kd", show_default=True,
              help="kd: classic distillation; mvms: MVMS-ECG (softmax KD, input noise); mvkt: MVKT-ECG (MLKD + contrastive lead transfer).")
@click.option("--student-leads", callback=_leads, metavar="LEAD[,LEAD...]",
              help="The leads the student reads, by name (default: every lead of the store); the teacher reads its own.")
@click.option("--alpha", type=float, default=None, help="Weight of the distillation term (kd, mvms: 0.5 with 1−alpha on the labels; mvkt: 1, MLKD's).")
@click.option("--temperature", type=float, default=None, help="Softening temperature T, 0.01 to 1000 (kd, mvms: 2; mvkt: 1).")
@click.option("--beta", type=float, default=None, help="mvkt: weight of the contrastive lead transfer (0.8).")
@click.option("--hard-weight", type=float, default=None, help="mvkt: weight of the classification loss, the paper's gamma (1).")
@click.option("--noise", "noise_std", type=float, default=None, help="Std of Gaussian noise added to both inputs in training (mvms: 0.1; others: 0).")
@click.option("--clt-arg", "clt", multiple=True, callback=key_values, metavar="KEY=VALUE",
              help="mvkt's contrastive transfer: embed_dim (128), negatives (1024), nce_temperature (0.07), momentum (0.5), negatives_from (other-labels|uniform).")
@supervised_options
@seed_option
@device_option
@overwrite_option
@json_option
def distill(teacher, train_store, model_name, output, method, student_leads, alpha, temperature, beta, hard_weight, noise_std,
            clt, seed, device, overwrite, as_json, **loop):
    """Distil the TEACHER checkpoint into a student trained on TRAIN_STORE, written to OUTPUT.

    The teacher is frozen in eval mode and reads its own input (leads,
    normalisation, view) from the same records; the student reads
    --student-leads, and its checkpoint (kind student) names them, so eval,
    explain and profile select them from any store that holds them. Training,
    validation, thresholds, --resume and DDP are train's. Prints the checkpoint
    path (JSON with --json); progress on stderr.
    """
    from ecgtool.cli.options import emit_json, resolve_device, stderr_console
    from ecgtool.cli.running import run_loop
    from ecgtool.models import model_info
    from ecgtool.train import distributed
    from ecgtool.train.distill.loop import DistillArgs, Distiller

    try:
        model_info(model_name)
    except KeyError as e:
        raise click.BadParameter(str(e), param_hint="--student") from None
    args = DistillArgs(model=model_name, seed=seed, device=str(resolve_device(device)), **train_fields(loop), teacher=teacher,
                       method=method, student_leads=student_leads, alpha=alpha, temperature=temperature, beta=beta,
                       hard_weight=hard_weight, noise_std=noise_std, clt=clt)
    env = distributed.detect()
    val_store = loop["val_store"]
    ckpt = run_loop(lambda on_step, on_epoch: Distiller(args, train_store, val_store, output, overwrite=overwrite,
                                                        on_step=on_step, on_epoch=on_epoch, env=env),
                    output=output, epochs=args.epochs, resume=loop["resume"], overwrite=overwrite, env=env,
                    log_dir=loop["log_dir"])
    if not env.is_main:
        return
    if val_store is None:
        stderr_console().print("[yellow]no --val store: the last epoch was kept and thresholds default to 0.5")
    if as_json:
        emit_json({"checkpoint": output, "metrics": ckpt.metrics, "thresholds": ckpt.thresholds,
                   "distillation": ckpt.distillation})
    else:
        click.echo(output)
