"""The one progress display of the CLI, behind the plain ``progress(done, total)`` callbacks of the libraries.

On a terminal it is a transient rich bar on stderr with the rate and the time
remaining. Where stderr is not a terminal (a Slurm log, a pipe) a bar would
leave control characters or empty lines, so it writes one plain line every
``interval`` seconds instead, and a last one at the end. Disabled, it shows
nothing (e.g. on DDP ranks other than 0).

Nothing is shown before the first update, so that an error found while the
inputs are checked stays the only line on stderr.
"""

from __future__ import annotations

import time

from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

LOG_INTERVAL = 30.0  # seconds between lines in a log: often enough to see a job move, rarely enough to read it


def rate_text(rate: float, unit: str) -> str:
    """``45.2 records/s``, or for fewer than one a second ``4.3 s/step``: a rate under 0.05/s printed as
    ``0.0 steps/s`` on every line of a slow model's run."""
    if rate >= 0.95:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit.removesuffix('s')}"


class _Rate(ProgressColumn):
    """Items per second (rich has a rate column for bytes only)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(rate_text(task.speed, self.unit) if task.speed else "", style="progress.data.speed")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class ProgressDisplay:
    """Call it as ``progress(done, total)``; ``label`` and ``note`` (e.g. a loss) may change with every call.

    ``unit`` names what is counted ("records", "steps"); ``"bytes"`` shows sizes and
    transfer speeds. ``total`` may be None (not known yet) and may grow.
    """

    def __init__(self, label: str, *, unit: str = "records", enabled: bool = True, console=None,
                 interval: float = LOG_INTERVAL):
        if console is None:
            from ecgtool.cli.options import stderr_console

            console = stderr_console()
        self.console, self.label, self.unit, self.enabled, self.interval = console, label, unit, enabled, interval
        self.note = ""
        self._bar: Progress | None = None
        self._task = None
        self._rate: _Rate | None = None
        self._state: tuple[int, int | None] | None = None  # the latest (done, total)
        self._logged: tuple[int, int | None] | None = None  # the state of the latest log line
        self._start = self._last_line = 0.0
        self._start_done = 0

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, done: int, total: int | None = None, *, label: str | None = None, note: str | None = None,
                 unit: str | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if unit is not None and unit != self.unit:  # a phase that counts something else (records, then resamples)
            self.unit = unit
            if self._rate is not None:
                self._rate.unit = unit
        if label is not None and label != self.label or self._state is None or done < self._state[0]:
            # a new phase (an epoch, a retried download): the rate starts again
            self._start, self._start_done, self._last_line = now, done, now
            if self._bar is not None:
                self._bar.reset(self._task, total=total, completed=done)
        self.label = self.label if label is None else label
        self.note = self.note if note is None else note
        self._state = (done, total)
        if self.console.is_terminal:
            self._update_bar(done, total)
        elif now - self._last_line >= self.interval:
            self._log(now)

    def reported(self) -> None:
        """The caller has printed a line that sums up the latest state (train's epoch line after its validation):
        the end of the run need not repeat it."""
        self._logged = self._state

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._logged is not None and self._state != self._logged:
            self._log(time.monotonic())  # the end of a run the log has followed

    # -- a terminal: a live bar

    def _update_bar(self, done: int, total: int | None) -> None:
        if self._bar is None:
            if self.unit == "bytes":
                columns = (DownloadColumn(), TransferSpeedColumn())
            else:
                self._rate = _Rate(self.unit)
                columns = (MofNCompleteColumn(), self._rate)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), *columns, TimeRemainingColumn(),
                                 TextColumn("{task.fields[note]}"), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total, note=self.note)
        self._bar.update(self._task, description=self.label, completed=done, total=total, note=self.note)

    # -- a log: a line now and then

    def _log(self, now: float) -> None:
        done, total = self._state
        self._logged, self._last_line = self._state, now
        self.console.file.write(self.line(done, total, now - self._start, done - self._start_done) + "\n")
        self.console.file.flush()

    def line(self, done: int, total: int | None, elapsed: float, advanced: int) -> str:
        """``prep: 1200/21837 records (5%), 45.2 records/s, 7m36s left``: one log line."""
        size = decimal if self.unit == "bytes" else str
        count = f"{size(done)}/{size(total)}" if total else size(done)
        parts = [f"{self.label}: {count}{'' if self.unit == 'bytes' else ' ' + self.unit}"
                 + (f" ({100 * done / total:.0f}%)" if total else "")]
        rate = advanced / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{decimal(int(rate))}/s" if self.unit == "bytes" else rate_text(rate, self.unit))
            if total and done < total:
                parts.append(f"{_duration((total - done) / rate)} left")
        if total and done >= total:
            parts.append(f"done in {_duration(elapsed)}")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)
