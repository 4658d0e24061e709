"""The CLI's conventions, checked over the whole command tree (docs/cli.md).

Every test walks the tree from ``ecgtool.cli.COMMANDS`` through the real group, so
a command or option added later is held to the same rules: each option's
environment variable is named after its flag and changes what click parses; every
default is shown in --help; no value makes an option fail with anything but a
usage error; old spellings still parse and show nowhere; model names complete
without importing torch. Options are parsed (``make_context``), never run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import click
import pytest
from click.core import ParameterSource
from conftest import run_cli

from ecgtool.cli import COMMANDS, cli
from ecgtool.cli.options import AliasedOption

ROOT_ARGS = [next(iter(COMMANDS))]  # a group is parsed with a subcommand after it (else it prints its help)


def walk():
    """(path, command) for the root, every command and every subcommand, in the order --help lists them."""
    def visit(command, path):
        yield path, command
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                yield from visit(command.get_command(ctx, name), (*path, name))

    yield from visit(cli, ())


TREE = list(walk())


def options(command):
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]


def expected_envvar(path, option) -> str:
    """The documented name, spelled out again here rather than imported: ECGTOOL_, the command path, the long flag."""
    flag = next(o for o in option.opts if o.startswith("--"))
    return re.sub(r"[^A-Z0-9]", "_", "_".join(["ECGTOOL", *path, flag[2:]]).upper())


CASES = [(path, command, option) for path, command in TREE for option in options(command)]
IDS = [" ".join([*path, option.opts[-1]]) or option.opts[-1] for path, _, option in CASES]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ECGTOOL_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """An existing directory, an existing file and a new path for Path parameters."""
    root = tmp_path_factory.mktemp("conventions")
    (root / "dir").mkdir()
    (root / "file").write_bytes(b"x")
    return {"dir": str(root / "dir"), "file": str(root / "file"), "new": str(root / "new")}


def candidates(param, paths) -> list[str]:
    """Values to try for a parameter, most likely valid first."""
    t = param.type
    if isinstance(t, click.Choice):
        return [str(c) for c in t.choices]
    if isinstance(t, click.Path):
        if not t.exists:
            return [paths["new"]]
        return [paths["file"] if not t.dir_okay else paths["dir"]] + ([paths["file"]] if t.file_okay else [])
    numbers = ["3", "2", "1", "0.5", "0.75", "2.5", "17", "51"]
    texts = ["cpu", "I,II", "a=1", "0/2", "0.5,0.25,0.25", "0.25,0.4", "x"]
    if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
        return numbers
    return texts + numbers


def required_args(command, paths, skip=None) -> list[str]:
    """The least a command needs to parse: its arguments and required options, each with a valid value."""
    argv = []
    for p in command.params:
        if p is skip or not p.required:
            continue
        value = candidates(p, paths)[0]
        argv += [value] if isinstance(p, click.Argument) else [p.opts[0], value]
    return argv


def parse(path, argv, env=None, monkeypatch=None):
    """Parse ``ecgtool PATH ARGV`` through the real group without running it; the leaf context."""
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    try:
        if not path:  # the root's own options
            return cli.make_context("ecgtool", [*argv, *ROOT_ARGS])
        ctx, command = cli.make_context("ecgtool", [path[0]]), cli
        for i, name in enumerate(path):
            command = command.get_command(ctx, name)
            ctx = command.make_context(name, list(argv) if i == len(path) - 1 else [path[i + 1]], parent=ctx)
        return ctx
    finally:
        for key in env or {}:
            monkeypatch.delenv(key)


class Recorder:
    """Stands in for an eager option's callback (train --list …): records the value instead of acting on it."""

    def __init__(self):
        self.values = []

    def __call__(self, ctx, param, value):
        self.values.append(value)
        return value


