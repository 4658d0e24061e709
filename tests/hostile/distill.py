"""``distill`` (issue 14): broken training and validation stores, teachers that do not fit the store or the
run, bad option values, outputs equal to an input, resume files of another run. Broken teacher and resume
checkpoint files are ``checkpoints``' (commands ``distill-teacher`` and ``distill-resume``).

Every case distils the shared ``teacher`` (a resnet18, base_width 8, trained for one epoch on ``small_store``:
12 records, 3 leads, 100 Hz, 4 s) into a resnet18 of base_width 8 for one epoch, so that a case which slipped
through would still end in seconds. The store mutations are ``stores'``."""

from __future__ import annotations

from pathlib import Path

from . import Case
from .checkpoints import copy_checkpoint
from .pretrain import STORE_DAMAGE
from .stores import classes_renamed, lead_missing, other_fs, other_normalisation

RUN = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--workers", "1"]
STUDENT = ["--student", "resnet18", "--model-arg", "base_width=8"]
OUT = ["-o", "{tmp}/s.ckpt"]
KD = ["distill", "{teacher}", "{small_store}", *STUDENT, *OUT, *RUN]
MVKT = ["--method", "mvkt", "--clt-arg", "negatives=4", "--clt-arg", "embed_dim=8"]
SHARED = ("small_store", "encoder", "teacher", "ckpt")


def _build(argv, make=None):
    shared = [n for n in SHARED if any(f"{{{n}}}" in str(a) for a in argv)]

    def build(tmp: Path, fx) -> dict:
        return {**{n: getattr(fx, n) for n in shared}, **((make(tmp, fx) if make else None) or {})}

    return build


def case(id, argv, needle, exit=1, make=None, xfail=None) -> Case:
    return Case(f"distill-{id}", _build(argv, make), argv, exit, needle, xfail)


def opt(id, flags, needle, exit=2, make=None, base=KD):
    return case(id, [*base, *flags], needle, exit, make)


# -- inputs of a case's own: a broken copy of small_store, an edited copy of the teacher -------------
def _store(mutate=None, name="s.zarr"):
    def make(tmp: Path, fx) -> dict:
        s = fx.copy("small_store", tmp / name)
        if mutate:
            mutate(s)
        return {"s": s}

    return make


def _teacher(change=None, name="t.ckpt"):
    """A copy of the teacher at tmp/``name``, edited by ``change(doc)`` (loaded weights-only, saved again)."""

    def make(tmp: Path, fx) -> dict:
        return {"t": copy_checkpoint(fx.teacher, tmp / name, change)}

    return make


def _other_classes(doc):
    doc["classes"] = [c + "x" for c in doc["classes"]]


def _lead_x(doc):
    doc["input"]["leads"] = ["X"] + list(doc["input"]["leads"][1:])


def _fs_250(doc):
    doc["input"]["fs"] = 250.0


def _no_normalisation(doc):
    doc["input"]["normalisation"] = {"method": "none"}


def _cropped(doc):  # what a teacher trained with --crop 200 records: inputs of 200 samples
    doc["input"]["samples"] = 200


def _reweighted(doc):  # another teacher of the same task and model: other weights
    key = next(k for k, v in doc["state_dict"].items() if v.is_floating_point())
    doc["state_dict"][key] = doc["state_dict"][key] + 1


# -- an interrupted run (resume files) ---------------------------------------------------------------
def _interrupted(tmp: Path, fx, teacher: Path, **changes) -> None:
    """Leave tmp/s.ckpt.resume as a kd run (of ``RESUME``'s options, ``changes`` apart) interrupted after the
    first of its two epochs would."""
    from ecgtool.train.distill.loop import DistillArgs, Distiller

    class Interrupted(Exception):
        pass

    def hook(record, best):
        if record["epoch"] == 2:
            raise Interrupted

    out = tmp / "s.ckpt"
    args = DistillArgs(model="resnet18", epochs=2, batch_size=8, device="cpu", workers=1, model_kwargs={"base_width": 8},
                       teacher=str(teacher), **changes)
    try:
        Distiller(args, fx.small_store, None, out, on_epoch=hook).run()
    except Interrupted:
        pass
    assert (tmp / "s.ckpt.resume").exists() and not out.exists()


