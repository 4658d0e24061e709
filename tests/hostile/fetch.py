"""``fetch`` against a local mirror: a user's files in the output (item 3), a broken checksum list, unsafe paths.

An archive member that would replace a user's file is found only once the archive is
downloaded (the verified archive then stays for a rerun): tests/test_fetch_overwrite.py covers it."""

from __future__ import annotations

from pathlib import Path

from . import Case


def _upstream(tmp: Path, fx, sums: bytes | None = None):
    from datasets_fixture import make_cinc2017, serve_tree

    up = make_cinc2017(tmp / "upstream")
    files = serve_tree(up)
    if sums is not None:
        files["/SHA256SUMS.txt"] = sums
    return up, fx.serve(files)


def _fetched(edit):
    """A complete fetch of the CinC 2017 miniature into tmp/out, then ``edit(out)`` as a user would."""

    def build(tmp: Path, fx) -> dict:
        from conftest import run_cli

        up, url = _upstream(tmp, fx)
        out = tmp / "out"
        run_cli("fetch", "cinc2017", "-o", out, "--mirror", url)
        edit(out)
        return {"out": out, "url": url}

    return build


def _user_files(files: dict):
    def build(tmp: Path, fx) -> dict:
        up, url = _upstream(tmp, fx)
        out = tmp / "out"
        out.mkdir()
        for name, data in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
        return {"out": out, "url": url}

    return build


def _sums(text: bytes):
    def build(tmp: Path, fx) -> dict:
        up, url = _upstream(tmp, fx, sums=text)
        return {"url": url}

    return build


def _no_sums(tmp: Path, fx) -> dict:
    return {"url": fx.serve({})}


def _out_is_a_file(tmp: Path, fx) -> dict:
    up, url = _upstream(tmp, fx)
    (tmp / "out").write_text("a file, not a directory\n")
    return {"url": url}


FETCH = ["fetch", "cinc2017", "-o", "{tmp}/out", "--mirror", "{url}"]

CASES = [
    Case("fetch-edited-reference-in-output", _fetched(lambda out: (out / "REFERENCE-v3.csv").write_text("A00001,A\n")),
         FETCH, 1, "{out}/REFERENCE-v3.csv"),
    Case("fetch-edited-archive-in-output", _fetched(lambda out: (out / "training2017.zip").write_bytes(b"PK not really")),
         FETCH, 1, "{out}/training2017.zip"),
    Case("fetch-user-file-never-fetched", _user_files({"REFERENCE-v3.csv": b"mine\n"}), FETCH, 1, "{out}/REFERENCE-v3.csv"),
    Case("fetch-user-directory-where-a-file-goes", _user_files({"REFERENCE-v3.csv/notes.txt": b"mine\n"}), FETCH, 1,
         "{out}/REFERENCE-v3.csv"),
    Case("fetch-checksum-list-missing", _no_sums, FETCH, 1, "SHA256SUMS.txt"),
    Case("fetch-checksum-list-malformed", _sums(b"this is not a checksum list\n"), FETCH, 1, "SHA256SUMS.txt"),
    # CinC 2021 takes every listed path under training/*, and fnmatch's * crosses "/" and ".."
    Case("fetch-checksum-list-unsafe-path", _sums(b"a" * 64 + b"  training/../../escape.csv\n" + b"b" * 64 + b"  training/ok.hea\n"),
         ["fetch", "cinc2021", "-o", "{tmp}/out", "--mirror", "{url}"], 1, "training/../../escape.csv"),
    Case("fetch-output-is-a-file", _out_is_a_file, FETCH, 1, "{tmp}/out"),
    Case("fetch-synthetic-output-exists", lambda tmp, fx: (tmp / "syn").mkdir() or {},
         ["fetch", "synthetic", "-o", "{tmp}/syn", "--records", "4", "--fs", "100"], 1, "{tmp}/syn"),
]
