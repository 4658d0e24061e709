"""Downloads against a local server: resume after a dropped connection, checksums, hostile archives."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile

import pytest
from http_fixture import FileServer

from ecgtool.data.download import (
    LEDGER,
    DownloadError,
    RemoteFile,
    download_all,
    extract_archive,
    parse_sha256sums,
)

BIG = os.urandom(3 << 20) + b"tail"  # several blocks, so a drop lands mid-file


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_resume_after_dropped_connection(tmp_path):
    with FileServer({"/d/big.bin": BIG, "/d/small.txt": b"hello"}) as srv:
        srv.drop_after["/d/big.bin"] = 1_500_000
        files = [RemoteFile(f"{srv.url}/d/big.bin", "big.bin", sha(BIG)), RemoteFile(f"{srv.url}/d/small.txt", "sub/small.txt", sha(b"hello"))]
        counts = download_all(files, tmp_path, connections=2, backoff=0)
    assert counts == {"downloaded": 2, "skipped": 0}
    assert (tmp_path / "big.bin").read_bytes() == BIG and (tmp_path / "sub/small.txt").read_bytes() == b"hello"
    ranges = [r for p, r in srv.requests if p == "/d/big.bin"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0  # resumed, not restarted
    assert not list(tmp_path.rglob("*.part"))


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path):
    (tmp_path / "big.bin.part").write_bytes(BIG[:1000])
    with FileServer({"/big.bin": BIG}) as srv:
        download_all([RemoteFile(f"{srv.url}/big.bin", "big.bin", sha(BIG))], tmp_path)
    assert srv.requests == [("/big.bin", "bytes=1000-")]
    assert (tmp_path / "big.bin").read_bytes() == BIG


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    (tmp_path / "big.bin.part").write_bytes(b"garbage")
    with FileServer({"/big.bin": BIG}) as srv:
        srv.ignore_range.add("/big.bin")
        download_all([RemoteFile(f"{srv.url}/big.bin", "big.bin", sha(BIG))], tmp_path)
    assert (tmp_path / "big.bin").read_bytes() == BIG


def test_rerun_skips_verified_files(tmp_path):
    with FileServer({"/a": b"abc"}) as srv:
        f = [RemoteFile(f"{srv.url}/a", "a", sha(b"abc"))]
        download_all(f, tmp_path)
        assert download_all(f, tmp_path) == {"downloaded": 0, "skipped": 1}
        assert len(srv.requests) == 1
        assert (tmp_path / LEDGER).exists()
        (tmp_path / "a").write_bytes(b"abd")  # changed since fetch wrote it: not fetch's to replace
        with pytest.raises(DownloadError, match=r"/a exists and is not the file fetch downloaded there.*--overwrite"):
            download_all(f, tmp_path)
        assert (tmp_path / "a").read_bytes() == b"abd" and len(srv.requests) == 1  # refused before any download
        assert download_all(f, tmp_path, overwrite=True) == {"downloaded": 1, "skipped": 0}
    assert (tmp_path / "a").read_bytes() == b"abc"


def test_checksum_mismatch_names_the_file_and_leaves_nothing_complete(tmp_path):
    with FileServer({"/x/rec.dat": b"tampered"}) as srv:
        with pytest.raises(DownloadError, match=r"rec.dat: SHA-256 mismatch"):
            download_all([RemoteFile(f"{srv.url}/x/rec.dat", "rec.dat", sha(b"original"))], tmp_path)
    assert not (tmp_path / "rec.dat").exists() and not (tmp_path / "rec.dat.part").exists()


def test_http_errors_are_clear(tmp_path):
    with FileServer({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_all([RemoteFile(f"{srv.url}/missing", "missing")], tmp_path)


def test_unsafe_destination_paths_are_refused(tmp_path):
    with pytest.raises(DownloadError, match="unsafe path"):
        download_all([RemoteFile("http://127.0.0.1:9/x", "../evil")], tmp_path)


def test_sha256sums_parsing():
    text = f"{'a' * 64}  records100/00000/00001_lr.hea\n{'B' * 64} *RECORDS\n\n"
    assert parse_sha256sums(text) == {"records100/00000/00001_lr.hea": "a" * 64, "RECORDS": "b" * 64}
    with pytest.raises(DownloadError):
        parse_sha256sums("nonsense line")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_archive_extraction_and_hostile_paths(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(_zip({"TrainingSet1/A0001.mat": b"x", "REFERENCE.csv": b"y"}))
    assert sorted(extract_archive(good, tmp_path / "out")) == ["REFERENCE.csv", "TrainingSet1/A0001.mat"]
    for name in ("../escape.txt", "/abs/path.txt", "a/../../escape.txt"):
        bad = tmp_path / "bad.zip"
        bad.write_bytes(_zip({"ok.txt": b"fine", name: b"evil"}))
        with pytest.raises(DownloadError):
            extract_archive(bad, tmp_path / "out2")
        assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out2" / "ok.txt").exists()


def test_tar_with_symlink_is_refused(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    with pytest.raises(DownloadError, match="link"):
        extract_archive(bad, tmp_path / "out")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as t:
        data = b"A00001,N\n"
        info = tarfile.TarInfo("training2017/REFERENCE.csv")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    extract_archive(good, tmp_path / "out")
    assert (tmp_path / "out/training2017/REFERENCE.csv").read_bytes() == b"A00001,N\n"


def test_progress_counts_every_byte_once_after_retries(tmp_path):
    seen = {"bytes": 0}
    with FileServer({"/big.bin": BIG}) as srv:
        srv.drop_after["/big.bin"] = 700_000
        from ecgtool.data.download import Ledger, download_file

        download_file(RemoteFile(f"{srv.url}/big.bin", "big.bin", sha(BIG)), tmp_path, Ledger(tmp_path), backoff=0,
                      on_bytes=lambda n: seen.__setitem__("bytes", seen["bytes"] + n))
    assert seen["bytes"] == len(BIG)


def test_a_failure_stops_the_other_downloads(tmp_path):
    files = {f"/f{i}": os.urandom(1000) for i in range(20)}
    with FileServer(files) as srv:
        remote = [RemoteFile(f"{srv.url}/f{i}", f"f{i}", sha(b"wrong" if i == 0 else files[f"/f{i}"])) for i in range(20)]
        with pytest.raises(DownloadError, match="f0: SHA-256 mismatch"):
            download_all(remote, tmp_path, connections=1)
    assert len(srv.requests) < 20  # the queue was cancelled after the failure


def test_a_file_fetch_wrote_and_nobody_changed_is_replaced_when_upstream_changes(tmp_path):
    with FileServer({"/a": b"new"}) as srv:
        (tmp_path / "a").write_bytes(b"old")
        from ecgtool.data.download import Ledger

        ledger = Ledger(tmp_path)
        ledger.record("a", tmp_path / "a", sha(b"old"))
        ledger.flush()
        assert download_all([RemoteFile(f"{srv.url}/a", "a", sha(b"new"))], tmp_path) == {"downloaded": 1, "skipped": 0}
    assert (tmp_path / "a").read_bytes() == b"new"


def test_archive_member_never_replaces_a_different_existing_file(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"d/x.txt": b"member", "d/y.txt": b"same"}))
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "d" / "y.txt").write_bytes(b"same")  # identical: fine
    (out / "d" / "x.txt").write_bytes(b"mine")
    with pytest.raises(DownloadError, match=r"x.txt exists and differs from a.zip's member d/x.txt; pass --overwrite"):
        extract_archive(archive, out)
    assert (out / "d" / "x.txt").read_bytes() == b"mine"
    extract_archive(archive, out, overwrite=True)
    assert (out / "d" / "x.txt").read_bytes() == b"member"
