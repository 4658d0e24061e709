"""Verified, resumable, parallel downloads and guarded archive extraction.

Every file is fetched into ``NAME.part`` beside its destination, resumed with an
HTTP ``Range`` request after an interruption, hashed while it streams, and
renamed to ``NAME`` only once its SHA-256 matches the published sum (or, where
the host publishes none, once its length matches ``Content-Length``). So a file
under its real name is always complete and verified, a ``.part`` file never looks
complete, and a rerun skips what is already there (a ledger of size, mtime and
hash avoids rehashing unchanged files).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from ecgtool import __version__
from ecgtool.errors import EcgtoolError

USER_AGENT = f"ecgtool/{__version__} (+https://github.com/ecgtool)"
LEDGER = ".ecgtool-verified.json"
BLOCK = 1 << 20


class DownloadError(EcgtoolError):
    """A download that failed for good: checksum mismatch, HTTP error, or retries exhausted."""


class DownloadCancelled(Exception):
    """Another download failed: this one stops at its next block (its .part stays for a resume)."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    path: str  # relative destination path (POSIX)
    sha256: str | None = None
    size: int | None = None


def safe_relative(path: str) -> PurePosixPath:
    """A relative POSIX path that cannot escape its root (no absolute part, no '..')."""
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DownloadError(f"refusing the unsafe path {path!r}")
    return p


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``HASH  path`` or ``HASH *path``) → {path: hash}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise DownloadError(f"malformed checksum line {line[:80]!r}")
        out[name] = digest.lower()
    return out


