"""The CLI's one progress display: a live bar on a terminal, periodic one-line logs elsewhere."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ecgtool.cli import progress as progress_mod
from ecgtool.cli.progress import ProgressDisplay


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", c)
    return c


def console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=120)


def test_terminal_shows_a_bar_with_rate_and_time_left(clock):
    con = console(terminal=True)
    with ProgressDisplay("prep", console=con) as progress:
        for done in range(0, 11):
            clock.now += 1.0
            progress(done, 10)
        assert progress._bar is not None  # a live rich bar, not log lines
    out = con.file.getvalue()
    assert "prep" in out and "\x1b[" in out  # drawn with terminal control sequences
    assert "records/s" in out


def test_log_writes_one_plain_line_per_interval_and_a_last_one(clock):
    con = console(terminal=False)
    with ProgressDisplay("prep", console=con, interval=30) as progress:
        for t, done in [(0, 0), (10, 100), (20, 200), (31, 310), (40, 400), (62, 620), (70, 1000)]:
            clock.now = 1000.0 + t
            progress(done, 1000)
    lines = con.file.getvalue().splitlines()
    assert lines == [
        "prep: 310/1000 records (31%), 10.0 records/s, 1m09s left",
        "prep: 620/1000 records (62%), 10.0 records/s, 38s left",
        "prep: 1000/1000 records (100%), 14.3 records/s, done in 1m10s",
    ]
    assert "\x1b" not in con.file.getvalue()


def test_log_is_silent_for_a_short_run_and_before_the_first_update(clock):
    con = console(terminal=False)
    with ProgressDisplay("merge", console=con) as progress:
        progress(1, 2)
        clock.now += 1
        progress(2, 2)
    with ProgressDisplay("explain", console=console(terminal=True)):
        pass  # an error before the first update: nothing drawn
    assert con.file.getvalue() == ""


def test_log_follows_phases_and_bytes(clock):
    con = console(terminal=False)
    with ProgressDisplay("epoch", unit="steps", console=con, interval=5) as progress:
        progress(0, 50, label="epoch 1/2", note="loss 0.7000")
        clock.now += 6
        progress(30, 50, note="loss 0.5000")
        clock.now += 1
        progress(0, 50, label="epoch 2/2")  # a new epoch: the rate starts again
        clock.now += 5
        progress(10, 50, note="loss 0.4000")
    assert con.file.getvalue().splitlines() == [
        "epoch 1/2: 30/50 steps (60%), 5.0 steps/s, 4s left, loss 0.5000",
        "epoch 2/2: 10/50 steps (20%), 2.0 steps/s, 20s left, loss 0.4000",
    ]
    con = console(terminal=False)
    with ProgressDisplay("ptbxl", unit="bytes", console=con, interval=1) as progress:
        progress(0, 2_000_000)
        clock.now += 2
        progress(1_000_000, 2_000_000)
    assert con.file.getvalue().splitlines()[0] == "ptbxl: 1.0 MB/2.0 MB (50%), 500.0 kB/s, 2s left"


def test_disabled_shows_nothing(clock):
    for terminal in (True, False):
        con = console(terminal)
        with ProgressDisplay("epoch", console=con, enabled=False, interval=0) as progress:
            progress(1, 2)
            clock.now += 10
            progress(2, 2)
        assert con.file.getvalue() == ""


def test_a_phase_may_count_another_unit(clock):
    con = console(terminal=False)
    with ProgressDisplay("eval", console=con, interval=5) as progress:
        progress(0, 100, label="m.ckpt on test.zarr")
        clock.now += 6
        progress(100, 100)
        progress(0, 1000, label="bootstrap m.ckpt", unit="resamples")
        clock.now += 6
        progress(600, 1000)
    assert con.file.getvalue().splitlines() == [
        "m.ckpt on test.zarr: 100/100 records (100%), 16.7 records/s, done in 6s",
        "bootstrap m.ckpt: 600/1000 resamples (60%), 100.0 resamples/s, 4s left",
    ]
    with ProgressDisplay("eval", console=console(terminal=True)) as progress:
        progress(5, 10)
        progress(0, 10, label="bootstrap", unit="resamples")
        assert progress._rate.unit == "resamples"  # the bar's rate column follows


def test_a_slow_phase_shows_seconds_per_item(clock):
    con = console(terminal=False)
    with ProgressDisplay("epoch", unit="steps", console=con, interval=30) as progress:
        progress(0, 7, label="epoch 1/1")
        clock.now += 95
        progress(3, 7)  # 0.03 steps/s printed as "0.0 steps/s" before
    assert con.file.getvalue().splitlines() == ["epoch 1/1: 3/7 steps (43%), 31.7 s/step, 2m07s left"]


def test_a_summary_line_of_the_caller_is_not_repeated_at_the_end(clock):
    """train's epoch line sums up the last validation: a log must not end with the validation count after it."""
    con = console(terminal=False)
    with ProgressDisplay("epoch", unit="steps", console=con, interval=5) as progress:
        progress(0, 10, label="epoch 1/1")
        clock.now += 6
        progress(10, 10)
        progress(0, 50, label="validation", unit="records")
        clock.now += 1
        progress(50, 50)
        con.print("epoch   1/1  train loss 0.5")
        progress.reported()
    assert con.file.getvalue().splitlines() == ["epoch 1/1: 10/10 steps (100%), 1.7 steps/s, done in 6s", "epoch   1/1  train loss 0.5"]
