"""The example scripts stay in step with the CLI: they parse, every `ecgtool` subcommand and option
they use exists, and the Slurm scripts' requeue logic and prep array work (Slurm commands stubbed)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import pytest
from conftest import write_wfdb_dir

from ecgtool.cli import COMMANDS, cli
from ecgtool.data.store import open_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".sh", ".sbatch"))
SLURM = EXAMPLES / "slurm"
# a commented-out alternative command (checked too), as opposed to prose
COMMENTED_COMMAND = re.compile(r"^\s*#\s*(srun|torchrun|ecgtool)\b")
SHELL_OPERATORS = set(";&|<>()")


def readme_slurm_scripts() -> list[str]:
    """The scripts named in the first column of the "On a Slurm cluster" table (docs/cluster.md)."""
    section = (ROOT / "docs" / "cluster.md").read_text().split("\n## On a Slurm cluster\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([\w.-]+)` \|", section, flags=re.MULTILINE)


def test_the_slurm_examples_are_there_runnable_and_documented():
    """(Parsing and the subcommands they use: test_script_parses, test_ecgtool_invocation_exists.)"""
    on_disk = sorted(p.name for p in SLURM.iterdir())
    expected = {"train-1gpu.sbatch", "train-ddp-multinode.sbatch", "prep-array.sbatch", "merge.sbatch", "submit-prep.sh"}
    assert expected <= set(on_disk)
    assert sorted(readme_slurm_scripts()) == on_disk  # every script has its row in the docs, every row its script
    for name in on_disk:
        path = SLURM / name
        assert path.is_file() and os.access(path, os.X_OK), f"{name} is not an executable file"
        assert path.read_text().startswith("#!/usr/bin/env bash\n"), f"{name}: no bash shebang"
    # one place for Slurm scripts (one way to do each thing): no batch script elsewhere under examples/
    assert [p.parent for p in EXAMPLES.rglob("*.sbatch")] == [SLURM] * sum(n.endswith(".sbatch") for n in on_disk)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_script_parses(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".sbatch"], ids=lambda p: p.name)
def test_sbatch_directives_come_before_any_command(script):
    """sbatch stops reading #SBATCH lines at the first line that is not a comment."""
    lines = script.read_text().splitlines()
    first_code = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    late = [line for line in lines[first_code:] if line.startswith("#SBATCH")]
    assert not late, f"#SBATCH after the first command is ignored by sbatch: {late}"
    assert any(line.startswith("#SBATCH") for line in lines)


def invocations(script: Path) -> list[tuple[int, list[str]]]:
    """Every `ecgtool ...` command of a script, as (line number, tokens up to the next shell operator)."""
    return invocations_in(script.read_text())


def invocations_in(text: str) -> list[tuple[int, list[str]]]:
    """Every `ecgtool ...` command of shell text (see :func:`invocations`)."""
    flag_vars = dict(re.findall(r"\b(\w+)=(--[\w-]+)", text))  # resume=--resume, used as $resume
    found = []
    lines = text.replace("\\\n", " ").splitlines()  # line numbers shift after a continuation; good enough
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            if not COMMENTED_COMMAND.match(line):
                continue
            line = line.lstrip()[1:]
        if not re.search(r"(^|[\s/])ecgtool\s", line):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for start, token in enumerate(tokens):
            if token == "ecgtool" or token.endswith("/ecgtool"):
                args = []
                for t in tokens[start + 1:]:
                    if t and set(t) <= SHELL_OPERATORS:
                        break
                    m = re.fullmatch(r"\$\{?(\w+)\}?", t)
                    args.append(flag_vars.get(m.group(1), t) if m else t)
                found.append((number, args))
    return found


def option_names(command: click.Command) -> set[str]:
    """The current spellings: an old one kept as a hidden alias (docs/cli.md) is not for the examples."""
    ctx = click.Context(command)
    return {o for p in command.get_params(ctx) if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}


ALL_INVOCATIONS = [(s, n, args) for s in SCRIPTS for n, args in invocations(s)]


def test_the_examples_use_the_commands_they_show():
    used = {(s.parent.name, args[0]) for s, _, args in ALL_INVOCATIONS if args}
    assert {("slurm", c) for c in ("train", "eval", "prep", "merge")} <= used
    assert ("examples", "fetch") in used


def invocation_errors(args: list[str]) -> list[str]:
    """What is wrong with one `ecgtool ARGS…` invocation: an unknown subcommand or option."""
    root_options = option_names(cli)
    while args and args[0] in root_options:
        args = args[1:]
    if not args:
        return ["ecgtool without a subcommand"]
    name = args[0]
    if name not in COMMANDS:
        return [f"no subcommand {name!r}"]
    command = cli.get_command(click.Context(cli), name)
    rest = args[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):  # fetch synthetic …
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            return [f"ecgtool {name} has no subcommand {rest[0]!r}"]
        name, command, rest = f"{name} {rest[0]}", sub, rest[1:]
    known = option_names(command)
    return [f"ecgtool {name} has no option {t.split('=', 1)[0]}" for t in rest
            if t.startswith("-") and t != "-" and not re.fullmatch(r"-\d[\d.e-]*", t) and t.split("=", 1)[0] not in known]


