"""Provenance entries and fingerprints shared by both file contracts.

Every command that writes a store or a checkpoint appends one entry: the command
line, the tool version, the time, and the fingerprints of its inputs, so that any
output can be traced back to the raw files it came from.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shlex
import sys
from pathlib import Path

from ecgtool import __version__


def command_line() -> str:
    """The command line of this process, as a user would retype it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "ecgtool")):
        argv[0] = "ecgtool"
    return shlex.join(argv)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def directory_fingerprint(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a raw dataset directory: relative names and sizes.

    Hashing every byte of a 100 GB download on each ``prep`` would cost more than
    the prep itself; ``fetch`` verifies the bytes against published checksums.
    """
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """The fingerprint of any input: a store's content hash, a file's SHA-256, a directory's listing."""
    p = Path(path)
    if p.is_dir():
        content_hash = _recorded_content_hash(p)
        if content_hash is not None:
            return "store:" + content_hash
        return "dir:" + directory_fingerprint(p)
    return "sha256:" + file_sha256(p)


def _recorded_content_hash(path: Path) -> str | None:
    """The ``content_hash`` an output recorded in its Zarr group attributes (the ECG store does:
    ``data/store.py``), read from ``zarr.json`` directly so this module depends on no contract."""
    import json

    try:
        doc = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    value = doc.get("attributes", {}).get("content_hash") if isinstance(doc, dict) and doc.get("node_type") == "group" else None
    return value if isinstance(value, str) else None


def make_entry(step: str, inputs: list[str | os.PathLike] = (), **details) -> dict:
    """One provenance entry: JSON-serialisable, appended to the output's provenance list."""
    entry = {
        "step": step,
        "command": command_line(),
        "tool": f"ecgtool {__version__}",
        "time": now_iso(),
        "inputs": [{"path": str(Path(i).resolve()), "fingerprint": fingerprint(i)} for i in inputs],
    }
    entry.update(details)
    return entry
