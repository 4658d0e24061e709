"""A training run's epoch history in a log directory: ``history.csv`` and TensorBoard event files.

A week of runs is compared by reading these files, not by parsing stderr. The CSV is rewritten whole
(atomically) after every epoch from the loop's history, which a resumed run restores from its resume
checkpoint: after ``--resume`` the file holds each epoch exactly once, in order, as if the run had never
stopped. TensorBoard event files are append-only; a resumed run's writer purges the events at and after
the epoch it resumes from, so an epoch interrupted half-logged is not shown twice. TensorBoard is used
when ``torch.utils.tensorboard`` can be imported (the ``tensorboard`` package); without it the CSV alone
is written and :attr:`EpochLog.tensorboard` says so.

``run.json`` records what the run was (the arguments, the output, the inputs), written once at the start.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from ecgtool.errors import EcgtoolError
from ecgtool.outputs import atomic_output, check_apart, check_writable, same_file

HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)  # repr: the float round-trips exactly
    return str(value)


def history_csv(history: list[dict]) -> str:
    """The epoch records as CSV: one row per epoch, the columns in the order they first appear."""
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in history:
        writer.writerow([_cell(record[k]) if k in record else "" for k in columns])
    return out.getvalue()


def is_event_file(path: str | os.PathLike) -> bool:
    """Whether TensorBoard reads ``path`` as an event file of its directory (it reads every name holding "tfevents"),
    and so whether a new run's log with ``overwrite`` removes it (``events.out.tfevents.*``)."""
    return "tfevents" in Path(path).name


def check_log_dir(directory: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, inputs=(),
                  outputs=()) -> Path:
    """Refuse, before any work: a log directory inside an input, a file in its place, another run's history there
    (unless the run resumes or overwrites), or a log file that is one of the run's other ``outputs`` (its checkpoint
    and resume checkpoint: the log would be written over the checkpoint, or the checkpoint over the log, or the log's
    TensorBoard files, which --overwrite removes, include it). Every DDP rank checks, so that all stop together."""
    path = Path(directory)
    for name in (HISTORY_FILE, RUN_FILE):  # the directory may hold the inputs, but must not lie inside one
        check_apart(path / name, inputs)
    real = Path(os.path.realpath(path))
    for output in outputs:
        if same_file(output, path):
            raise EcgtoolError(f"the output {output} is the log directory {path}; give them different names")
        if Path(os.path.realpath(output)) in real.parents:
            raise EcgtoolError(f"the log directory {path} lies inside the output {output}; give them different names")
        for name in (RUN_FILE, HISTORY_FILE):
            if same_file(output, path / name):
                raise EcgtoolError(f"the output {output} is the log directory's {name}; one would be written over the "
                                   "other: give the output another name or the log another directory")
        if is_event_file(output) and Path(os.path.realpath(output)).parent == real:
            raise EcgtoolError(f"the output {output} is named as TensorBoard's event files in the log directory {path}, "
                               "which the log writes and replaces; give the output another name or the log another directory")
    if path.exists() and not path.is_dir():
        raise EcgtoolError(f"the log directory {path} is not a directory")
    if (path / HISTORY_FILE).exists() and not (resume or overwrite):
        raise EcgtoolError(f"{path} already holds a run's history; give another log directory, --resume the run or --overwrite")
    check_writable(path / RUN_FILE)  # the directory, or the nearest one that exists where it is still to be made
    return path


class EpochLog:
    """Writes a run's epoch history under ``directory`` as the run goes; ``start_epoch`` is the number of
    epochs already done (a resumed run's), whose events are kept."""

    def __init__(self, directory: str | os.PathLike, run: dict, *, start_epoch: int = 0, resume: bool = False,
                 overwrite: bool = False, inputs=(), outputs=()):
        self.dir = check_log_dir(directory, resume=resume, overwrite=overwrite, inputs=inputs, outputs=outputs)
        history = self.dir / HISTORY_FILE
        self.dir.mkdir(parents=True, exist_ok=True)
        if overwrite and not resume:  # a new run, a new log: the old run's events would be drawn with the new
            for stale in (history, *self.dir.glob("events.out.tfevents.*")):
                stale.unlink(missing_ok=True)
        self._write(RUN_FILE, json.dumps(run, indent=2, default=str) + "\n")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        # purge_step: events of epochs after those kept (logged by the interrupted run) are dropped
        self.tensorboard = SummaryWriter(str(self.dir), purge_step=start_epoch + 1 if resume else None)

    def _write(self, name: str, text: str) -> None:
        with atomic_output(self.dir / name, True) as tmp:
            Path(tmp).write_text(text)

    def epoch(self, history: list[dict]) -> None:
        """After an epoch: the whole history to CSV, the last record to TensorBoard."""
        self._write(HISTORY_FILE, history_csv(history))
        if self.tensorboard is not None and history:
            record = history[-1]
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
