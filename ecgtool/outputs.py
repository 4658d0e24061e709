"""All-or-nothing outputs, shared by every command that writes a file or directory.

An output is written to a hidden temporary sibling and renamed into place only
when complete, so a crash or Ctrl-C never leaves a half-written result under the
real name; an existing output is replaced only when the user asked (--overwrite).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ecgtool.errors import EcgtoolError


def check_new_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output (unless ``overwrite``) or a missing parent directory, before any work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise EcgtoolError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise EcgtoolError(f"the directory {path.parent} for {path.name} does not exist")
    return path


def temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_path(tmp: Path, final: Path) -> None:
    """Move a finished temporary output into place; an old output is removed only once the new one is there."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)  # put the previous output back
        raise
    remove(old)


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it disappears."""
    final = check_new_output(path, overwrite)
    tmp = temporary_sibling(final)
    remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        replace_path(tmp, final)
    finally:
        if tmp.exists():
            remove(tmp)
