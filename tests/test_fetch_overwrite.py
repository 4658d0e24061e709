"""fetch never replaces a file it did not write (issue 11, item 3): refused before any download, unless --overwrite."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_cli
from datasets_fixture import make_cinc2017, serve_tree
from http_fixture import FileServer


def _tree(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    return make_cinc2017(tmp_path_factory.mktemp("up") / "cinc2017")


def test_an_edited_reference_is_refused_then_replaced_with_overwrite(upstream, tmp_path):
    out = tmp_path / "cinc2017"
    with FileServer(serve_tree(upstream)) as srv:
        run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url)
        ref = out / "REFERENCE-v3.csv"
        ref.write_text("A00001,A\n")  # the user's edit
        before, n = _tree(out), len(srv.requests)
        r = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, expect=1)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(ref) in lines[0] and "--overwrite" in lines[0]
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert _tree(out) == before and ref.read_text() == "A00001,A\n"
        assert [p for p, _ in srv.requests[n:]] == ["/SHA256SUMS.txt"]  # only the checksum list: no file downloaded
        run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, "--overwrite")
    assert ref.read_bytes() == (upstream / "REFERENCE-v3.csv").read_bytes()


def test_a_file_never_fetched_is_refused(upstream, tmp_path):
    out = tmp_path / "cinc2017"
    out.mkdir()
    (out / "REFERENCE-v3.csv").write_text("mine\n")
    with FileServer(serve_tree(upstream)) as srv:
        r = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, expect=1)
        assert r.stderr.count("\n") == 1 and "REFERENCE-v3.csv exists and is not the file fetch downloaded" in r.stderr
        assert not (out / "training2017.zip").exists() and sorted(p.name for p in out.iterdir()) == ["REFERENCE-v3.csv"]
        assert (out / "REFERENCE-v3.csv").read_text() == "mine\n"


def test_unchanged_fetched_files_and_identical_files_are_fine(upstream, tmp_path):
    out = tmp_path / "cinc2017"
    out.mkdir()
    (out / "REFERENCE-v3.csv").write_bytes((upstream / "REFERENCE-v3.csv").read_bytes())  # already the right bytes
    with FileServer(serve_tree(upstream)) as srv:
        run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url)
        r = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url)  # a rerun: everything verified, nothing refused
    assert "0 downloaded, 2 already verified" in r.stderr


def test_an_edited_extracted_file_is_not_replaced_by_a_new_unpacking(upstream, tmp_path):
    out = tmp_path / "cinc2017"
    (out / "training2017").mkdir(parents=True)
    (out / "training2017" / "A00001.hea").write_text("my own header\n")
    with FileServer(serve_tree(upstream)) as srv:
        r = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, expect=1)
        last = r.stderr.strip().splitlines()[-1]  # found once the archive is there: after the download's log lines
        assert last.startswith("error: ") and "A00001.hea exists and differs from training2017.zip" in last
        assert (out / "training2017" / "A00001.hea").read_text() == "my own header\n"
        assert not (out / "training2017" / "A00002.hea").exists()
        run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, "--overwrite")
    assert (out / "training2017" / "A00001.hea").read_text().startswith("A00001 1 300")


def test_every_fetch_subcommand_has_overwrite():
    from ecgtool.cli.fetch import fetch

    for name, cmd in fetch.commands.items():
        assert any(p.name == "overwrite" for p in cmd.params), name


@pytest.mark.parametrize("where", ["mirror", "mirror/sub", "."])
def test_a_local_mirror_is_an_input(upstream, tmp_path, where):
    """A file:// mirror is fetch's input: an output equal to it, inside it or containing it would write the ledger
    and PROVENANCE.json into it (audit: `fetch --mirror file://$PWD/mir -o mir` exited 0 doing so)."""
    mirror = tmp_path / "mirror"
    (tmp_path / "mirror").mkdir()
    for p in upstream.rglob("*"):
        if p.is_file():
            (mirror / p.relative_to(upstream)).parent.mkdir(parents=True, exist_ok=True)
            (mirror / p.relative_to(upstream)).write_bytes(p.read_bytes())
    before = _tree(tmp_path)
    r = run_cli("fetch", "cinc2017", "-o", tmp_path / where, "--mirror", mirror.as_uri(), expect=1)
    assert len(r.stderr.strip().splitlines()) == 1 and str(mirror) in r.stderr and "input" in r.stderr
    assert _tree(tmp_path) == before and r.stdout == ""


def test_a_local_mirror_elsewhere_is_fetched(upstream, tmp_path):
    out = tmp_path / "cinc2017"
    run_cli("fetch", "cinc2017", "-o", out, "--mirror", upstream.as_uri())
    assert (out / "REFERENCE-v3.csv").read_bytes() == (upstream / "REFERENCE-v3.csv").read_bytes()
