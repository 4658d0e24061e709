"""The hostile-input corpus (tests/hostile/, issue 11): every broken input through the real command.

One parametrised test. For each case: build its inputs, snapshot every byte under the
test's directory and every shared input it names, run the command, then check the
status (1, or 2 for a usage error), exactly one error line on stderr naming the file,
record or option at fault, no traceback, and the snapshot unchanged: nothing new left
beside the output (not even an empty directory) and every input byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_cli, write_wfdb_dir
from hostile import collect

from ecgtool.cli import cli

CASES = collect()


class Fixtures:
    """Shared inputs, built on first use (a WFDB-only run never trains the checkpoint)."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)

    def serve(self, files: dict[str, bytes]) -> str:
        """A local HTTP server for this test (stopped at its end); returns its base URL."""
        from http_fixture import FileServer

        server = FileServer(files).__enter__()
        self._request.addfinalizer(lambda: server.__exit__(None, None, None))
        return server.url

    def copy(self, name: str, dest: Path) -> Path:
        src = getattr(self, name)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
        return dest


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory) -> Path:
    """12 generic WFDB records (3 leads, 250 Hz, 4 s) with labels.csv: A, B alternating."""
    return write_wfdb_dir(tmp_path_factory.mktemp("hostile") / "raw")


@pytest.fixture(scope="session")
def small_store(small_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "small.zarr"
    run_cli("prep", small_raw, "-o", out, "--fs", 100, "--seconds", 4, "--jobs", 1)
    return out


@pytest.fixture(scope="session")
def short_store(small_raw, tmp_path_factory) -> Path:
    """small_store's records at 2 s: a store that does not pool with it."""
    out = tmp_path_factory.mktemp("hostile") / "short.zarr"
    run_cli("prep", small_raw, "-o", out, "--fs", 100, "--seconds", 2, "--jobs", 1)
    return out


@pytest.fixture(scope="session")
def encoder(small_store, tmp_path_factory) -> Path:
    """A cpc-pretrained resnet18 (base_width 8) on small_store: what train --init takes."""
    out = tmp_path_factory.mktemp("hostile") / "encoder.ckpt"
    run_cli("pretrain", "cpc", small_store, "-o", out, "--backbone", "resnet18", "--model-arg", "base_width=8",
            "--epochs", 1, "--batch-size", 8, "--device", "cpu", "--workers", 1)
    return out


@pytest.fixture(scope="session")
def teacher(small_store, tmp_path_factory) -> Path:
    """A resnet18 (base_width 8) trained for one epoch on small_store: what distill takes as its teacher."""
    out = tmp_path_factory.mktemp("hostile") / "teacher.ckpt"
    run_cli("train", "resnet18", small_store, "-o", out, "--model-arg", "base_width=8", "--epochs", 1, "--batch-size", 8,
            "--device", "cpu", "--workers", 1)
    return out


@pytest.fixture(scope="session")
def store(synthetic_splits) -> Path:
    return synthetic_splits / "test.zarr"


@pytest.fixture(scope="session")
def train_store(synthetic_splits) -> Path:
    return synthetic_splits / "train.zarr"


@pytest.fixture(scope="session")
def val_store(synthetic_splits) -> Path:
    return synthetic_splits / "val.zarr"


@pytest.fixture(scope="session")
def ckpt(trained_checkpoint) -> Path:
    return trained_checkpoint


@pytest.fixture
def fx(request) -> Fixtures:
    return Fixtures(request)


def snapshot(roots: list[Path]) -> dict:
    """{path: sha256 | 'dir' | 'link -> target'} for everything under each root (the root included)."""
    out = {}
    for root in roots:
        if not os.path.lexists(root):
            out[str(root)] = None
            continue
        paths = [root] + (sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [])
        for p in paths:
            if p.is_symlink():
                out[str(p)] = f"link -> {os.readlink(p)}"
            elif p.is_dir():
                out[str(p)] = "dir"
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _outside(path: Path, tmp: Path) -> bool:
    return tmp != path and tmp not in path.parents


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_hostile_input(case, tmp_path, fx):
    names = {"tmp": tmp_path, **(case.build(tmp_path, fx) or {})}
    argv = [str(a).format(**names) for a in case.argv]
    needle = case.needle.format(**names)
    shared = [Path(p) for p in names.values() if isinstance(p, Path) and _outside(Path(p), tmp_path)]
    before = snapshot([tmp_path, *shared])
    result = CliRunner().invoke(cli, argv, env={"COLUMNS": "200", **(case.env or {})})
    err, out = result.stderr, result.stdout
    if os.environ.get("HOSTILE_LOG"):  # a listing of what every case prints, for reviewing the messages
        with open(os.environ["HOSTILE_LOG"], "a") as f:
            f.write(f"{case.id}\t{result.exit_code}\t{(err.strip().splitlines() or [''])[-1]}\n")
    context = f"argv: {argv}\nexit {result.exit_code}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail(f"the command raised {type(result.exception).__name__}: {result.exception}\n{context}")
    assert result.exit_code in (case.exit if isinstance(case.exit, tuple) else (case.exit,)), context
    assert "Traceback" not in err and "Traceback" not in out, context
    lines = err.strip().splitlines()
    if result.exit_code == 1:
        assert len(lines) == 1, f"not one line on stderr\n{context}"
        assert lines[0].startswith("error: ") and not lines[0].startswith("error: unexpected"), context
    else:
        assert lines and lines[-1].startswith("Error:"), context
    assert needle in lines[-1], f"the error does not name {needle!r}\n{context}"
    for marker in case.forbid:
        assert not Path(str(marker).format(**names)).exists(), f"a payload ran: {marker}\n{context}"
    after = snapshot([tmp_path, *shared])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"inputs changed or outputs left behind: {changed[:10]}\n{context}"


def test_a_class_without_positives_is_named(trained_checkpoint, synthetic_splits, tmp_path):
    """Not an error (a subset of a dataset may lack a rare class), but never silent: train and eval
    print a warning naming the class and the store, and go on."""
    from hostile.stores import no_positives

    stores = {}
    for name in ("train", "test"):
        stores[name] = tmp_path / f"{name}.zarr"
        shutil.copytree(synthetic_splits / f"{name}.zarr", stores[name])
        no_positives(stores[name])
    r = run_cli("eval", trained_checkpoint, stores["test"], "--bootstrap", "0", "--json")
    last = json.loads(r.stdout)["classes"][-1]
    assert f"warning: class {last} has no positive record in the evaluated store {stores['test']}" in r.stderr
    r = run_cli("train", "resnet18", stores["train"], "--val", stores["train"], "-o", tmp_path / "m.ckpt", "--epochs", "1",
                "--batch-size", "16", "--model-arg", "base_width=8")
    assert f"warning: class {last} has no positive record in the training store {stores['train']}" in r.stderr
    assert "it is left out of the validation macro AUC" in r.stderr
