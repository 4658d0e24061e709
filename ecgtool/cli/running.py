"""Running a training loop from a command (``train``, ``pretrain``): progress, resume, pre-emption, DDP."""

from __future__ import annotations

import sys
from pathlib import Path


def run_loop(make_engine, *, output, epochs: int, resume: bool, overwrite: bool, env, log_dir=None):
    """Build the loop with ``make_engine(on_step, on_epoch)``, continue it with ``resume``, run it with a
    progress bar and one line per epoch on stderr (rank 0 only), and return its final checkpoint. With
    ``log_dir`` rank 0 also writes the epoch history there (train/history.py). A pre-emption signal exits with
    status 75 after the resume checkpoint is written; the process group is left in every case. ``output`` is the
    checkpoint the engine writes (and ``OUTPUT.resume``), which the log directory is checked against before any work."""
    from ecgtool.cli.options import print_warnings, stderr_console
    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.errors import EcgtoolError
    from ecgtool.train import distributed
    from ecgtool.train.engine import EXIT_PREEMPTED, Preempted, resume_path
    from ecgtool.train.history import check_log_dir

    if log_dir is not None:  # before the engine reads its stores; the inputs are checked again once it knows them
        check_log_dir(log_dir, resume=resume, overwrite=overwrite, outputs=(output, resume_path(Path(output))))
    main = env.is_main  # only rank 0 talks
    console = stderr_console()
    progress = ProgressDisplay("epoch", unit="steps", console=console, enabled=main)

    def on_step(epoch, step, steps, loss):
        progress(step, steps, label=f"epoch {epoch + 1}/{epochs}", note=f"loss {loss:.4f}", unit="steps")

    def on_epoch(record, best_epoch):
        parts = [f"epoch {record['epoch']:>3}/{epochs}", f"train loss {record['train_loss']:.4f}"]
        parts += [f"{key.removeprefix('train_')} {value:.4f}" for key, value in record.items()
                  if key.startswith("train_") and key != "train_loss"]  # further terms (auxiliary losses, diagnostics)
        if "val_loss" in record:
            parts += [f"val loss {record['val_loss']:.4f}", f"val macro AUC {record['val_macro_auc']:.4f}"]
        parts.append(f"lr {record['lr']:.2e}")
        console.print("  ".join(parts) + ("  [green]best[/]" if best_epoch == record["epoch"] else ""))
        progress.reported()
        if log is not None:
            log.epoch(engine.history)

    log = None
    engine = make_engine(on_step, on_epoch)
    if main:
        engine.on_validate = lambda done, total: progress(done, total, label="validation", unit="records", note="")
    try:
        if resume:
            if not engine.resume():
                raise EcgtoolError(f"--resume: there is no {resume_path(engine.out)} to continue from")
            if main:
                console.print(f"resuming at epoch {engine.start_epoch + 1}, step {engine.position['batch'] + 1}")
        elif resume_path(engine.out).exists() and not overwrite:
            # Kept on purpose: written after every epoch, it is what a kill, a crash or a failed final write leaves to
            # continue from. Only the user can tell whether a rerun should continue it or start again.
            left = resume_path(engine.out)
            raise EcgtoolError(f"{left} holds an unfinished run (interrupted, or stopped by an error after an epoch); pass --resume "
                               f"to continue it, or delete {left} (or pass --overwrite) to start again")
        if log_dir is not None:
            log = _epoch_log(log_dir, engine, resume, overwrite)
        if main:
            print_warnings(console, [*engine.warnings, *engine.schedule_warnings()])
        if env.active and main:
            console.print(f"data-parallel on {env.world_size} processes, {engine.args.batch_size // env.world_size} records each per step")
        with progress:
            return engine.run()
    except Preempted as e:
        if main:
            console.print(f"[yellow]{e}; wrote {resume_path(engine.out)} — rerun with --resume to continue")
        sys.exit(EXIT_PREEMPTED)
    finally:
        if log is not None:
            log.close()
        distributed.shutdown(env)


def _epoch_log(log_dir, engine, resume: bool, overwrite: bool):
    """The run's log directory (rank 0's; None on the others, which only check it), with what the run is
    (its arguments, output and inputs) in run.json."""
    import dataclasses

    from ecgtool import __version__
    from ecgtool.train.engine import resume_path
    from ecgtool.train.history import EpochLog, check_log_dir

    outputs = (engine.out, resume_path(engine.out))
    if not engine.env.is_main:  # the other ranks only check (rank 0's EpochLog checks too), so that all stop together
        check_log_dir(log_dir, resume=resume, overwrite=overwrite, inputs=engine.inputs, outputs=outputs)
        return None

    run = {"ecgtool": __version__, "command": sys.argv, "output": str(engine.out), "inputs": [str(p) for p in engine.inputs if p is not None],
           "arguments": dataclasses.asdict(engine.args) if dataclasses.is_dataclass(engine.args) else vars(engine.args)}
    return EpochLog(log_dir, run, start_epoch=engine.start_epoch, resume=resume, overwrite=overwrite, inputs=engine.inputs,
                    outputs=outputs)