def parsed_value(path, option, argv, env, monkeypatch):
    """The option's value as parsed, and its source; an eager callback is recorded instead of run."""
    if not option.expose_value:
        recorder = Recorder()
        monkeypatch.setattr(option, "callback", recorder)
        ctx = parse(path, argv, env, monkeypatch)
        return recorder.values[-1], ctx.get_parameter_source(option.name)
    ctx = parse(path, argv, env, monkeypatch)
    return ctx.params[option.name], ctx.get_parameter_source(option.name)


def accepted_value(path, option, base, paths, monkeypatch):
    """A value the command line accepts for the option that parses to something other than its default: (text, value)."""
    try:
        default = parsed_value(path, option, base, None, monkeypatch)[0]
    except click.MissingParameter:
        default = object()  # a required option: any value differs
    accepted = []
    for text in candidates(option, paths):
        try:
            value, _ = parsed_value(path, option, [*base, option.opts[0], text], None, monkeypatch)
        except click.ClickException:
            continue
        if value != default:
            return text, value
        accepted.append((text, value))
    if accepted:  # a one-value choice (fetch chapman --variant all): the source still shows the variable was read
        return accepted[0]
    pytest.fail(f"no value to try for {option.opts[0]}: add one to candidates()")


@pytest.mark.parametrize("path, command, option", CASES, ids=IDS)
def test_every_option_reads_its_documented_environment_variable(path, command, option, paths, monkeypatch):
    name = expected_envvar(path, option)
    base = required_args(command, paths, skip=option)
    if option.is_flag and option.is_bool_flag:
        on, _ = parsed_value(path, option, [*base, option.opts[0]], None, monkeypatch)
        off_argv = [*base, option.secondary_opts[0]] if option.secondary_opts else base
        off, _ = parsed_value(path, option, off_argv, None, monkeypatch)
        for text in ("1", "true", "yes", "True", "YES"):
            assert parsed_value(path, option, base, {name: text}, monkeypatch) == (on, ParameterSource.ENVIRONMENT), text
        for text in ("0", "false", "no"):
            value, source = parsed_value(path, option, base, {name: text}, monkeypatch)
            assert source is ParameterSource.ENVIRONMENT and value == (off if option.secondary_opts else False), text
        return
    text, value = accepted_value(path, option, base, paths, monkeypatch)
    assert parsed_value(path, option, base, {name: text}, monkeypatch) == (value, ParameterSource.ENVIRONMENT)


def test_the_python_name_is_not_an_environment_variable(monkeypatch):
    """Only the flag's name works: click's own rule (the Python name, here ``as_json``, ``k``) reads nothing."""
    ctx = parse(("split",), ["."], {"ECGTOOL_SPLIT_K": "5", "ECGTOOL_SPLIT_AS_JSON": "1", "ECGTOOL_SPLIT_RATIOS": "0.5,0.25,0.25",
                                    "ECGTOOL_SPLIT_OUTPUT": "o"}, monkeypatch)
    assert (ctx.params["k"], ctx.params["as_json"], ctx.params["ratios"]) == (10, False, [0.5, 0.25, 0.25])


def test_fetch_mirror_also_reads_the_shared_variable(monkeypatch):
    """``$ECGTOOL_MIRROR`` serves every dataset; the command's own variable wins over it."""
    argv = ["-o", "x"]
    assert parse(("fetch", "ptbxl"), argv, {"ECGTOOL_MIRROR": "http://a"}, monkeypatch).params["mirror"] == "http://a"
    env = {"ECGTOOL_MIRROR": "http://a", "ECGTOOL_FETCH_PTBXL_MIRROR": "http://b"}
    assert parse(("fetch", "ptbxl"), argv, env, monkeypatch).params["mirror"] == "http://b"


def _help_extra(ctx, option) -> str:
    record = option.get_help_record(ctx)
    return record[1] if record else ""


