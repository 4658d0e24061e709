"""The promises of ecgtool/outputs.py: outputs apart from inputs, no silent replacement by a race,
the old or the new output under the real name at every instant, and killed runs' leftovers cleaned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mounted_tmpfs, run_cli

from ecgtool import outputs
from ecgtool.errors import EcgtoolError
from ecgtool.outputs import atomic_output, check_apart, publish, remove_stale_siblings, temporary_sibling


def _tree(path: Path) -> dict:
    """Every file under ``path`` with its bytes (a file: itself)."""
    path = Path(path)
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(params=["renameat2", "fallback"])
def system(request, monkeypatch):
    """Every publishing test runs with Linux's renameat2 and with the portable fallbacks."""
    if request.param == "fallback":
        monkeypatch.setattr(outputs, "_renameat2_fn", None)
    elif outputs._renameat2_fn is None:
        pytest.skip("this system's C library has no renameat2")
    return request.param


def test_an_output_may_not_be_an_input_inside_one_or_contain_one(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    (raw / "a.hea").write_text("x")
    (tmp_path / "link").symlink_to(raw)
    os.link(raw / "a.hea", tmp_path / "hard.hea")
    for out, given, words in [(raw, raw, "is the input"), (tmp_path / "link", raw, "is the input"),
                              (tmp_path / "hard.hea", raw / "a.hea", "is the input"),  # a hard link to an input file
                              (raw / "sub" / "s.zarr", raw, "lies inside"), (tmp_path, raw, "contains the input")]:
        with pytest.raises(EcgtoolError, match=words):
            check_apart(out, [given])
    check_apart(tmp_path / "s.zarr", [raw, None])  # a sibling is fine


def test_an_output_reached_through_a_link_inside_an_input_lies_inside_it(tmp_path):
    """raw/sub links to ext: raw/sub/x.zarr resolves into ext, out of raw, yet it is written as inside raw (audit)."""
    raw, ext = tmp_path / "raw", tmp_path / "ext"
    raw.mkdir()
    ext.mkdir()
    (raw / "sub").symlink_to(ext)
    with pytest.raises(EcgtoolError, match="lies inside the input"):
        check_apart(raw / "sub" / "x.zarr", [raw])
    with pytest.raises(EcgtoolError, match="contains the input"):
        check_apart(raw / "sub", [raw / "sub" / "a.hea"])
    check_apart(ext / "x.zarr", [raw])  # the link's target itself is not the input


def test_prep_through_a_linked_subdirectory_of_its_input_is_refused(synthetic_raw, tmp_path):
    raw, ext = tmp_path / "raw", tmp_path / "ext"
    shutil.copytree(synthetic_raw, raw)
    ext.mkdir()
    (raw / "sub").symlink_to(ext)
    before = _tree(tmp_path)
    r = run_cli("prep", raw, "-o", raw / "sub" / "x.zarr", "--jobs", 1, expect=1)
    assert r.stderr.strip() == f"error: the output {raw / 'sub' / 'x.zarr'} lies inside the input {raw}; write it elsewhere"
    assert _tree(tmp_path) == before and not any(ext.iterdir())


@pytest.mark.parametrize("where", ["labels.csv", "containing-dir"])
def test_prep_never_writes_over_or_around_its_label_file(synthetic_raw, tmp_path, where):
    """prep -o labels.csv --overwrite, labels.csv being --labels, was refused only as a file of another kind (audit);
    the label file is an input like the raw directory."""
    labels = tmp_path / "labels.csv"
    shutil.copy(synthetic_raw / "labels.csv", labels)
    if where == "containing-dir":  # an output directory that would contain the label file
        (tmp_path / "dir").mkdir()
        labels = shutil.move(labels, tmp_path / "dir" / "labels.csv")
        out = tmp_path / "dir"
    else:
        out = labels
    before = _tree(tmp_path)
    r = run_cli("prep", synthetic_raw, "--labels", labels, "-o", out, "--overwrite", "--jobs", 1, expect=1)
    words = "is the input" if out == labels else "contains the input"
    assert r.stderr.strip() == f"error: the output {out} {words} {labels}; " + (
        "writing it would destroy the input" if out == labels else "replacing it would destroy the input")
    assert _tree(tmp_path) == before


def test_overwrite_never_destroys_an_input(synthetic_raw, synthetic_store, tmp_path):
    """The campaign's two cases: prep onto its raw directory, split onto its store, both with --overwrite."""
    before_raw, before_store = _tree(synthetic_raw), _tree(synthetic_store)
    r = run_cli("prep", synthetic_raw, "-o", synthetic_raw, "--overwrite", expect=1)
    assert r.stderr.strip() == f"error: the output {synthetic_raw} is the input {synthetic_raw}; writing it would destroy the input"
    r = run_cli("split", synthetic_store, "-o", synthetic_store, "--overwrite", expect=1)
    assert "is the input" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("prep", synthetic_raw, "-o", synthetic_raw / "inside.zarr", "--overwrite", expect=1)
    assert "lies inside the input" in r.stderr
    r = run_cli("split", synthetic_store, "-o", synthetic_store.parent, "--overwrite", expect=1)
    assert "contains the input" in r.stderr
    assert _tree(synthetic_raw) == before_raw and _tree(synthetic_store) == before_store


def test_a_name_that_appears_meanwhile_is_never_replaced(tmp_path, system):
    final = tmp_path / "out"
    tmp = temporary_sibling(final)
    tmp.write_text("mine")
    final.write_text("theirs")  # another run published first
    with pytest.raises(EcgtoolError, match="appeared while this run was writing it"):
        publish(tmp, final, overwrite=False)
    assert final.read_text() == "theirs"
    # directories alike
    final_dir, tmp_dir = tmp_path / "d", temporary_sibling(tmp_path / "d")
    tmp_dir.mkdir()
    (tmp_dir / "x").write_text("mine")
    final_dir.mkdir()
    (final_dir / "x").write_text("theirs")
    with pytest.raises((EcgtoolError, OSError)):
        publish(tmp_dir, final_dir, overwrite=False)
    assert (final_dir / "x").read_text() == "theirs"


def test_replacing_swaps_old_for_new_and_leaves_no_sibling(tmp_path, system):
    for directory in (False, True):
        final = tmp_path / ("d" if directory else "f")
        for content in ("old", "new"):
            with atomic_output(final, overwrite=True, directory=directory) as tmp:
                (tmp / "x" if directory else tmp).write_text(content)
        assert (final / "x" if directory else final).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_a_failed_write_leaves_the_old_output(tmp_path, system):
    final = tmp_path / "f"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(final, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert final.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_two_writers_racing_for_one_store_the_second_fails(tmp_path, system):
    """Both pass the up-front check; the first to finish publishes, the second is refused and leaves it."""
    import numpy as np

    from ecgtool.data.store import StoreWriter, open_store

    attrs = {"fs": 100.0, "leads": ["I"], "units": "mV", "classes": ["A"], "class_descriptions": {}, "task": "t",
             "multi_label": True, "normalisation": {"method": "none"}, "patient_ids": "real", "dataset": "d"}

    def writer(value):
        w = StoreWriter(tmp_path / "s.zarr", n_leads=1, n_samples=10, attrs=attrs)
        w.__enter__()
        w.append(np.full((2, 1, 10), value, np.float32), np.ones((2, 1), np.uint8), ["r1", "r2"], ["p1", "p2"], [0, 0])
        return w

    first, second = writer(1.0), writer(2.0)
    first.__exit__(None, None, None)
    with pytest.raises(EcgtoolError, match="appeared while this run was writing it"):
        second.__exit__(None, None, None)
    assert float(open_store(tmp_path / "s.zarr").rows()[0, 0, 0]) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    import socket

    final = tmp_path / "s.zarr"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid, host = int(dead.stdout), socket.gethostname()  # a process of this machine that has exited
    gone = [f".s.zarr.partial-{host}-{pid}", f".s.zarr.old-{host}-{pid}", f".s.zarr.partial-{pid}"]  # the last: no host
    kept = [f".s.zarr.partial-{host}-{os.getppid()}",  # a running process's work in progress
            f".s.zarr.partial-node17-{pid}",  # another machine's: only it can tell whether its process is gone
            ".s.zarr.partial-notes"]  # not a sibling of ours
    for name in gone + kept:
        (tmp_path / name).mkdir()
    removed = remove_stale_siblings(final)
    assert sorted(p.name for p in removed) == sorted(gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_two_prep_runs_to_one_output_one_wins(synthetic_raw, tmp_path):
    """The campaign's race: two prep to the same output at once used to both exit 0, the second
    replacing the first. Now exactly one succeeds and the other fails in one line."""
    out = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "ecgtool", "prep", str(synthetic_raw), "-o", str(out), "--fs", "100", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1).strip().splitlines()
    assert len(loser) == 1 and ("appeared while this run was writing it" in loser[0] or "already exists" in loser[0]), loser
    run_cli("info", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_split_is_published_as_a_unit(synthetic_store, tmp_path):
    out = tmp_path / "splits"
    run_cli("split", synthetic_store, "-o", out, "--seed", "0")
    first = {n: _tree(out / n)["zarr.json"] for n in ("train.zarr", "val.zarr", "test.zarr")}
    (out / "notes.txt").write_text("mine")
    r = run_cli("split", synthetic_store, "-o", out, "--seed", "1", "--overwrite", expect=1)
    assert "holds other files than a split's stores (e.g. notes.txt)" in r.stderr
    (out / "notes.txt").unlink()
    run_cli("split", synthetic_store, "-o", out, "--seed", "1", "--overwrite")
    second = {n: _tree(out / n)["zarr.json"] for n in ("train.zarr", "val.zarr", "test.zarr")}
    assert all(first[n] != second[n] for n in first)  # every store is the new run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits"]
    empty = tmp_path / "made-by-user"
    empty.mkdir()
    run_cli("split", synthetic_store, "-o", empty)  # an empty directory is a new output
    assert sorted(p.name for p in empty.iterdir()) == ["test.zarr", "train.zarr", "val.zarr"]


def test_overwrite_replaces_only_an_output_of_the_same_kind(tmp_path, system):
    folder = tmp_path / "m.ckpt"
    folder.mkdir()
    (folder / "precious").write_text("x")
    with pytest.raises(EcgtoolError, match="is a directory; --overwrite replaces an output of the same kind only"):
        with atomic_output(folder, overwrite=True) as tmp:
            tmp.write_text("checkpoint")
    assert (folder / "precious").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_a_complete_temporary_sibling_is_refused_by_readers(tmp_path, synthetic_store, trained_checkpoint):
    """A write killed between marking its output complete and renaming it leaves a complete-looking
    ``.NAME.partial-HOST-PID``; it is not an output, and info (every reader) says so in one line."""
    import shutil

    from conftest import run_cli

    from ecgtool.outputs import temporary_sibling

    store = temporary_sibling(tmp_path / "s.zarr")
    shutil.copytree(synthetic_store, store)
    r = run_cli("info", store, expect=1)
    assert "temporary copy of a write to" in r.stderr and str(tmp_path / "s.zarr") in r.stderr
    ckpt = temporary_sibling(tmp_path / "m.ckpt", "old")
    shutil.copy(trained_checkpoint, ckpt)
    r = run_cli("info", ckpt, expect=1)
    assert "temporary copy of a write to" in r.stderr


# -- an output directory this process cannot write in ---------------------------------------------
@pytest.fixture
def unwritable(tmp_path):
    """A directory this process cannot write in: mode 0o555, or for root (whom permissions do not stop) a read-only
    tmpfs where the sandbox lets a test mount one."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    with mounted_tmpfs(ro, "ro,size=64k"):
        yield ro


def _one_line_naming(r, out) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: cannot write the output: "), r.stderr
    assert ".partial-" not in lines[0] and "Traceback" not in r.stderr
    return lines[0]


def test_an_unwritable_output_directory_is_refused_before_any_work(unwritable, synthetic_raw, synthetic_splits,
                                                                   trained_checkpoint, tmp_path, monkeypatch):
    """Found when the output was written, it cost a whole training epoch (or export's trace, predict's reading) and the
    message named the hidden temporary sibling; now every command refuses up front, naming its output."""
    from ecgtool.train.engine import Engine

    def trained(*args, **kwargs):
        raise AssertionError("training started before the output directory was checked")

    monkeypatch.setattr(Engine, "start", trained)
    train = synthetic_splits / "train.zarr"
    cases = [("train", "resnet18", train, "-o", unwritable / "m.ckpt", "--epochs", 1),
             ("train", "resnet18", train, "-o", tmp_path / "m.ckpt", "--epochs", 1, "--log-dir", unwritable / "logs"),
             ("distill", trained_checkpoint, train, "--student", "resnet18", "-o", unwritable / "s.ckpt", "--epochs", 1),
             ("pretrain", "cpc", train, "--backbone", "resnet18", "-o", unwritable / "e.ckpt", "--epochs", 1),
             ("export", trained_checkpoint, "-o", unwritable / "m.pt"),
             ("predict", trained_checkpoint, synthetic_raw, "-o", unwritable / "p.csv"),
             ("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--predictions", unwritable / "p.csv"),
             ("merge", train, "-o", unwritable / "m.zarr")]
    for args in cases:
        out = args[-1] if args[0] == "eval" else args[args.index("-o") + 1]
        if "--log-dir" in args:
            out = unwritable / "logs" / "run.json"
        line = _one_line_naming(run_cli(*args, expect=1), out)
        assert line.endswith(("is on a read-only file system", "no permission to write in the directory " + str(unwritable))), line
    assert os.listdir(unwritable) == [] and sorted(os.listdir(tmp_path)) == ["ro"]



def test_an_output_directory_found_unwritable_late_names_the_output(unwritable, synthetic_splits, trained_checkpoint,
                                                                     monkeypatch):
    """Where the check up front is wrong (os.access and ACLs, a network file system, a directory changed meanwhile),
    the failure still names the output, not its hidden temporary sibling, and leaves nothing."""
    monkeypatch.setattr(outputs.os, "access", lambda *args, **kwargs: True)
    for args, out in [(("export", trained_checkpoint, "-o", unwritable / "m.pt"), unwritable / "m.pt"),
                      (("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--predictions", unwritable / "p.csv"),
                       unwritable / "p.csv")]:
        line = _one_line_naming(run_cli(*args, expect=1), out)
        assert line.endswith(("read-only file system (nothing was left behind)", "permission denied (nothing was left behind)"))
    assert os.listdir(unwritable) == []
