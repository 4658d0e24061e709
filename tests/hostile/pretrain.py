"""``pretrain`` (issue 13): broken stores (alone and pooled), outputs equal to an input, bad option values,
resume files of another run; and ``train --init`` with broken encoder checkpoints.

Every case uses a tiny backbone on ``small_store`` (12 records, 3 leads, 100 Hz, 4 s) and one epoch, so
that a case which slipped through would still end in seconds. The mutations are ``stores``'; the pooled
cases put the broken store second, after the intact ``small_store``."""

from __future__ import annotations

import json
from pathlib import Path

from . import Case
from .checkpoints import copy_checkpoint
from .stores import (
    _attrs,
    empty,
    foreign,
    garbage_metadata,
    incomplete,
    labels_out_of_range,
    lead_missing,
    missing_chunk,
    nan_signals,
    newer,
    other_fs,
    plain_directory,
    wrong_dtype,
    wrong_shape,
)
from .stores import TRAIN

RUN = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--workers", "1"]
RESNET = ["--backbone", "resnet18", "--model-arg", "base_width=8"]
CPC = ["cpc", "{small_store}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN]
ST_MEM = ["--backbone", "st_mem_vit_small", "--model-arg", "patch_size=50", "--model-arg", "dim=32", "--model-arg", "depth=1",
          "--model-arg", "num_heads=2", "--method-arg", "decoder_dim=16", "--method-arg", "decoder_depth=1",
          "--method-arg", "decoder_heads=2", *RUN]
JEPA = ["--backbone", "ecg_jepa_vit_xs", "--model-arg", "dim=32", "--model-arg", "depth=2", "--model-arg", "num_heads=4", *RUN]
SHARED = ("small_store", "short_store", "encoder", "ckpt")


def _shared(argv) -> list[str]:
    return [n for n in SHARED if any(f"{{{n}}}" in str(a) for a in argv)]


def _build(argv, make=None):
    """Name the shared inputs ``argv`` uses; ``make(tmp, fx)`` adds inputs of its own (returning their names)."""
    shared = _shared(argv)

    def build(tmp: Path, fx) -> dict:
        names = {n: getattr(fx, n) for n in shared}
        return {**names, **((make(tmp, fx) if make else None) or {})}

    return build


def case(id, argv, needle, exit=1, make=None, xfail=None) -> Case:
    return Case(f"pretrain-{id}", _build(argv, make), argv, exit, needle, xfail)


# -- broken stores: alone, and second of two pooled ----------------------------------------
def _broken(mutate, name="s.zarr"):
    def make(tmp: Path, fx) -> dict:
        s = fx.copy("small_store", tmp / name)
        mutate(s)
        return {"s": s}

    return make


# --crop 400 (the whole record): without it a run warns that the records are shorter than cpc's 10 s before
# it starts, and damage found once reading began (NaN signals) would be a second line after that warning
WHOLE = ["--crop", "400"]


def alone(id, mutate, needle="{s}", exit=1, xfail=None):
    return case(f"store-{id}", ["pretrain", "cpc", "{s}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN, *WHOLE], needle, exit,
                _broken(mutate), xfail)


def pooled(id, mutate, needle="{s}", exit=1, xfail=None):
    return case(f"pooled-{id}", ["pretrain", "cpc", "{small_store}", "{s}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN, *WHOLE],
                needle, exit, _broken(mutate), xfail)


STORE_DAMAGE = [
    ("incomplete", incomplete), ("foreign", foreign), ("plain-directory", plain_directory),
    ("garbage-metadata", garbage_metadata), ("newer-version", newer), ("wrong-dtype", wrong_dtype),
    ("labels-wrong-shape", wrong_shape), ("missing-chunk", missing_chunk), ("labels-out-of-range", labels_out_of_range),
    ("nan-signals", nan_signals), ("empty", empty),
]


def _link(tmp: Path, fx) -> dict:
    link = tmp / "link.zarr"
    link.symlink_to(fx.small_store, target_is_directory=True)
    return {"link": link}


# -- resume files --------------------------------------------------------------------------
def _interrupted(tmp: Path, fx, out: Path, **changes) -> None:
    """Leave ``out``.resume as a run interrupted after its first of two epochs would (cpc on small_store with
    the options of ``CPC``, ``changes`` apart)."""
    from ecgtool.train.pretrain.loop import PretrainArgs, Pretrainer

    class Interrupted(Exception):
        pass

    def hook(record, best):
        if record["epoch"] == 2:
            raise Interrupted

    args = PretrainArgs(method="cpc", backbone="resnet18", epochs=2, batch_size=8, device="cpu", workers=1,
                        model_kwargs={"base_width": 8}, **changes)
    try:
        Pretrainer(args, [fx.small_store], out, on_epoch=hook).run()
    except Interrupted:
        pass
    assert (out.parent / (out.name + ".resume")).exists() and not out.exists()


def interrupted(tmp: Path, fx) -> dict:
    _interrupted(tmp, fx, tmp / "e.ckpt")
    return {}


def interrupted_with_copy(tmp: Path, fx) -> dict:
    _interrupted(tmp, fx, tmp / "e.ckpt")
    return {"copy": fx.copy("small_store", tmp / "copy.zarr")}


def _resume_argv(method_and_stores, *extra):
    return ["pretrain", *method_and_stores, "-o", "{tmp}/e.ckpt", "--backbone", "resnet18", "--model-arg", "base_width=8",
            "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--workers", "1", *extra]


# -- train --init with encoders that do not fit ------------------------------------------------
def _encoder_copy(change=None, truncate=False):
    def make(tmp: Path, fx) -> dict:
        return {"c": copy_checkpoint(fx.encoder, tmp / "enc.ckpt", change, truncate)}

    return make


def _leads_x(doc):
    doc["input"]["leads"] = ["X"] + list(doc["input"]["leads"][1:])


def _two_leads(doc):
    doc["input"]["leads"] = list(doc["input"]["leads"][:2])


def _store_leads_reversed(tmp: Path, fx) -> dict:
    s = fx.copy("small_store", tmp / "s.zarr")
    leads = json.loads((s / "zarr.json").read_text())["attributes"]["leads"]
    _attrs(s, leads=leads[::-1])
    return {"s": s, **_encoder_copy()(tmp, fx)}


def init(id, make, needle="--init", exit=2, model="resnet18", store="{small_store}", model_args=TRAIN):
    argv = ["train", model, store, "-o", "{tmp}/m.ckpt", "--init", "{c}", *model_args]
    return case(f"train-init-{id}", argv, needle, exit, make)


SMALL_TRAIN = [a for a in TRAIN if a != "base_width=8" and a != "--model-arg"]

CASES = [
    # every damage the corpus does to train's store, to the only store and to the second pooled one
    *[alone(id, m) for id, m in STORE_DAMAGE],
    *[pooled(id, m) for id, m in STORE_DAMAGE],
    # pooled stores that do not pool: another sampling rate, another record length, a lead missing
    pooled("other-fs", other_fs),
    case("pooled-other-length", ["pretrain", "cpc", "{small_store}", "{short_store}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN],
         "{short_store}"),
    pooled("lead-missing", lead_missing),
    # a store given twice (by the same path, and through a link)
    case("store-given-twice", ["pretrain", "cpc", "{small_store}", "{small_store}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN],
         "STORES", exit=2),
    case("store-given-twice-through-a-link",
         ["pretrain", "cpc", "{small_store}", "{link}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN], "STORES", exit=2, make=_link),
    case("store-is-a-file", ["pretrain", "cpc", "{tmp}/f.zarr", "-o", "{tmp}/e.ckpt", *RESNET, *RUN], "STORES", exit=2,
         make=lambda tmp, fx: (tmp / "f.zarr").write_bytes(b"not a store") and {}),
    case("store-missing", ["pretrain", "cpc", "{tmp}/nosuch.zarr", "-o", "{tmp}/e.ckpt", *RESNET, *RUN], "STORES", exit=2),
    # the output equal to an input, inside one, or its resume file equal to one (on copies: a regression writes there)
    case("output-is-the-store", ["pretrain", "cpc", "{s}", "-o", "{s}", *RESNET, *RUN], "--output", exit=2,
         make=_broken(lambda s: None)),
    case("output-is-the-store-overwrite", ["pretrain", "cpc", "{s}", "-o", "{s}", "--overwrite", *RESNET, *RUN], "--output",
         exit=2, make=_broken(lambda s: None)),
    case("output-is-the-second-store-overwrite", ["pretrain", "cpc", "{small_store}", "{s}", "-o", "{s}", "--overwrite",
                                                  *RESNET, *RUN], "--output", exit=2, make=_broken(lambda s: None)),
    case("output-inside-the-store", ["pretrain", "cpc", "{s}", "-o", "{s}/e.ckpt", *RESNET, *RUN], "{s}",
         make=_broken(lambda s: None)),
    case("output-inside-the-store-overwrite", ["pretrain", "cpc", "{s}", "-o", "{s}/zarr.json", "--overwrite", *RESNET, *RUN],
         "{s}", make=_broken(lambda s: None)),
    case("resume-file-is-the-store", ["pretrain", "cpc", "{s}", "-o", "{tmp}/e.ckpt", *RESNET, *RUN], "{s}",
         make=_broken(lambda s: None, name="e.ckpt.resume")),
    case("resume-file-is-the-store-overwrite", ["pretrain", "cpc", "{s}", "-o", "{tmp}/e.ckpt", "--overwrite", *RESNET, *RUN],
         "{s}", make=_broken(lambda s: None, name="e.ckpt.resume")),
    case("resume-file-is-the-store-resume", ["pretrain", "cpc", "{s}", "-o", "{tmp}/e.ckpt", "--resume", *RESNET, *RUN],
         "{s}", make=_broken(lambda s: None, name="e.ckpt.resume")),
    case("output-exists", ["pretrain", *CPC], "--overwrite", make=lambda tmp, fx: (tmp / "e.ckpt").write_bytes(b"old") and {}),
    case("output-directory-missing", ["pretrain", "cpc", "{small_store}", "-o", "{tmp}/nosuch/e.ckpt", *RESNET, *RUN],
         "{tmp}/nosuch"),
    # bad option values
    case("method-arg-unknown-key", ["pretrain", *CPC, "--method-arg", "no_such_hyperparameter=1"], "--method-arg", exit=2),
    case("method-arg-not-key-value", ["pretrain", *CPC, "--method-arg", "negatives"], "--method-arg", exit=2),
    case("method-arg-mode-fixed-by-name", ["pretrain", "clocs-cmsc", "{small_store}", "-o", "{tmp}/e.ckpt",
                                           "--method-arg", "mode=cmlc", *RESNET, *RUN], "--method-arg", exit=2),
    case("method-arg-mode-nonsense", ["pretrain", "clocs-cmsc", "{small_store}", "-o", "{tmp}/e.ckpt",
                                      "--method-arg", "mode=sideways", *RESNET, *RUN], "--method-arg", exit=2),
    case("method-arg-mask-ratio-2", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", *ST_MEM,
                                     "--method-arg", "mask_ratio=2"], "--method-arg", exit=2),
    case("method-arg-mask-ratio-text", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", *ST_MEM,
                                        "--method-arg", "mask_ratio=most"], "--method-arg", exit=2),
    case("method-arg-negatives-0", ["pretrain", *CPC, "--method-arg", "negatives=0"], "--method-arg", exit=2),
    case("method-arg-temperature-0", ["pretrain", "clocs-cmlc", "{small_store}", "-o", "{tmp}/e.ckpt",
                                      "--method-arg", "temperature=0", *RESNET, *RUN], "--method-arg", exit=2),
    case("method-arg-jepa-unknown", ["pretrain", "jepa", "{small_store}", "-o", "{tmp}/e.ckpt", *JEPA,
                                     "--method-arg", "mask_ratio=0.5"], "--method-arg", exit=2),
    case("model-arg-unknown", ["pretrain", *CPC, "--model-arg", "no_such_argument=1"], "--model-arg", exit=2),
    case("model-arg-cannot-build", ["pretrain", *CPC, "--model-arg", "base_width=-4"], "--model-arg", exit=2),
    case("model-arg-st-mem-patch-size-0", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", *ST_MEM,
                                           "--model-arg", "patch_size=0"], "--model-arg", exit=2),
    case("model-arg-st-mem-one-patch", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", *ST_MEM,
                                        "--model-arg", "patch_size=500"], "--model-arg", exit=2),
    case("model-arg-heads-do-not-divide-dim", ["pretrain", "jepa", "{small_store}", "-o", "{tmp}/e.ckpt", *JEPA,
                                               "--model-arg", "dim=30"], "--model-arg", exit=2),
    case("backbone-unknown", ["pretrain", "cpc", "{small_store}", "-o", "{tmp}/e.ckpt", "--backbone", "nosuchnet", *RUN],
         "--backbone", exit=2),
    case("backbone-wrong-family-st-mem", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", "--backbone",
                                          "resnet18", *RUN], "--backbone", exit=2),
    case("backbone-wrong-family-jepa", ["pretrain", "jepa", "{small_store}", "-o", "{tmp}/e.ckpt", "--backbone",
                                        "st_mem_vit_small", *RUN], "--backbone", exit=2),
    case("backbone-jepa-for-st-mem", ["pretrain", "st-mem", "{small_store}", "-o", "{tmp}/e.ckpt", "--backbone",
                                      "ecg_jepa_vit_xs", *RUN], "--backbone", exit=2),
    case("crop-longer-than-records", ["pretrain", *CPC, "--crop", "100000"], "--crop", exit=2),
    case("crop-negative", ["pretrain", *CPC, "--crop", "-1"], "--crop", exit=2),
    case("batch-size-larger-than-corpus", ["pretrain", "cpc", "{small_store}", "-o", "{tmp}/e.ckpt", *RESNET,
                                           "--batch-size", "64", "--epochs", "1", "--device", "cpu", "--workers", "1"],
         "--batch-size"),
    case("batch-size-0", ["pretrain", *CPC, "--batch-size", "0"], "--batch-size", exit=2),
    case("epochs-0", ["pretrain", *CPC, "--epochs", "0"], "--epochs", exit=2),
    case("lr-0", ["pretrain", *CPC, "--lr", "0"], "--lr", exit=2),
    case("lr-nan", ["pretrain", *CPC, "--lr", "nan"], "--lr", exit=2),
    case("weight-decay-negative", ["pretrain", *CPC, "--weight-decay", "-1"], "--weight-decay", exit=2),
    case("schedule-unknown", ["pretrain", *CPC, "--schedule", "sawtooth"], "--schedule", exit=2),
    case("device-unknown", ["pretrain", *CPC, "--device", "tpu:7"], "--device", exit=2),
    case("precision-unknown", ["pretrain", *CPC, "--precision", "fp8"], "--precision", exit=2),
    case("method-unknown", ["pretrain", "simclr", "{small_store}", "-o", "{tmp}/e.ckpt"], "'simclr' is not one of", exit=2),
    case("no-store", ["pretrain", "cpc", "-o", "{tmp}/e.ckpt"], "STORES", exit=2),
    # resume: none to continue from, one left by a run with other options or stores, one left and no --resume
    case("resume-without-a-resume-file", ["pretrain", *CPC, "--resume"], "--resume"),
    case("resume-other-lr", _resume_argv(["cpc", "{small_store}"], "--resume", "--lr", "1e-3"), "{tmp}/e.ckpt.resume",
         make=interrupted),
    case("resume-other-method", _resume_argv(["clocs-cmsc", "{small_store}"], "--resume"), "{tmp}/e.ckpt.resume",
         make=interrupted),
    case("resume-other-epochs", _resume_argv(["cpc", "{small_store}"], "--resume", "--epochs", "3"), "{tmp}/e.ckpt.resume",
         make=interrupted),
    case("resume-other-model-arg", _resume_argv(["cpc", "{small_store}"], "--resume", "--model-arg", "base_width=16"),
         "{tmp}/e.ckpt.resume", make=interrupted),
    case("resume-other-stores", _resume_argv(["cpc", "{small_store}", "{copy}"], "--resume"), "{tmp}/e.ckpt.resume",
         make=interrupted_with_copy),
    case("interrupted-run-without-resume", _resume_argv(["cpc", "{small_store}"]), "--resume", make=interrupted),
    # train --init with an encoder that does not fit (a cpc-pretrained resnet18, base_width 8, on small_store)
    init("encoder-truncated", _encoder_copy(truncate=True), needle="{c}", exit=1),
    init("encoder-of-another-backbone", _encoder_copy(), model="resnet34"),
    init("encoder-of-another-width", _encoder_copy(), model_args=[*SMALL_TRAIN, "--model-arg", "base_width=16"]),
    init("encoder-input-lead-unknown", _encoder_copy(_leads_x)),
    init("encoder-input-fewer-leads", _encoder_copy(_two_leads)),
    init("encoder-leads-in-another-order", _store_leads_reversed, store="{s}"),
    init("encoder-other-length", _encoder_copy(), store="{short_store}"),
]