def fetch_text(url: str, timeout: float = 60) -> str:
    """A small text resource (a checksum list, an index), with one clear error."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from e


class Ledger:
    """Sizes, mtimes and hashes of verified files, so reruns need not rehash them."""

    def __init__(self, root: Path, flush_every: float = 2.0):
        self.path = root / LEDGER
        self.lock = threading.Lock()
        self.flush_every = flush_every
        self.last_flush = time.monotonic()
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def is_verified(self, rel: str, final: Path, sha256: str | None) -> bool:
        entry = self.entries.get(rel)
        if not entry or not final.exists():
            return False
        st = final.stat()
        return entry["size"] == st.st_size and entry["mtime"] == st.st_mtime_ns and (sha256 is None or entry["sha256"] == sha256)

    def record(self, rel: str, final: Path, sha256: str) -> None:
        st = final.stat()
        with self.lock:
            self.entries[rel] = {"size": st.st_size, "mtime": st.st_mtime_ns, "sha256": sha256}
            # Rewriting the whole ledger per file would cost more than the download for
            # 40,000 small files: write it every few seconds (and at the end, flush()).
            if time.monotonic() - self.last_flush >= self.flush_every:
                self._write()

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.entries, separators=(",", ":"), sort_keys=True))
        os.replace(tmp, self.path)
        self.last_flush = time.monotonic()


def _hash_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h


def download_file(
    f: RemoteFile,
    root: Path,
    ledger: Ledger,
    *,
    retries: int = 5,
    timeout: float = 60,
    on_bytes: Callable[[int], None] = lambda n: None,
    on_size: Callable[[int], None] = lambda n: None,
    backoff: float = 1.0,
    stop: threading.Event | None = None,
) -> str:
    """Download one file into ``root / f.path`` and verify it; return "skipped" or "downloaded"."""
    rel = safe_relative(f.path)
    if not rel.parts:
        raise DownloadError(f"{f.url}: no destination file name")
    final = root.joinpath(*rel.parts)
    if ledger.is_verified(str(rel), final, f.sha256):
        on_size(final.stat().st_size)
        on_bytes(final.stat().st_size)
        return "skipped"
    if final.exists() and f.sha256 and _hash_file(final).hexdigest() == f.sha256:
        ledger.record(str(rel), final, f.sha256)
        on_size(final.stat().st_size)
        on_bytes(final.stat().st_size)
        return "skipped"
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    attempt = 0
    sized = False
    while True:
        counted = 0  # bytes this attempt added to the progress bar, taken back if it fails
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(f.url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                if have and r.status != 206:  # the server ignored the range: start over
                    have = 0
                length = r.headers.get("Content-Length")
                total = have + int(length) if length is not None else f.size
                if total is not None and not sized:
                    on_size(total)
                    sized = True
                h = _hash_file(part) if have else hashlib.sha256()
                on_bytes(have)
                counted = have
                with open(part, "ab" if have else "wb") as out:
                    while chunk := r.read(BLOCK):
                        if stop is not None and stop.is_set():
                            raise DownloadCancelled(f.url)
                        out.write(chunk)
                        h.update(chunk)
                        on_bytes(len(chunk))
                        counted += len(chunk)
            size = part.stat().st_size
            if total is not None and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and have and (f.sha256 or f.size):  # nothing left to send: the part may be whole
                h = _hash_file(part)
                break
            if e.code in (401, 403):
                raise DownloadError(f"{f.url}: HTTP {e.code} — this host needs an account or licence acceptance") from e
            if e.code < 500 or attempt >= retries:
                raise DownloadError(f"{f.url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as e:
            if attempt >= retries:
                raise DownloadError(f"{f.url}: failed after {retries + 1} attempts ({getattr(e, 'reason', e)!s})") from e
        attempt += 1
        on_bytes(-counted)  # the next attempt counts the part again from its size
        time.sleep(backoff * attempt)
    digest = h.hexdigest()
    if f.sha256 and digest != f.sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{rel}: SHA-256 mismatch (expected {f.sha256[:16]}…, got {digest[:16]}…); the partial file was removed, rerun to download it again")
    if f.sha256 is None and f.size is not None and part.stat().st_size != f.size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{rel}: expected {f.size} bytes, got {part.stat().st_size}")
    os.replace(part, final)
    ledger.record(str(rel), final, digest)
    return "downloaded"


def download_all(
    files: list[RemoteFile],
    root: Path,
    *,
    connections: int = 4,
    retries: int = 5,
    timeout: float = 60,
    progress: Callable[[int, int], None] | None = None,
    backoff: float = 1.0,
) -> dict[str, int]:
    """Download ``files`` with at most ``connections`` in parallel; the first failure stops the rest.

    ``progress(done, total)`` counts bytes; ``total`` grows as the downloads learn their sizes.
    """
    root.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(root)
    lock = threading.Lock()  # the callbacks come from every download thread
    totals = {"done": 0, "total": 0}

    def on_size(n: int) -> None:
        if progress:
            with lock:
                totals["total"] += n
                progress(totals["done"], totals["total"])

    def on_bytes(n: int) -> None:
        if progress:
            with lock:
                totals["done"] += n
                progress(totals["done"], totals["total"])

    counts = {"downloaded": 0, "skipped": 0}
    stop = threading.Event()
    pool = ThreadPoolExecutor(max(1, connections))
    futures = [
        pool.submit(download_file, f, root, ledger, retries=retries, timeout=timeout,
                    on_bytes=on_bytes, on_size=on_size, backoff=backoff, stop=stop)
        for f in files
    ]
    try:
        for fut in as_completed(futures):
            counts[fut.result()] += 1
    except BaseException:
        stop.set()  # running downloads stop at their next block, queued ones never start
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        ledger.flush()
    return counts


def extract_archive(archive: Path, dest: Path) -> list[str]:
    """Extract a zip or tar archive into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)

    def target(name: str) -> Path:
        rel = safe_relative(name)
        out = dest.joinpath(*rel.parts).resolve()
        if dest != out and dest not in out.parents:
            raise DownloadError(f"{archive.name}: member {name!r} would be written outside {dest}")
        return out

    names = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            for m in members:  # check everything before writing anything
                target(m.filename)
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"{archive.name}: member {m.filename!r} is a symbolic link")
            for m in members:
                z.extract(m, dest)
                names.append(m.filename)
        return names
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                target(m.name)
                if m.issym() or m.islnk() or m.isdev():
                    raise DownloadError(f"{archive.name}: member {m.name!r} is a link or device file")
            t.extractall(dest, members=members, filter="data")
            names = [m.name for m in members]
        return names
    raise DownloadError(f"{archive}: not a zip or tar archive")