def interrupted(tmp: Path, fx) -> dict:
    _interrupted(tmp, fx, fx.teacher)
    return {}


def interrupted_then_other_teacher(tmp: Path, fx) -> dict:
    """Interrupted with tmp/t.ckpt as the teacher, which is then replaced by another teacher (same path)."""
    t = _teacher()(tmp, fx)["t"]
    _interrupted(tmp, fx, t)
    _teacher(_reweighted)(tmp, fx)
    return {"t": t}


def _resume(*extra, teacher="{teacher}"):
    return ["distill", teacher, "{small_store}", *STUDENT, *OUT, "--epochs", "2", "--batch-size", "8", "--device", "cpu",
            "--seed", "0", "--workers", "1", *extra]


CASES = [
    # every damage the corpus does to a store, to the training store and to --val
    *[case(f"store-{id}", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "{s}", make=_store(m))
      for id, m in STORE_DAMAGE if id != "empty"],
    case("store-empty", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "{s}", make=_store(STORE_DAMAGE[-1][1])),
    *[case(f"val-{id}", [*KD, "--val", "{s}"], "{s}", make=_store(m)) for id, m in STORE_DAMAGE if id != "empty"],
    case("val-empty", [*KD, "--val", "{s}"], "--val", exit=2, make=_store(STORE_DAMAGE[-1][1])),
    case("val-missing", [*KD, "--val", "{tmp}/nosuch.zarr"], "--val", exit=2),
    case("store-missing", ["distill", "{teacher}", "{tmp}/nosuch.zarr", *STUDENT, *OUT, *RUN], "TRAIN_STORE", exit=2),
    case("teacher-missing", ["distill", "{tmp}/nosuch.ckpt", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2),
    case("teacher-is-a-directory", ["distill", "{tmp}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2),
    # a teacher that does not fit the store (or the run): a usage error of TEACHER
    case("teacher-of-another-task", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_teacher(_other_classes)),
    case("store-of-another-task", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_store(classes_renamed)),
    case("val-of-another-task", [*KD, "--val", "{s}"], "{s}", make=_store(classes_renamed)),
    case("teacher-is-an-encoder", ["distill", "{encoder}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2),
    case("teacher-is-another-runs-classifier", ["distill", "{ckpt}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2),
    case("teacher-lead-not-in-store", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_teacher(_lead_x)),
    case("store-lacks-a-teacher-lead", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_store(lead_missing)),
    case("val-lacks-a-teacher-lead", [*KD, "--val", "{s}"], "TEACHER", exit=2, make=_store(lead_missing)),
    case("teacher-other-fs", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_teacher(_fs_250)),
    case("store-other-fs", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2, make=_store(other_fs)),
    case("teacher-other-normalisation", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_teacher(_no_normalisation)),
    case("store-other-normalisation", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_store(other_normalisation)),
    case("teacher-on-crops-no-crop", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "TEACHER", exit=2,
         make=_teacher(_cropped)),
    opt("teacher-on-whole-records-crop", ["--crop", "200"], "TEACHER"),
    case("teacher-on-crops-other-crop", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN, "--crop", "100"], "TEACHER",
         exit=2, make=_teacher(_cropped)),
    # the student and its leads
    case("student-unknown", ["distill", "{teacher}", "{small_store}", "--student", "nosuchnet", *OUT, *RUN], "--student",
         exit=2),
    case("student-missing", ["distill", "{teacher}", "{small_store}", *OUT, *RUN], "--student", exit=2),
    opt("student-leads-unknown", ["--student-leads", "V6"], "--student-leads"),
    opt("student-leads-duplicated", ["--student-leads", "I,I"], "--student-leads"),
    opt("student-leads-empty", ["--student-leads", ""], "--student-leads"),
    opt("student-leads-commas-only", ["--student-leads", ",,"], "--student-leads"),
    opt("model-arg-unknown", ["--model-arg", "no_such_argument=1"], "--model-arg"),
    # the method's hyperparameters
    opt("alpha-above-1", ["--alpha", "1.5"], "--alpha"),
    opt("alpha-negative", ["--alpha", "-0.1"], "--alpha"),
    opt("alpha-nan", ["--alpha", "nan"], "--alpha"),
    opt("alpha-negative-mvkt", [*MVKT, "--alpha", "-1"], "--alpha"),
    opt("temperature-0", ["--temperature", "0"], "--temperature"),
    opt("temperature-nan", ["--temperature", "nan"], "--temperature"),
    opt("temperature-inf", ["--temperature", "inf"], "--temperature"),
    opt("noise-negative", ["--noise", "-0.1"], "--noise"),
    opt("noise-negative-mvms", ["--method", "mvms", "--noise", "-1"], "--noise"),
    opt("beta-negative", [*MVKT, "--beta", "-1"], "--beta"),
    opt("hard-weight-nan", [*MVKT, "--hard-weight", "nan"], "--hard-weight"),
    opt("method-unknown", ["--method", "fitnets"], "--method"),
    opt("clt-arg-unknown-key", [*MVKT, "--clt-arg", "bogus=1"], "--clt-arg"),
    opt("clt-arg-not-key-value", [*MVKT, "--clt-arg", "negatives"], "--clt-arg"),
    opt("clt-arg-negatives-0", [*MVKT, "--clt-arg", "negatives=0"], "--clt-arg"),
    opt("clt-arg-negatives-text", [*MVKT, "--clt-arg", "negatives=many"], "--clt-arg"),
    opt("clt-arg-embed-dim-fraction", [*MVKT, "--clt-arg", "embed_dim=2.5"], "--clt-arg"),
    opt("clt-arg-nce-temperature-0", [*MVKT, "--clt-arg", "nce_temperature=0"], "--clt-arg"),
    opt("clt-arg-nce-temperature-nan", [*MVKT, "--clt-arg", "nce_temperature=NaN"], "--clt-arg"),
    opt("clt-arg-momentum-1", [*MVKT, "--clt-arg", "momentum=1"], "--clt-arg"),
    opt("clt-arg-negatives-from-nonsense", [*MVKT, "--clt-arg", "negatives_from=sideways"], "--clt-arg"),
    opt("clt-arg-without-mvkt", ["--clt-arg", "negatives=4"], "--clt-arg"),
    opt("clt-arg-with-mvms", ["--method", "mvms", "--clt-arg", "negatives=4"], "--clt-arg"),
    # train's options, as distill takes them
    opt("epochs-0", ["--epochs", "0"], "--epochs"),
    opt("batch-size-0", ["--batch-size", "0"], "--batch-size"),
    opt("lr-0", ["--lr", "0"], "--lr"),
    opt("label-fraction-0", ["--label-fraction", "0"], "--label-fraction"),
    opt("crop-longer-than-records", ["--crop", "100000"], "--crop"),
    opt("device-unknown", ["--device", "tpu:7"], "--device"),
    opt("init-missing", ["--init", "{tmp}/nosuch.ckpt"], "--init"),
    opt("init-other-input", ["--init", "{ckpt}"], "--init"),
    # the output equal to an input, inside one, or its resume file equal to one (on copies)
    case("output-is-the-teacher", ["distill", "{t}", "{small_store}", *STUDENT, "-o", "{t}", *RUN], "{t}", make=_teacher()),
    case("output-is-the-teacher-overwrite", ["distill", "{t}", "{small_store}", *STUDENT, "-o", "{t}", "--overwrite", *RUN],
         "{t}", make=_teacher()),
    case("output-is-the-init-overwrite", [*KD, "--init", "{tmp}/s.ckpt", "--overwrite"], "{tmp}/s.ckpt",
         make=lambda tmp, fx: {"i": fx.copy("teacher", tmp / "s.ckpt")}),
    case("output-is-the-train-store", ["distill", "{teacher}", "{s}", *STUDENT, "-o", "{s}", *RUN], "--output", exit=2,
         make=_store()),
    case("output-is-the-train-store-overwrite", ["distill", "{teacher}", "{s}", *STUDENT, "-o", "{s}", "--overwrite", *RUN],
         "--output", exit=2, make=_store()),
    case("output-is-the-val-store", ["distill", "{teacher}", "{small_store}", "--val", "{s}", *STUDENT, "-o", "{s}", *RUN],
         "--output", exit=2, make=_store()),
    case("output-is-the-val-store-overwrite", ["distill", "{teacher}", "{small_store}", "--val", "{s}", *STUDENT, "-o", "{s}",
                                               "--overwrite", *RUN], "--output", exit=2, make=_store()),
    case("output-inside-the-train-store", ["distill", "{teacher}", "{s}", *STUDENT, "-o", "{s}/s.ckpt", *RUN], "{s}",
         make=_store()),
    case("output-inside-the-train-store-overwrite", ["distill", "{teacher}", "{s}", *STUDENT, "-o", "{s}/zarr.json",
                                                     "--overwrite", *RUN], "{s}", make=_store()),
    case("output-inside-the-val-store-overwrite", ["distill", "{teacher}", "{small_store}", "--val", "{s}", *STUDENT,
                                                   "-o", "{s}/zarr.json", "--overwrite", *RUN], "{s}", make=_store()),
    case("resume-file-is-the-store", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, *RUN], "{s}",
         make=_store(name="s.ckpt.resume")),
    case("resume-file-is-the-store-overwrite", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, "--overwrite", *RUN], "{s}",
         make=_store(name="s.ckpt.resume")),
    case("resume-file-is-the-store-resume", ["distill", "{teacher}", "{s}", *STUDENT, *OUT, "--resume", *RUN], "{s}",
         make=_store(name="s.ckpt.resume")),
    case("resume-file-is-the-teacher", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, *RUN], "{t}",
         make=_teacher(name="s.ckpt.resume")),
    case("resume-file-is-the-teacher-resume", ["distill", "{t}", "{small_store}", *STUDENT, *OUT, "--resume", *RUN], "{t}",
         make=_teacher(name="s.ckpt.resume")),
    opt("output-exists", [], "--overwrite", exit=1, make=lambda tmp, fx: (tmp / "s.ckpt").write_bytes(b"old") and {}),
    case("output-directory-missing", ["distill", "{teacher}", "{small_store}", *STUDENT, "-o", "{tmp}/nosuch/s.ckpt", *RUN],
         "{tmp}/nosuch"),
    # resume: none to continue from, one left by a run with another method, teacher, leads or option, one left and no --resume
    opt("resume-without-a-resume-file", ["--resume"], "--resume", exit=1),
    case("resume-other-method", _resume("--resume", "--method", "mvms"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-method-mvkt", _resume("--resume", *MVKT), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-teacher-same-path", _resume("--resume", teacher="{t}"), "{tmp}/s.ckpt.resume",
         make=interrupted_then_other_teacher),
    case("resume-other-student-leads", _resume("--resume", "--student-leads", "II"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-alpha", _resume("--resume", "--alpha", "0.7"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-temperature", _resume("--resume", "--temperature", "3"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-lr", _resume("--resume", "--lr", "1e-2"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-epochs", _resume("--resume", "--epochs", "3"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("resume-other-student-width", _resume("--resume", "--model-arg", "base_width=16"), "{tmp}/s.ckpt.resume",
         make=interrupted),
    case("resume-other-val", _resume("--resume", "--val", "{small_store}"), "{tmp}/s.ckpt.resume", make=interrupted),
    case("interrupted-run-without-resume", _resume(), "--resume", make=interrupted),
]