@pytest.mark.parametrize("path, command, option", CASES, ids=IDS)
def test_every_default_is_shown_in_help(path, command, option, paths, monkeypatch):
    default = option.default
    if option.is_flag or option.required or default is None or default is click.core.UNSET or callable(default):
        return
    ctx = parse(path, required_args(command, paths), None, monkeypatch)
    assert re.search(r"\[(?:[^\]]*; )?default: ", _help_extra(ctx, option)), f"{option.opts[0]}: default {default!r} not shown"


GARBAGE = ["", "x", "-1", "0", "nan", "-inf", "1e999", "9" * 5000, "-", ",", ",,", "/", "=", "a=", "=1", "0/0", "²/4", "1/²",
           "0.7,0.2,x", "bogus", "é", "k=" + "[" * 100_000, "None", "true", "../..", "a" * 10_000]


@pytest.mark.parametrize("path, command, option", [c for c in CASES if not c[2].is_flag],
                         ids=[i for c, i in zip(CASES, IDS) if not c[2].is_flag])
def test_no_value_makes_an_option_fail_unexpectedly(path, command, option, paths, monkeypatch):
    """Garbage on the command line or in the environment parses, or is a usage error that names the option in one
    line; never another exception (the group would report it as 'unexpected … rerun with --debug')."""
    base = required_args(command, paths, skip=option)
    name = expected_envvar(path, option)
    for text in GARBAGE:
        for argv, env in (([*base, option.opts[0], text], None), (base, {name: text})):
            try:
                parse(path, argv, env, monkeypatch)
            except click.ClickException as e:
                message = e.format_message()
                assert e.exit_code == 2 and "\n" not in message, (text[:20], message)
                if isinstance(e, click.BadParameter):
                    assert option.opts[0] in message or e.param is not option, (text[:20], message)
            except Exception as e:  # noqa: BLE001 — the failure this test exists for
                pytest.fail(f"{option.opts[0]} {text[:20]!r} ({'env' if env else 'argv'}): {type(e).__name__}: {e}")


FLOATS = [c for c in CASES if isinstance(c[2].type, click.types.FloatParamType)]


@pytest.mark.parametrize("path, command, option", FLOATS, ids=[i for c, i in zip(CASES, IDS) if c in FLOATS])
def test_no_number_option_takes_nan_or_infinity(path, command, option, paths, monkeypatch):
    """click's float types (ranges included: every comparison with NaN is false) let them through."""
    base = required_args(command, paths, skip=option)
    for text in ("nan", "inf", "-inf", "1e999"):
        with pytest.raises(click.BadParameter, match="is not a finite number|is not in the range"):
            parse(path, [*base, option.opts[0], text], None, monkeypatch)


@pytest.mark.parametrize("args, env", [
    (["--ratios", "0.7,0.2,x"], None),
    ([], {"ECGTOOL_SPLIT_RATIOS": "bogus"}),
])
def test_split_ratios_garbage_is_a_usage_error(tmp_path, args, env):
    r = run_cli("split", tmp_path, "-o", tmp_path / "out", *args, env=env, expect=2)
    assert r.stderr.splitlines()[-1].startswith("Error: Invalid value for '--ratios'") and "unexpected" not in r.stderr


def test_shard_without_a_fixed_length_names_the_flag_as_click_does(tmp_path):
    r = run_cli("prep", tmp_path, "-o", tmp_path / "s.zarr", "--shard", "0/3", "--seconds", "0", expect=2)
    assert r.stderr.splitlines()[-1].startswith("Error: Invalid value for '--shard': needs a fixed --seconds > 0")


def test_help_promises_only_what_the_command_does():
    assert "validation metrics" not in " ".join(run_cli("pretrain", "--help").stdout.split())  # pretraining has no validation
    listed = " ".join(run_cli("profile", "--help").stdout.split())
    assert "parameters and MACs (both counts)" in listed and "source" not in listed  # --list prints no source column


