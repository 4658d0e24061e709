"""CinC 2020/2021: SNOMED codes through the challenge's mapping tables, equivalent-code merges, sources."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from datasets_fixture import write_challenge_record

from ecgtool.data.readers import open_reader
from ecgtool.data.readers.cinc import task_classes
from ecgtool.data.store import open_store

RECORDS = {  # source/group/record → #Dx
    "cpsc_2018/g1/A0001": "59118001",
    "cpsc_2018/g1/A0002": "426783006",
    "georgia/g1/E00001": "713427006,164889003",  # complete RBBB is scored as RBBB
    "georgia/g1/E00002": "63593006,251146004,164884008",  # SVPB (=PAC), low QRS voltage, VEB (unscored)
    "ptb-xl/g1/HR00001": "733534002,6374002,365413008",  # CLBBB, BBB, PRWP: new in 2021
}


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    root = tmp_path_factory.mktemp("cinc") / "training"
    for i, (rel, dx) in enumerate(RECORDS.items()):
        src, group, name = rel.split("/")
        sig = 0.1 * np.random.default_rng(i).standard_normal((12, 2500))
        write_challenge_record(root / src / group, name, sig, 500, [f"Age: {50 + i}", "Sex: Female", f"Dx: {dx}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"])
    return root


def test_class_sets_match_the_challenges():
    assert len(task_classes("scored")) == 26 and sum(len(v) for v in task_classes("scored").values()) == 30
    assert len(task_classes("scored2020")) == 24 and sum(len(v) for v in task_classes("scored2020").values()) == 27
    merged = {k: v for k, v in task_classes("scored").items() if len(v) == 2}
    assert merged == {
        "CLBBB|LBBB": ["733534002", "164909002"], "CRBBB|RBBB": ["713427006", "59118001"],
        "PAC|SVPB": ["284470004", "63593006"], "PVC|VPB": ["427172004", "17338001"],
    }
    assert "LBBB" in task_classes("scored2020") and "CLBBB" not in task_classes("scored2020")


def test_labels_merge_equivalent_codes(training):
    reader = open_reader(training)
    assert reader.name == "cinc" and reader.task == "cinc-scored" and reader.patient_ids == "record"
    labels = {rid: reader.read(rid).labels for rid in reader.record_ids()}
    assert labels["A0001"] == ["CRBBB|RBBB"] and labels["E00001"] == ["AF", "CRBBB|RBBB"]
    assert labels["E00002"] == ["LQRSV", "PAC|SVPB"]  # VEB is not scored
    assert labels["HR00001"] == ["BBB", "CLBBB|LBBB", "PRWP"]
    assert reader.read("E00001").source == "georgia" and reader.read("A0002").labels == ["NSR"]
    old = open_reader(training, task="scored2020")
    assert old.read("HR00001").labels == []  # nothing of 2020's scored set: dropped by prep


def test_prep_keeps_codes_and_sources(training, tmp_path):
    run_cli("prep", training, "-o", tmp_path / "s.zarr", "--workers", 1)
    s = open_store(tmp_path / "s.zarr")
    assert len(s.classes) == 26 and s.attrs["class_codes"]["CRBBB|RBBB"] == ["713427006", "59118001"]
    assert s.extras["source"].tolist() == ["cpsc_2018", "cpsc_2018", "georgia", "georgia", "ptb-xl"]
    run_cli("prep", training, "-o", tmp_path / "all.zarr", "--task", "all", "--workers", 1)
    every = open_store(tmp_path / "all.zarr")
    assert every.classes == ["AF", "BBB", "CLBBB|LBBB", "CRBBB|RBBB", "LQRSV", "NSR", "PAC|SVPB", "PRWP", "VEB"]


def test_eval_reports_the_challenge_metric(training, tmp_path):
    import json

    import zarr

    from ecgtool.eval import challenge

    run_cli("prep", training, "-o", tmp_path / "s.zarr", "--workers", 1, "--fs", 100)
    run_cli("train", "resnet18", tmp_path / "s.zarr", "-o", tmp_path / "m.ckpt", "--epochs", 1, "--batch-size", 5,
            "--model-arg", "base_width=8")
    rep = json.loads(run_cli("eval", tmp_path / "m.ckpt", tmp_path / "s.zarr", "--json", "--bootstrap", 30,
                             "--predictions", tmp_path / "p.zarr").stdout)
    assert rep["challenge"]["year"] == 2021 and rep["challenge"]["classes_scored"] == 26
    pred = zarr.open_group(tmp_path / "p.zarr", mode="r")
    codes = open_store(tmp_path / "s.zarr").attrs["class_codes"]
    mapping = challenge.weights_for(codes, "cinc-scored")
    assert rep["macro"]["challenge"] == challenge.challenge_metric(pred["labels"][:], pred["decisions"][:], mapping)
    assert "challenge" in rep["bootstrap"]["intervals"]
