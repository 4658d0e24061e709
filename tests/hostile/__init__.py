"""A corpus of hostile inputs (issue 11): every case runs through the real command.

Each module here (``records`` for WFDB and label files, ``stores``, ``checkpoints``, ``cli_options``, ``fetch``,
``pretrain``, ``distill``)
lists ``CASES``. A case builds its inputs under the test's ``tmp_path`` from small
shared fixtures, names the paths it made, and gives the argv (``{name}``
placeholders filled from those paths, ``{tmp}`` always there), the exit status
(1 failure, 2 usage) and the text that the one error line must contain (the file,
record or option at fault, formatted the same way). ``tests/test_hostile.py`` runs
them all and checks the conventions of DESIGN.md: that status, one line on stderr
naming the culprit, no traceback, nothing new in the output's directory, and every
input byte-identical afterwards.

Cases that another item of issue 11 fixes carry ``xfail(strict=True)`` with the
item and what happens today, so that the fix turns them into a failure until the
mark goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest


@dataclass
class Case:
    id: str
    build: Callable[[Path, "object"], dict]  # (tmp_path, fixtures) -> {name: path}
    argv: list
    exit: int | tuple = 1  # 1 failure, 2 usage error; (1, 2) where a fix to come may choose either
    needle: str = ""  # the one error line contains it (formatted with the built names)
    xfail: str | None = None  # "issue 11 item N: what happens today"
    slow: bool = False
    forbid: tuple = ()  # paths (formatted) that must not exist afterwards: a payload's marker
    env: dict | None = None  # environment of the command (ECGTOOL_<COMMAND>_<OPTION> defaults)

    def param(self):
        marks = []
        if self.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=self.xfail))
        if self.slow:
            marks.append(pytest.mark.slow)
        return pytest.param(self, id=self.id, marks=marks)


def noise(n: int, seed: int = 0) -> bytes:
    """``n`` random bytes, the same every run: a case must not pass or fail by chance."""
    import random

    return random.Random(seed).randbytes(n)


def collect() -> list[Case]:
    from . import checkpoints, cli_options, distill, fetch, pretrain, records, stores

    cases = [*records.CASES, *stores.CASES, *checkpoints.CASES, *cli_options.CASES, *fetch.CASES, *pretrain.CASES,
             *distill.CASES]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate case ids: {dup}"
    return cases
