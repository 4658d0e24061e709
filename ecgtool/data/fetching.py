"""``fetch NAME``: a registered source → a verified local copy, ready for ``prep``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ecgtool.data.download import Ledger, download_all, extract_archive
from ecgtool.data.readers.base import write_fetch_provenance
from ecgtool.data.sources import Source
from ecgtool.errors import EcgtoolError
from ecgtool.provenance import make_entry

EXTRACTED = ".ecgtool-extracted.json"


def _extract_once(archive: Path, dest: Path, sha256: str) -> None:
    """Unpack an archive unless this exact archive (by hash) was unpacked before."""
    marker = dest / EXTRACTED
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get(archive.name) == sha256:
        return
    extract_archive(archive, dest)
    done[archive.name] = sha256
    marker.write_text(json.dumps(done, indent=1))


def fetch_source(src: Source, out: Path, *, variant: str | None = None, mirror: str | None = None,
                 connections: int = 4, retries: int = 5, dry_run: bool = False,
                 progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None) -> list:
    """Download ``src`` into ``out``, verify it and unpack its archives; return its files.

    ``dry_run`` only lists the files. ``progress(done, total)`` counts bytes; ``log`` receives
    one line at each stage (what is fetched from where, the counts, each archive unpacked).
    """
    log = log or (lambda line: None)
    if out.exists() and not out.is_dir():
        raise EcgtoolError(f"{out} exists and is not a directory")
    files = src.remote_files(variant, base_url=mirror)
    if dry_run:
        return files
    out.mkdir(parents=True, exist_ok=True)
    log(f"{src.name}: {len(files)} files from {mirror or src.base_url} ({src.licence}; {src.access})")
    counts = download_all(files, out, connections=connections, retries=retries, progress=progress)
    log(f"{counts['downloaded']} downloaded, {counts['skipped']} already verified")
    ledger = Ledger(out).entries
    for name in src.archives:
        archive = out / name
        if archive.exists():
            log(f"unpacking {name}")
            _extract_once(archive, out, ledger[name]["sha256"])
    write_fetch_provenance(out, make_entry(
        "fetch", dataset=src.name, variant=variant or src.default_variant, source=mirror or src.base_url,
        files=len(files), verified="sha256" if src.checksums else "size only",
    ))
    return files