@pytest.mark.parametrize("script, line, args", ALL_INVOCATIONS,
                         ids=[f"{s.name}:{n}" for s, n, _ in ALL_INVOCATIONS])
def test_ecgtool_invocation_exists(script, line, args):
    assert not invocation_errors(args), f"{script.relative_to(ROOT)}:{line}: {'; '.join(invocation_errors(args))}"


def test_the_checker_catches_what_it_should(tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        #SBATCH --time=1:00:00
        flag=--no-such-flag
        ecgtool prep raw -o s.zarr \\
          --shard "$I/$N" --seconds=10 > log  # a comment
        srun torchrun -m ecgtool --debug train m s --epochs 3 $flag &
        # srun ecgtool merge parts/*.zarr -o s.zarr --bogus
        echo "ecgtool train --in-quotes-is-not-a-command"
        # prose: ecgtool split --not-checked
        ecgtool fetch synthetic -o raw --num-records 10
        ecgtool fetch nowhere
        ecgtool frobnicate
    """))
    found = invocations(script)
    assert [args[0] for _, args in found] == ["prep", "--debug", "merge", "fetch", "fetch", "frobnicate"]
    assert [invocation_errors(args) for _, args in found] == [
        [], ["ecgtool train has no option --no-such-flag"], ["ecgtool merge has no option --bogus"], [],
        ["ecgtool fetch has no subcommand 'nowhere'"], ["no subcommand 'frobnicate'"],
    ]


# -- behaviour of the Slurm scripts, with Slurm and training stubbed ----------------------------------
STUBS = {
    # training that, on USR1/TERM, saves OUT.resume and exits 75, as `ecgtool train` does
    "ecgtool": r"""
        echo "ecgtool $*" >> "$STUB_LOG"
        [ "$1" = eval ] && { echo '{}'; exit 0; }
        out=""; prev=""
        for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
        echo $$ > "$STUB_DIR/train.pid"
        case "$STUB_TRAIN" in
          finish) exit 0 ;;
          fail) exit 1 ;;
        esac
        trap 'touch "$out.resume"; exit 75' USR1 TERM
        touch "$STUB_DIR/started"
        for _ in $(seq 200); do sleep 0.05; done  # 10 s at most, should the test go wrong
        exit 3
    """,
    "scontrol": r"""
        echo "scontrol $*" >> "$STUB_LOG"
        [ "$1" = show ] && printf 'node1\nnode2\n'
        exit 0
    """,
    "scancel": r"""
        echo "scancel $*" >> "$STUB_LOG"
        kill -"${1#--signal=}" "$(cat "$STUB_DIR/train.pid")"
    """,
    "srun": r"""
        echo "srun $*" >> "$STUB_LOG"
        exec "$@"
    """,
    # torchrun runs its process and, like the real one after a signal, exits 1 whatever the process did
    "torchrun": r"""
        echo "torchrun $*" >> "$STUB_LOG"
        while [ "$1" != -m ]; do shift; done
        shift 2  # -m ecgtool
        ecgtool "$@" && exit 0
        exit 1
    """,
    "sbatch": r"""
        echo "sbatch $*" >> "$STUB_LOG"
        [ "$1" = --parsable ] && echo "123;cluster"
        exit 0
    """,
}


@pytest.fixture()
def stubs(tmp_path):
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
        path.chmod(0o755)
    venv = tmp_path / "venv"  # the job's environment: activating it puts the stubs first on PATH
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{bin_dir}{os.pathsep}$PATH"\n')
    env = {**os.environ, "ECGTOOL_VENV": str(venv), "STUB_LOG": str(tmp_path / "log"),
           "STUB_DIR": str(tmp_path), "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2",
           "SLURM_CPUS_PER_TASK": "32", "SPLITS": "splits", "OUT": str(tmp_path / "m.ckpt")}
    return env


def log(env) -> list[str]:
    path = Path(env["STUB_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def run_job(script, env, cwd, train, sig=None):
    Path(env["STUB_LOG"]).unlink(missing_ok=True)
    proc = subprocess.Popen(["bash", str(script)], env={**env, "STUB_TRAIN": train}, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if sig is not None:
            started = Path(env["STUB_DIR"]) / "started"
            deadline = time.monotonic() + 10
            while not started.exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            started.unlink()
            proc.send_signal(sig)  # what Slurm sends the batch shell (B:USR1) or every process (TERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_one_gpu_job_requeues_itself_and_resumes(stubs, tmp_path, sig):
    script = SLURM / "train-1gpu.sbatch"
    rc, _, err = run_job(script, stubs, tmp_path, "preempt", sig)
    assert rc == 0, err
    calls = log(stubs)
    assert calls[0].startswith("ecgtool train resnet18 splits/train.zarr") and "--resume" not in calls[0]
    assert calls[-1] == "scontrol requeue 42" and (tmp_path / "m.ckpt.resume").exists()
    assert not any(c.startswith("ecgtool eval") for c in calls)
    # the requeued run continues and, once trained, evaluates
    rc, _, err = run_job(script, {**stubs, "SLURM_RESTART_COUNT": "1"}, tmp_path, "finish")
    assert rc == 0, err
    calls = log(stubs)
    assert calls[0].endswith("--resume") and calls[1].startswith("ecgtool eval")
    assert "scontrol requeue 42" not in calls and (tmp_path / "m.metrics.json").exists()


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".sbatch"], ids=lambda p: p.name)
def test_batch_scripts_activate_their_environment(script, stubs, tmp_path):
    """A job runs ecgtool from ECGTOOL_VENV, not from the PATH of the shell that submitted it."""
    text = script.read_text()
    first_call = min(n for n, _ in invocations(script) if not script.read_text().splitlines()[n - 1].lstrip().startswith("#"))
    assert 'source "$ECGTOOL_VENV/bin/activate"' in "\n".join(text.splitlines()[:first_call])
    rc, _, err = run_job(script, {**stubs, "ECGTOOL_VENV": str(tmp_path / "none")}, tmp_path, "finish")
    assert rc == 1 and f"no Python environment at {tmp_path / 'none'}" in err and not log(stubs)


def test_one_gpu_job_fails_without_requeue(stubs, tmp_path):
    rc, _, _ = run_job(SLURM / "train-1gpu.sbatch", stubs, tmp_path, "fail")
    assert rc == 1 and not any("requeue" in c for c in log(stubs))


def test_ddp_job_launches_torchrun_on_every_node_and_requeues(stubs, tmp_path):
    script = SLURM / "train-ddp-multinode.sbatch"
    rc, _, err = run_job(script, stubs, tmp_path, "preempt", signal.SIGUSR1)
    assert rc == 0, err
    calls = log(stubs)
    torchrun = next(c for c in calls if c.startswith("torchrun"))
    assert "--nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint node1:29500 --rdzv-id 42" in torchrun
    assert "scancel --signal=TERM 42" in calls and calls[-1] == "scontrol requeue 42"
    rc, _, err = run_job(script, stubs, tmp_path, "finish")
    assert rc == 0, err
    assert log(stubs)[-1].endswith("--resume") and not any("requeue" in c for c in log(stubs))
    rc, _, _ = run_job(script, stubs, tmp_path, "fail")  # a failure, not a signal: no requeue
    assert rc == 1 and not any("requeue" in c for c in log(stubs))


def test_submit_prep_chains_merge_after_the_array(stubs, tmp_path):
    stub_path = f"{tmp_path / 'stub-bin'}{os.pathsep}{os.environ['PATH']}"  # it submits; the jobs activate the environment
    rc, _, err = run_job(SLURM / "submit-prep.sh", {**stubs, "PATH": stub_path}, tmp_path, "finish")
    assert rc == 0, err
    assert log(stubs) == [f"sbatch --parsable {SLURM / 'prep-array.sbatch'}",
                          f"sbatch --dependency=afterok:123 {SLURM / 'merge.sbatch'}"]


@pytest.mark.slow  # three real ecgtool processes, ~5 s
def test_prep_array_and_merge_scripts_build_a_store(tmp_path):
    """The array's tasks and the merge job, run one after another with the real ecgtool."""
    raw = write_wfdb_dir(tmp_path / "raw", n=7, fs=250, seconds=4.0)
    env = {**os.environ, "ECGTOOL_VENV": sys.prefix, "RAW": str(raw),
           "PARTS": str(tmp_path / "parts"), "STORE": str(tmp_path / "store.zarr"), "SLURM_CPUS_PER_TASK": "1",
           "SLURM_ARRAY_TASK_COUNT": "2"}
    tasks = [subprocess.Popen(["bash", str(SLURM / "prep-array.sbatch")], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for task in tasks:  # concurrently, as Slurm runs an array's tasks
        _, err = task.communicate(timeout=120)
        assert task.returncode == 0, err
    r = subprocess.run(["bash", str(SLURM / "prep-array.sbatch")], env={**env, "SLURM_ARRAY_TASK_ID": "1"},
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "exists" in r.stderr  # a resubmitted array redoes only the missing parts
    r = subprocess.run(["bash", str(SLURM / "merge.sbatch")], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    store = open_store(tmp_path / "store.zarr")
    assert len(store) == 7 and list(store.record_id) == [f"R{i:03d}" for i in range(7)]
    assert store.attrs["preprocessing"]["samples"] == 1000 and shlex.split(r.stdout) == [str(tmp_path / "store.zarr")]
