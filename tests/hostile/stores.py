"""Broken ECG stores, through every command that reads one: info, split, merge, train (and --val), eval (and --val), explain.

The mutations are made on copies of small shared stores: ``small_store`` (12 records, 3 leads)
for the commands that need no checkpoint, the synthetic test split (``store``) where the trained
checkpoint reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import Case, noise

TRAIN = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--model-arg", "base_width=8", "--workers", "1"]


def _attrs(store: Path, **changes) -> None:
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"].update(changes)
    meta.write_text(json.dumps(doc))


def _array_meta(store: Path, name: str, **changes) -> None:
    meta = store / name / "zarr.json"
    doc = json.loads(meta.read_text())
    doc.update(changes)
    meta.write_text(json.dumps(doc))


def _write(store: Path, name: str, index, value) -> None:
    import zarr

    zarr.open_group(store, mode="r+")[name][index] = value


# -- mutations of a copied store (each takes the store's path) ------------------------------
def incomplete(s):
    _attrs(s, complete=False)


def foreign(s):
    doc = json.loads((s / "zarr.json").read_text())
    doc["attributes"] = {"title": "someone else's Zarr group"}
    (s / "zarr.json").write_text(json.dumps(doc))


def newer(s):
    _attrs(s, format_version=99)


def garbage_metadata(s):
    (s / "zarr.json").write_bytes(noise(200))


def wrong_dtype(s):
    _array_meta(s, "signals", data_type="float64")


def wrong_shape(s):  # one more label column than classes
    doc = json.loads((s / "labels" / "zarr.json").read_text())
    doc["shape"][1] += 1
    (s / "labels" / "zarr.json").write_text(json.dumps(doc))


def missing_chunk(s):
    (s / "signals" / "c" / "0" / "0" / "0").unlink()


def labels_out_of_range(s):
    _write(s, "labels", (0, 0), 7)


def nan_signals(s):  # an int16 store's NaN is in the scale of its rows
    scaled = (s / "signal_scale").exists()
    _write(s, "signal_scale" if scaled else "signals", slice(0, 2), np.nan)


def no_positives(s):  # the last class has no positive record
    import zarr

    labels = zarr.open_group(s, mode="r+")["labels"]
    a = labels[:]
    a[:, -1] = 0
    labels[:] = a


def classes_renamed(s):
    classes = json.loads((s / "zarr.json").read_text())["attributes"]["classes"]
    _attrs(s, classes=[c + "x" for c in classes])


def lead_missing(s):  # the checkpoint's lead I is not in the store
    leads = json.loads((s / "zarr.json").read_text())["attributes"]["leads"]
    _attrs(s, leads=["X"] + leads[1:])


def lead_twice(s):  # two columns claim to be lead I
    leads = json.loads((s / "zarr.json").read_text())["attributes"]["leads"]
    _attrs(s, leads=[leads[0]] + leads[:-1])


def other_normalisation(s):
    _attrs(s, normalisation={"method": "none"})


def other_fs(s):
    _attrs(s, fs=250.0)


def plain_directory(s):
    import shutil

    shutil.rmtree(s)
    s.mkdir()
    (s / "readme.txt").write_text("not a store\n")


def empty(s):
    """The same store with no record at all."""
    import shutil

    from ecgtool.data.store import StoreWriter, open_store

    src = open_store(s)
    attrs = {k: v for k, v in src.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
    tmp = s.with_name(s.name + ".src")
    with StoreWriter(tmp, n_leads=len(src.leads), n_samples=src.n_samples, attrs=attrs):
        pass
    shutil.rmtree(s)
    tmp.rename(s)


# -- builders ------------------------------------------------------------------------------
SHARED = ("ckpt", "store", "train_store", "small_store")


def copied(fixture: str, mutate, shared=()):
    """Copy the shared store ``fixture`` to tmp/s.zarr and break it; name the shared inputs the argv uses."""

    def build(tmp: Path, fx) -> dict:
        s = fx.copy(fixture, tmp / "s.zarr")
        mutate(s)
        return {"s": s, **{n: getattr(fx, n) for n in shared}}

    return build


def case(id, fixture, mutate, argv, needle="{s}", exit=1, xfail=None, slow=False) -> Case:
    shared = [n for n in SHARED if any(f"{{{n}}}" in a for a in argv)]
    return Case(f"store-{id}", copied(fixture, mutate, shared), argv, exit, needle, xfail, slow)


def info(id, mutate, **kw):
    return case(f"{id}-info", "small_store", mutate, ["info", "{s}"], **kw)


def split(id, mutate, **kw):
    return case(f"{id}-split", "small_store", mutate, ["split", "{s}", "-o", "{tmp}/splits", "--ratios", "0.5,0.25,0.25"], **kw)


def merge(id, mutate, **kw):
    return case(f"{id}-merge", "small_store", mutate, ["merge", "{s}", "-o", "{tmp}/merged.zarr"], **kw)


def train(id, mutate, **kw):
    return case(f"{id}-train", "small_store", mutate, ["train", "resnet18", "{s}", "-o", "{tmp}/m.ckpt", *TRAIN], **kw)


def train_val(id, mutate, **kw):
    return case(f"{id}-train-val", "small_store", mutate,
                ["train", "resnet18", "{small_store}", "--val", "{s}", "-o", "{tmp}/m.ckpt", *TRAIN], **kw)


def eval_(id, mutate, **kw):
    return case(f"{id}-eval", "store", mutate, ["eval", "{ckpt}", "{s}", "--bootstrap", "0", "--device", "cpu"], **kw)


def eval_val(id, mutate, **kw):
    return case(f"{id}-eval-val", "store", mutate,
                ["eval", "{ckpt}", "{train_store}", "--val", "{s}", "--bootstrap", "0", "--device", "cpu"], **kw)


def explain(id, mutate, **kw):
    return case(f"{id}-explain", "store", mutate,
                ["explain", "{ckpt}", "{s}", "-o", "{tmp}/cams", "--first", "1", "--no-charts", "--device", "cpu"], **kw)


CASES = [
    # incomplete: every reader
    info("incomplete", incomplete),
    split("incomplete", incomplete),
    merge("incomplete", incomplete),
    train("incomplete", incomplete),
    train_val("incomplete", incomplete),
    eval_("incomplete", incomplete),
    eval_val("incomplete", incomplete),
    explain("incomplete", incomplete),
    # foreign, not a store at all, garbage metadata, newer format
    merge("foreign", foreign),
    merge("newer-version", newer),
    info("foreign", foreign),
    split("foreign", foreign),
    eval_("foreign", foreign),
    info("plain-directory", plain_directory),
    train("plain-directory", plain_directory),
    info("garbage-metadata", garbage_metadata),
    explain("garbage-metadata", garbage_metadata),
    info("newer-version", newer),
    train("newer-version", newer),
    explain("newer-version", newer),
    eval_val("newer-version", newer),
    # wrong dtype / shape
    info("wrong-dtype", wrong_dtype),
    eval_("wrong-dtype", wrong_dtype),
    info("labels-wrong-shape", wrong_shape),
    split("labels-wrong-shape", wrong_shape),
    train("labels-wrong-shape", wrong_shape),
    # missing chunks: zarr's fill value would be read as signal
    train("missing-chunk", missing_chunk),
    eval_("missing-chunk", missing_chunk),
    # labels out of range (multi-hot must be 0/1)
    info("labels-out-of-range", labels_out_of_range),
    split("labels-out-of-range", labels_out_of_range),
    train("labels-out-of-range", labels_out_of_range),
    eval_("labels-out-of-range", labels_out_of_range),
    # NaN signals
    train("nan-signals", nan_signals),
    eval_("nan-signals", nan_signals),
    explain("nan-signals", nan_signals),
    # empty
    split("empty", empty),
    train("empty", empty),
    train_val("empty", empty, needle="--val", exit=2),
    eval_("empty", empty),
    # classes disagreeing, leads or fs not the checkpoint's
    # (a class without positives is no error but a warning: tests/test_hostile.py, test_a_class_without_positives_is_named)
    train_val("classes-disagree", classes_renamed),
    eval_("classes-disagree", classes_renamed),
    eval_val("classes-disagree", classes_renamed),
    explain("classes-disagree", classes_renamed),
    eval_("lead-missing", lead_missing),
    explain("lead-missing", lead_missing),
    eval_("lead-named-twice", lead_twice),
    eval_("fs-disagrees", other_fs),
    explain("normalisation-disagrees", other_normalisation),
]
