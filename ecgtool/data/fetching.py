"""``fetch NAME``: a registered source → a verified local copy, ready for ``prep``."""

from __future__ import annotations

import json
from pathlib import Path

from ecgtool.data.download import download_all, extract_archive
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
                 connections: int = 4, retries: int = 5, dry_run: bool = False, progress: bool = True) -> list:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from ecgtool.cli.options import stderr_console
    from ecgtool.data.download import Ledger

    if out.exists() and not out.is_dir():
        raise EcgtoolError(f"{out} exists and is not a directory")
    files = src.remote_files(variant, base_url=mirror)
    if dry_run:
        for f in files:
            print(f"{f.path}\t{f.sha256 or '-'}\t{f.url}")
        return files
    out.mkdir(parents=True, exist_ok=True)
    console = stderr_console()
    console.print(f"{src.name}: {len(files)} files from {mirror or src.base_url} ({src.licence}; {src.access})")
    columns = (TextColumn(src.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not progress) as bar:
        counts = download_all(files, out, connections=connections, retries=retries, progress=bar)
    console.print(f"{counts['downloaded']} downloaded, {counts['skipped']} already verified")
    ledger = Ledger(out).entries
    for name in src.archives:
        archive = out / name
        if archive.exists():
            console.print(f"unpacking {name}")
            _extract_once(archive, out, ledger[name]["sha256"])
    write_fetch_provenance(out, make_entry(
        "fetch", dataset=src.name, variant=variant or src.default_variant, source=mirror or src.base_url,
        files=len(files), verified="sha256" if src.checksums else "size only",
    ))
    return files
