"""Dataset readers: one per source, all on the ``DatasetReader`` base.

``prep`` asks ``open_reader`` for the reader that recognises a raw directory.
Issue-by-issue, dataset-specific readers (PTB-XL, CPSC2018, …) join the generic
WFDB reader here.
"""

from __future__ import annotations

from pathlib import Path

from ecgtool.data.readers.base import DatasetReader, RawRecord
from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader

READERS = {"wfdb": WfdbDirectoryReader}


def open_reader(root: str | Path, kind: str = "auto", **options) -> DatasetReader:
    """The reader for a raw dataset directory (``kind`` names one explicitly)."""
    from ecgtool.errors import EcgtoolError

    root = Path(root)
    if not root.is_dir():
        raise EcgtoolError(f"{root}: no such dataset directory")
    if kind == "auto":
        for cls in READERS.values():
            if cls.recognises(root):
                return cls(root, **options)
        raise EcgtoolError(f"{root}: no reader recognises this directory (no WFDB headers found)")
    if kind not in READERS:
        raise EcgtoolError(f"unknown dataset reader {kind!r}; choose from {', '.join(READERS)}")
    return READERS[kind](root, **options)


__all__ = ["DatasetReader", "RawRecord", "READERS", "open_reader"]
