"""The working directory of a benchmark script: ``--work DIR`` (made if missing, kept afterwards, so a
rerun reuses what is there) or a temporary directory that the caller cleans up at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path


def work_dir(given: Path | None, prefix: str) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """``(directory, the temporary directory to clean up or None)``."""
    if given is None:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        return Path(tmp.name), tmp
    given.mkdir(parents=True, exist_ok=True)
    return given, None
