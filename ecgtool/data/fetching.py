"""``fetch NAME``: a registered source → a verified local copy, ready for ``prep``."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from ecgtool.data.download import Ledger, check_replaceable, download_all, extract_archive, safe_relative
from ecgtool.data.readers.base import write_fetch_provenance
from ecgtool.data.sources import Source
from ecgtool.errors import EcgtoolError
from ecgtool.outputs import check_apart
from ecgtool.provenance import make_entry

EXTRACTED = ".ecgtool-extracted.json"


def _extract_once(archive: Path, dest: Path, sha256: str, overwrite: bool = False) -> None:
    """Unpack an archive unless this exact archive (by hash) was unpacked before.

    A member never replaces an existing file with different bytes unless ``overwrite``.
    """
    marker = dest / EXTRACTED
    done = json.loads(marker.read_text()) if marker.exists() else {}
    if done.get(archive.name) == sha256:
        return
    extract_archive(archive, dest, overwrite=overwrite)
    done[archive.name] = sha256
    marker.write_text(json.dumps(done, indent=1))


def local_mirror(mirror: str | None) -> Path | None:
    """The directory a ``file://`` mirror URL names (None for a remote or no mirror)."""
    if not mirror:
        return None
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme.lower() != "file":
        return None
    return Path(urllib.request.url2pathname(parts.path))


def fetch_source(src: Source, out: Path, *, variant: str | None = None, mirror: str | None = None,
                 connections: int = 4, retries: int = 5, dry_run: bool = False, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None) -> list:
    """Download ``src`` into ``out``, verify it and unpack its archives; return its files.

    ``dry_run`` only lists the files. ``progress(done, total)`` counts bytes; ``log`` receives
    one line at each stage (what is fetched from where, the counts, each archive unpacked).
    An existing file in ``out`` that fetch did not write there (never fetched, or changed
    since: the ledger says) is replaced only with ``overwrite``; without it, fetch stops
    before downloading anything.
    """
    log = log or (lambda line: None)
    if out.exists() and not out.is_dir():
        raise EcgtoolError(f"{out} exists and is not a directory")
    local = local_mirror(mirror)
    if local is not None:  # a local mirror is an input: fetching into it would write the ledger and provenance there
        check_apart(out, (local,))
    files = src.remote_files(variant, base_url=mirror)
    if dry_run:
        return files
    for f in files:  # an unsafe path in a checksum list: refused before anything is said or downloaded
        safe_relative(f.path)
    if not overwrite and out.is_dir():
        ledger = Ledger(out)
        check_replaceable(files, out, ledger)
        ledger.flush()  # files found to hold the expected bytes are not hashed again
    out.mkdir(parents=True, exist_ok=True)
    log(f"{src.name}: {len(files)} files from {mirror or src.base_url} ({src.licence}; {src.access})")
    counts = download_all(files, out, connections=connections, retries=retries, progress=progress, overwrite=overwrite)
    log(f"{counts['downloaded']} downloaded, {counts['skipped']} already verified")
    ledger = Ledger(out).entries
    for name in src.archives:
        archive = out / name
        if archive.exists():
            log(f"unpacking {name}")
            _extract_once(archive, out, ledger[name]["sha256"], overwrite=overwrite)
    write_fetch_provenance(out, make_entry(
        "fetch", dataset=src.name, variant=variant or src.default_variant, source=mirror or src.base_url,
        files=len(files), verified="sha256" if src.checksums else "size only",
    ))
    return files