def test_shard_with_a_digit_int_refuses_is_a_usage_error(tmp_path):
    r = run_cli("prep", tmp_path, "-o", tmp_path / "s.zarr", "--shard", "²/4", expect=2)
    assert r.stderr.splitlines()[-1] == "Error: Invalid value for '--shard': '²/4' is not I/N, e.g. 0/16 (shard I of N, counted from 0)"


# -- one name per concept: old spellings ---------------------------------------------------------------------------

ALIASED = [(path, command, o) for path, command, o in CASES if isinstance(o, AliasedOption)]


def test_the_renamed_options_keep_their_old_spellings():
    """The renames of docs/cli.md's vocabulary table, each with its old spelling kept (a guard on the table)."""
    found = {(" ".join(path), o.opts[0], alias) for path, _, o in ALIASED for alias in o.aliases}
    assert found == {
        ("prep", "--jobs", "--workers"), ("prep", "--crop-mode", "--crop"),
        ("profile", "--batch-size", "--batch"), ("export", "--batch-size", "--batch"), ("profile", "--num-leads", "--leads"),
        ("profile", "--num-samples", "--samples"), ("profile", "--num-classes", "--classes"),
        ("split", "--num-folds", "--folds"), ("split", "--train-folds", "--train"), ("split", "--val-folds", "--val"),
        ("split", "--test-folds", "--test"), ("explain", "--limit", "--first"), ("fetch synthetic", "--num-records", "--records"),
        ("train", "--list", "--list-models"), ("pretrain", "--list", "--list-methods"),
    }


@pytest.mark.parametrize("path, command, option", ALIASED, ids=[" ".join([*p, o.opts[0]]) for p, _, o in ALIASED])
def test_an_old_spelling_parses_and_shows_nowhere(path, command, option, paths, monkeypatch, capsys):
    base = required_args(command, paths, skip=option)
    value = [] if option.is_flag else [accepted_value(path, option, base, paths, monkeypatch)[0]]
    new = parsed_value(path, option, [*base, option.opts[0], *value], None, monkeypatch)
    for alias in option.aliases:
        assert parsed_value(path, option, [*base, alias, *value], None, monkeypatch) == new
        ctx = parse(path, base, None, monkeypatch)
        help_text = ctx.command.get_help(ctx)
        assert not re.search(re.escape(alias) + r"(?![\w-])", help_text), f"{alias} shows in --help"
        assert alias not in _complete(ctx, alias)  # TAB offers the new name only
        if isinstance(option.type, (click.Choice, click.IntRange)):  # an error names the option by its new name
            with pytest.raises(click.BadParameter) as e:
                parse(path, [*base, alias, "-5"], None, monkeypatch)
            assert f"'{option.opts[0]}'" in e.value.format_message() and alias + "'" not in e.value.format_message()
        # no environment variable of its own
        old = expected_envvar(path, click.Option([alias]))
        if old != expected_envvar(path, option):
            assert parsed_value(path, option, base, {old: value[0] if value else "1"}, monkeypatch)[1] is not ParameterSource.ENVIRONMENT


def _complete(ctx, incomplete) -> list[str]:
    return [item.value for item in ctx.command.shell_complete(ctx, incomplete)]


# -- TAB completion of model names ---------------------------------------------------------------------------------

def test_completion_model_names_are_the_registry():
    from ecgtool.cli.completion import MODEL_NAMES
    from ecgtool.models import list_models

    assert list(MODEL_NAMES) == list_models(), f"set ecgtool/cli/completion.py's MODEL_NAMES to {tuple(list_models())!r}"


