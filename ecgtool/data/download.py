"""Verified, resumable, parallel downloads and guarded archive extraction.

Every file is fetched into ``NAME.part`` beside its destination, resumed with an
HTTP ``Range`` request after an interruption, hashed while it streams, and
renamed to ``NAME`` only once its SHA-256 matches the published sum (or, where
the host publishes none, once its length matches ``Content-Length``). So a file
under its real name is always complete and verified, a ``.part`` file never looks
complete, and a rerun skips what is already there (a ledger of size, mtime and
hash avoids rehashing unchanged files).

The ledger is also how fetch knows which files it wrote itself: an existing file
that is not in it, or whose bytes changed since (a user edited it), is never
replaced unless the caller asks (``overwrite``), and that is checked for every
file before anything is downloaded.
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


def parse_sha256sums(text: str, source: str = "checksum list") -> dict[str, str]:
    """``sha256sum`` output (``HASH  path`` or ``HASH *path``) → {path: hash}; errors name ``source``."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise DownloadError(f"{source}: malformed checksum line {line[:80]!r}")
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

    def wrote(self, rel: str, final: Path) -> bool:
        """Whether ``final`` holds the bytes fetch recorded for it (size and mtime, else its hash)."""
        entry = self.entries.get(rel)
        if not entry or not final.is_file() or final.is_symlink():
            return False
        st = final.stat()
        if entry.get("size") != st.st_size:
            return False
        return entry.get("mtime") == st.st_mtime_ns or _hash_file(final).hexdigest() == entry.get("sha256")

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


def check_replaceable(files: list[RemoteFile], root: Path, ledger: Ledger) -> None:
    """Refuse, before anything is downloaded, to replace a file that fetch did not write there.

    A file may be replaced when the ledger says fetch wrote these very bytes (a file fetch
    downloaded and nobody changed since); one that already holds the expected content is
    kept as it is. Anything else (edited since, never fetched, a link, a directory) is the
    user's: the caller must pass ``overwrite``.
    """
    for f in files:
        rel = safe_relative(f.path)
        final = root.joinpath(*rel.parts)
        if not os.path.lexists(final):
            continue
        if ledger.is_verified(str(rel), final, f.sha256) or ledger.wrote(str(rel), final):
            continue
        if f.sha256 and final.is_file() and not final.is_symlink() and _hash_file(final).hexdigest() == f.sha256:
            ledger.record(str(rel), final, f.sha256)  # already the expected bytes: kept, not replaced
            continue
        raise DownloadError(f"{final} exists and is not the file fetch downloaded there (never fetched, or changed since); "
                            "pass --overwrite to replace it")


def download_all(
    files: list[RemoteFile],
    root: Path,
    *,
    connections: int = 4,
    retries: int = 5,
    timeout: float = 60,
    progress: Callable[[int, int], None] | None = None,
    backoff: float = 1.0,
    overwrite: bool = False,
) -> dict[str, int]:
    """Download ``files`` with at most ``connections`` in parallel; the first failure stops the rest.

    ``progress(done, total)`` counts bytes; ``total`` grows as the downloads learn their sizes.
    An existing file that fetch did not write (see ``check_replaceable``) is replaced only
    with ``overwrite``; without it the call fails before downloading anything.
    """
    ledger = Ledger(root)
    if not overwrite:
        check_replaceable(files, root, ledger)
    root.mkdir(parents=True, exist_ok=True)
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


def _same_bytes(path: Path, read: Callable[[], bytes], size: int) -> bool:
    return path.is_file() and not path.is_symlink() and path.stat().st_size == size and path.read_bytes() == read()


def extract_archive(archive: Path, dest: Path, overwrite: bool = False) -> list[str]:
    """Extract a zip or tar archive into ``dest``, refusing members that would land outside it.

    An existing file that a member would replace with different bytes is refused unless
    ``overwrite``; everything is checked before anything is written.
    """
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
                out = target(m.filename)
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"{archive.name}: member {m.filename!r} is a symbolic link")
                if not overwrite and not m.is_dir() and os.path.lexists(out) and not _same_bytes(out, lambda m=m: z.read(m), m.file_size):
                    raise DownloadError(f"{out} exists and differs from {archive.name}'s member {m.filename}; pass --overwrite to replace it")
            for m in members:
                z.extract(m, dest)
                names.append(m.filename)
        return names
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                out = target(m.name)
                if m.issym() or m.islnk() or m.isdev():
                    raise DownloadError(f"{archive.name}: member {m.name!r} is a link or device file")
                if not overwrite and m.isfile() and os.path.lexists(out) and not _same_bytes(out, lambda m=m: t.extractfile(m).read(), m.size):
                    raise DownloadError(f"{out} exists and differs from {archive.name}'s member {m.name}; pass --overwrite to replace it")
            t.extractall(dest, members=members, filter="data")
            names = [m.name for m in members]
        return names
    raise DownloadError(f"{archive}: not a zip or tar archive")
