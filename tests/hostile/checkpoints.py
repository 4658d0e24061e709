"""Broken and hostile checkpoints, through every command that loads one: info, profile, eval (and
--compare), explain, predict, export, train --resume and --init, pretrain --resume, distill's TEACHER and --resume. Pickle payloads in every encoding must never run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from . import Case, noise
from .stores import TRAIN

MARKER = "PAYLOAD-RAN"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _doc(marker: Path) -> dict:
    return {"format": "ecgtool.checkpoint", "format_version": 1, "kind": "model", "state_dict": {"w": Payload(marker)},
            "model": {"name": "resnet18", "kwargs": {}}}


def _write_payload(path: Path, encoding: str, marker: Path) -> None:
    import torch

    doc = _doc(marker)
    if encoding.startswith("pickle"):
        path.write_bytes(pickle.dumps(doc, protocol=int(encoding[-1])))
    elif encoding == "torch-zip":
        torch.save(doc, path)
    elif encoding == "torch-zip-protocol5":
        torch.save(doc, path, pickle_protocol=5)
    else:  # torch's legacy (pre-1.6) serialisation
        torch.save(doc, path, _use_new_zipfile_serialization=False)


ENCODINGS = [f"pickle{p}" for p in range(6)] + ["torch-zip", "torch-zip-protocol5", "torch-legacy"]

DISTILL = ["--student", "resnet18", "--model-arg", "base_width=8", "-o", "{tmp}/s.ckpt", "--epochs", "1", "--batch-size", "8",
           "--device", "cpu", "--workers", "1"]

# command → (argv with {c} the checkpoint, the file the checkpoint is written to, shared inputs)
COMMANDS = {
    "info": (["info", "{c}"], "c.ckpt"),
    "profile": (["profile", "{c}", "--device", "cpu", "--repeats", "1", "--batch", "1"], "c.ckpt"),
    "eval": (["eval", "{c}", "{store}", "--bootstrap", "0", "--device", "cpu"], "c.ckpt"),
    "eval-compare": (["eval", "{ckpt}", "{store}", "--compare", "{c}", "--bootstrap", "0", "--device", "cpu"], "c.ckpt"),
    "explain": (["explain", "{c}", "{store}", "-o", "{tmp}/cams", "--first", "1", "--no-charts", "--device", "cpu"], "c.ckpt"),
    "train-resume": (["train", "resnet18", "{small_store}", "-o", "{tmp}/m.ckpt", "--resume", *TRAIN], "m.ckpt.resume"),
    "train-init": (["train", "resnet18", "{small_store}", "-o", "{tmp}/m.ckpt", "--init", "{c}", *TRAIN], "c.ckpt"),
    "pretrain-resume": (["pretrain", "cpc", "{small_store}", "-o", "{tmp}/e.ckpt", "--resume", "--backbone", "resnet18",
                         "--model-arg", "base_width=8", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--workers", "1"],
                        "e.ckpt.resume"),
    "predict": (["predict", "{c}", "{small_raw}", "--device", "cpu"], "c.ckpt"),
    "export": (["export", "{c}", "-o", "{tmp}/model.pt"], "c.ckpt"),
    "distill-teacher": (["distill", "{c}", "{small_store}", *DISTILL], "c.ckpt"),
    "distill-resume": (["distill", "{teacher}", "{small_store}", "--resume", *DISTILL], "s.ckpt.resume"),
}
SHARED = ("ckpt", "store", "small_store", "small_raw", "teacher")


def _build(command: str, make):
    argv, filename = COMMANDS[command]
    shared = [n for n in SHARED if any(f"{{{n}}}" in a for a in argv)]

    def build(tmp: Path, fx) -> dict:
        c = tmp / filename
        make(c, tmp, fx)
        return {"c": c, **{n: getattr(fx, n) for n in shared}}

    return build


def case(kind: str, command: str, make, needle: str = "{c}", exit: int = 1, xfail=None, forbid=()) -> Case:
    return Case(f"ckpt-{kind}-{command}", _build(command, make), COMMANDS[command][0], exit, needle, xfail, forbid=forbid)


# -- makers: (path, tmp, fixtures) ------------------------------------------------------------------
def payload(encoding):
    def make(c, tmp, fx):
        _write_payload(c, encoding, tmp / MARKER)

    return make


def trained(c, tmp, fx):  # a finished run's checkpoint, other options and stores, where a resume file goes
    c.write_bytes(fx.ckpt.read_bytes())


def copy_checkpoint(source: Path, dest: Path, change=None, truncate: bool = False) -> Path:
    """``source`` copied to ``dest``: as it is, cut in half (``truncate``), or loaded weights-only, changed by
    ``change(doc)`` and saved again."""
    data = source.read_bytes()
    if truncate:
        dest.write_bytes(data[: len(data) // 2])
    elif change is None:
        dest.write_bytes(data)
    else:
        import torch

        doc = torch.load(source, weights_only=True)
        change(doc)
        torch.save(doc, dest)
    return dest


def truncated(c, tmp, fx):
    copy_checkpoint(fx.ckpt, c, truncate=True)


def random_bytes(c, tmp, fx):
    c.write_bytes(noise(4096))


def empty_file(c, tmp, fx):
    c.write_bytes(b"")


def json_file(c, tmp, fx):
    c.write_text('{"format": "ecgtool.checkpoint"}\n')


def edited(change):
    """The trained checkpoint, loaded weights-only, changed by ``change(doc)`` and saved again."""

    def make(c, tmp, fx):
        copy_checkpoint(fx.ckpt, c, change)

    return make


def _set(doc, path, value):
    *parents, last = path
    for k in parents:
        doc = doc[k]
    doc[last] = value


def unknown_model(doc):
    _set(doc, ("model", "name"), "nosuchnet")


def foreign_dict(doc):
    doc.clear()
    doc.update({"epoch": 3, "model_state": {}})


def no_preprocessing(doc):  # a checkpoint from before train recorded its training data's preprocessing
    doc.pop("preprocessing", None)


def newer(doc):
    doc["format_version"] = 99


def classes(doc):
    doc["classes"] = [c + "x" for c in doc["classes"]]


def fewer_classes(doc):  # classes no longer match the model's outputs nor the thresholds
    doc["classes"] = doc["classes"][:-1]


def input_fs(doc):
    _set(doc, ("input", "fs"), 250.0)


def input_leads(doc):
    _set(doc, ("input", "leads"), ["X"] + list(doc["input"]["leads"][1:]))


def wrong_kwargs(doc):
    _set(doc, ("model", "kwargs"), {**doc["model"]["kwargs"], "no_such_argument": 1})


def bad_tensor(doc):
    import torch

    key = next(iter(doc["state_dict"]))
    doc["state_dict"][key] = torch.zeros(3, 3, 3, 3, 3)


def missing_tensor(doc):
    doc["state_dict"].pop(next(iter(doc["state_dict"])))


ALL = ("info", "profile", "eval", "eval-compare", "explain")
WITH_STORE = ("eval", "eval-compare", "explain")

CASES = [
    *[case(f"payload-{enc}", cmd, payload(enc), forbid=(f"{{tmp}}/{MARKER}",)) for enc in ENCODINGS for cmd in COMMANDS],
    *[case("truncated", cmd, truncated) for cmd in COMMANDS],
    case("other-run", "train-resume", trained),
    case("other-run", "pretrain-resume", trained),  # a classifier checkpoint where pretrain's resume file goes
    case("other-run", "distill-resume", trained),  # a finished train run's checkpoint where distill's resume file goes
    case("other-run", "distill-teacher", trained, needle="TEACHER", exit=2),  # another task's classifier as the teacher
    *[case("random-bytes", cmd, random_bytes) for cmd in COMMANDS],
    *[case("empty-file", cmd, empty_file) for cmd in ("info", "eval", "predict", "export", "train-resume", "train-init",
                                                     "pretrain-resume", "distill-teacher", "distill-resume")],
    *[case("json-file", cmd, json_file) for cmd in ("info", "profile")],
    *[case("foreign-dict", cmd, edited(foreign_dict)) for cmd in ("info", "eval-compare")],
    *[case("newer-version", cmd, edited(newer)) for cmd in ("info", "explain")],
    *[case("unknown-model", cmd, edited(unknown_model)) for cmd in ALL if cmd != "info"],  # info needs no model
    *[case(kind, "export", edited(change)) for kind, change in (("unknown-model", unknown_model),
                                                                 ("model-kwargs-do-not-fit", wrong_kwargs),
                                                                 ("tensor-missing", missing_tensor))],
    case("no-preprocessing-record", "predict", edited(no_preprocessing)),
    *[case("model-kwargs-do-not-fit", cmd, edited(wrong_kwargs)) for cmd in ("profile", "eval", "explain")],
    *[case("tensor-shape-wrong", cmd, edited(bad_tensor)) for cmd in ("profile", "eval-compare")],
    *[case("tensor-missing", cmd, edited(missing_tensor)) for cmd in ("profile", "explain")],
    # a checkpoint that does not fit the store: the message names the store and what the model expects
    *[case("classes-mismatch-store", cmd, edited(classes), needle="{store}") for cmd in WITH_STORE],
    *[case("classes-fewer-than-outputs", cmd, edited(fewer_classes)) for cmd in ("info", "eval")],
    *[case("input-fs-mismatch", cmd, edited(input_fs), needle="{store}") for cmd in WITH_STORE],
    *[case("input-leads-mismatch", cmd, edited(input_leads), needle="{store}") for cmd in WITH_STORE],
    Case("ckpt-is-a-directory-eval", lambda tmp, fx: {"store": fx.store}, ["eval", "{tmp}", "{store}", "--bootstrap", "0"], 2, "CHECKPOINT"),
    Case("ckpt-missing-info", lambda tmp, fx: {}, ["info", "{tmp}/nosuch.ckpt"], 2, "PATH"),
]