COMPLETE = """
import os, sys
from ecgtool.cli import cli
for words, cword in {cases!r}:
    os.environ.update(_ECGTOOL_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    try:
        cli(prog_name="ecgtool")
    except SystemExit:
        pass
    print("--")
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""


def test_model_names_complete_without_importing_torch():
    cases = [("ecgtool train res", 2), ("ecgtool distill t.ckpt s.zarr --student mobilenet", 5),
             ("ecgtool pretrain cpc s.zarr --backbone xresnet1d", 5), ("ecgtool profile inceptionformer_s", 2),
             ("ecgtool profile ./model.ck", 2), ("ecgtool train ", 2)]
    out = subprocess.run([sys.executable, "-c", COMPLETE.format(cases=cases)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    *answers, torch = out.split("--\n")
    assert torch.strip() == "NO-TORCH"
    answers = [a.split() for a in answers]
    assert answers[0] == ["plain,resnet18", "plain,resnet34"]
    assert answers[1] == ["plain,mobilenet_v2"]
    assert answers[2] == ["plain,xresnet1d101", "plain,xresnet1d50"]
    assert answers[3] == ["plain,inceptionformer_se", "plain,inceptionformer_shunted", "plain,inceptionformer_sparse",
                          "plain,inceptionformer_sra", "plain,inceptionformer_swin"]
    assert answers[4] == ["file,./model.ck"]  # no model name matches: the shell completes a checkpoint file
    from ecgtool.cli.completion import MODEL_NAMES

    assert answers[5] == [f"plain,{name}" for name in MODEL_NAMES]


# -- fetch --list ---------------------------------------------------------------------------------------------------

def test_fetch_list_is_a_table_or_json():
    import json

    from ecgtool.data.sources import SOURCES

    table = run_cli("fetch", "--list").stdout
    assert "dataset" in table and "licence" in table and "┃" in table
    doc = json.loads(run_cli("fetch", "--list", "--json").stdout)
    assert [d["name"] for d in doc] == ["synthetic", *SOURCES]
    ptbxl = next(d for d in doc if d["name"] == "ptbxl")
    assert ptbxl["variants"] == ["100", "500", "both"] and ptbxl["default_variant"] == "100" and "Wagner" in ptbxl["citation"]
    r = run_cli("fetch", "--json", expect=2)
    assert r.stderr.splitlines()[-1] == "Error: --json goes with --list (a dataset's command prints its output directory)"


def test_a_closed_pipe_ends_quietly():
    """`ecgtool … | head`: no 'unexpected BrokenPipeError', and the status of a process killed by SIGPIPE."""
    r = subprocess.run(f"{sys.executable} -m ecgtool fetch --list --json | head -c 1", shell=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONUNBUFFERED": "0"}, executable="/bin/bash")
    assert r.stdout == "[" and r.stderr == ""
    r = subprocess.run(f"{sys.executable} -m ecgtool fetch --list --json | (exec 0<&-); echo ${{PIPESTATUS[0]}}",
                       shell=True, capture_output=True, text=True, executable="/bin/bash")
    assert r.stdout.strip() in ("0", "141") and "Error" not in r.stderr, r.stderr


def test_a_variable_no_option_reads_is_named_with_the_likely_one():
    from conftest import run_cli

    r = run_cli("fetch", "synthetic", "--help", env={"ECGTOOL_FETCH_RECORDS": "5", "ECGTOOL_FETCH_SYNTHETIC_SEEDS": "1",
                                                     "ECGTOOL_FETCH_SYNTHETIC_SEED": "2", "ECGTOOL_VENV": "/x"})
    assert r.stderr.splitlines() == [
        "warning: ECGTOOL_FETCH_RECORDS names no option of `ecgtool fetch` and is ignored "
        "(did you mean ECGTOOL_FETCH_SYNTHETIC_NUM_RECORDS?)",
        "warning: ECGTOOL_FETCH_SYNTHETIC_SEEDS names no option of `ecgtool fetch synthetic` and is ignored "
        "(did you mean ECGTOOL_FETCH_SYNTHETIC_SEED?)",
    ]
    assert run_cli("train", "--help", env={"ECGTOOL_TRAIN_EPOCHS": "3", "ECGTOOL_PREP_BOGUS": "1"}).stderr == ""
