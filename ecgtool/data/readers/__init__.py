"""Dataset readers: one per source, all on the ``DatasetReader`` base.

``prep`` asks ``open_reader`` for the reader that recognises a raw directory.
Issue-by-issue, dataset-specific readers (PTB-XL, CPSC2018, …) join the generic
WFDB reader here.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ecgtool.data.readers.base import DatasetReader, RawRecord
from ecgtool.data.readers.chapman import ChapmanReader
from ecgtool.data.readers.cinc import CincReader
from ecgtool.data.readers.cinc2017 import Cinc2017Reader
from ecgtool.data.readers.cpsc2018 import Cpsc2018Reader
from ecgtool.data.readers.mitdb import MitdbReader
from ecgtool.data.readers.ptbxl import PtbxlReader
from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader

# Most specific first: "auto" takes the first reader that recognises a directory.
READERS = {
    "ptbxl": PtbxlReader, "cpsc2018": Cpsc2018Reader, "cinc2017": Cinc2017Reader, "mitdb": MitdbReader,
    "chapman": ChapmanReader,
    "cinc": CincReader, "wfdb": WfdbDirectoryReader,
}


def open_reader(root: str | Path, kind: str = "auto", **options) -> DatasetReader:
    """The reader for a raw dataset directory (``kind`` names one explicitly)."""
    from ecgtool.errors import ConfigError, EcgtoolError

    root = Path(root)
    if not root.is_dir():
        raise EcgtoolError(f"{root}: no such dataset directory")
    if kind == "auto":
        cls = next((c for c in READERS.values() if c.recognises(root)), None)
        if cls is None:
            raise EcgtoolError(f"{root}: no reader recognises this directory (no WFDB headers found)")
    elif kind in READERS:
        cls = READERS[kind]
    else:
        raise ConfigError(f"unknown dataset reader {kind!r}; choose from auto, {', '.join(READERS)}", "reader")
    accepted = inspect.signature(cls.__init__).parameters
    foreign = [k for k in options if k not in accepted]
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise EcgtoolError(f"{names} does not apply to the {cls.name} reader of {root}")
    return cls(root, **options)


__all__ = ["DatasetReader", "RawRecord", "READERS", "open_reader"]
