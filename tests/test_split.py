"""Patient-wise splitting: no patient ever in two splits, official folds respected, stratification."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgtool.data.split import SPLITS, folds_for_ratios, parse_folds, plan_split, run_split
from ecgtool.data.store import StoreWriter, open_store
from ecgtool.errors import EcgtoolError


def make_store(path, patient_of, labels, folds=None, multi_label=True):
    n = len(patient_of)
    attrs = dict(fs=100.0, leads=["I"], units="mV", classes=[f"c{k}" for k in range(labels.shape[1])], task="t",
                 multi_label=multi_label, normalisation={"method": "none"})
    with StoreWriter(path, n_leads=1, n_samples=8, attrs=attrs, chunk_records=7) as w:
        w.append(np.arange(n * 8, dtype=np.float32).reshape(n, 1, 8), labels, [f"r{i}" for i in range(n)],
                 [f"p{p}" for p in patient_of], folds)
    return open_store(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patients=st.lists(st.integers(0, 29), min_size=30, max_size=120),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_no_patient_in_two_splits(tmp_path_factory, patients, seed, data):
    # Every patient id 0..29 appears at least once, so there are enough patients for 10 folds.
    patient_of = np.array(list(range(30)) + patients)
    rng = np.random.default_rng(seed)
    labels = (rng.random((len(patient_of), 4)) < 0.3).astype(np.uint8)
    store = make_store(tmp_path_factory.mktemp("s") / "s.zarr", patient_of, labels)
    plan = plan_split(store, None, 10, seed)
    sets = [set(store.patient_id[plan.members[s]]) for s in SPLITS]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(plan.members[s]) for s in SPLITS) == len(patient_of)  # every record somewhere
    # a patient's records all share one fold
    for p in np.unique(store.patient_id):
        assert len(np.unique(plan.folds[store.patient_id == p])) == 1


def test_stratification_balances_classes(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    labels = np.stack([rng.random(n) < 0.5, rng.random(n) < 0.1, rng.random(n) < 0.03], axis=1).astype(np.uint8)
    store = make_store(tmp_path / "s.zarr", np.arange(n), labels)
    plan = plan_split(store, None, 10, 0)
    for k in range(3):
        per_fold = [labels[plan.folds == f, k].sum() for f in range(1, 11)]
        expected = labels[:, k].sum() / 10
        assert max(abs(c - expected) for c in per_fold) <= max(2, 0.2 * expected), (k, per_fold)


def test_official_folds_are_used(tmp_path):
    n = 40
    folds = np.arange(n) % 10 + 1
    store = make_store(tmp_path / "s.zarr", np.arange(n), np.eye(2, dtype=np.uint8)[np.arange(n) % 2], folds)
    plan = plan_split(store, None, 10, 0)
    assert plan.fold_source == "official"
    np.testing.assert_array_equal(plan.members["test"], np.flatnonzero(folds == 10))
    np.testing.assert_array_equal(plan.members["val"], np.flatnonzero(folds == 9))


def test_official_folds_that_split_a_patient_are_refused(tmp_path):
    store = make_store(tmp_path / "s.zarr", np.zeros(20, int), np.ones((20, 1), np.uint8), np.arange(20) % 10 + 1)
    with pytest.raises(EcgtoolError, match="patient p0 would be in both"):
        plan_split(store, None, 10, 0)


def test_multiclass_split_and_subset_content(tmp_path):
    n = 60
    labels = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    store = make_store(tmp_path / "s.zarr", np.arange(n) // 2, labels, multi_label=False)
    k, lists = folds_for_ratios([0.6, 0.2, 0.2])
    plan = plan_split(store, lists, k, 1, use_official=False)
    (tmp_path / "out").mkdir()
    paths = run_split(store, tmp_path / "out", plan, overwrite=False)
    total = 0
    for s in SPLITS:
        sub = open_store(paths[s])
        idx = plan.members[s]
        np.testing.assert_array_equal(sub.rows(), store.rows()[idx])
        np.testing.assert_array_equal(sub.record_id, store.record_id[idx])
        assert sub.attrs["split"]["name"] == s and sub.attrs["provenance"][-1]["step"] == "split"
        total += len(sub)
    assert total == n


def test_fold_parsing_and_ratios():
    assert parse_folds("1-3,5, 9") == [1, 2, 3, 5, 9]
    with pytest.raises(EcgtoolError):
        parse_folds("a-b")
    assert folds_for_ratios([0.8, 0.1, 0.1]) == (10, {"train": list(range(1, 9)), "val": [9], "test": [10]})
    assert folds_for_ratios([0.7, 0.15, 0.15])[0] == 20
    with pytest.raises(EcgtoolError):
        folds_for_ratios([0.5, 0.1, 0.1])


def test_overwrite_removes_a_split_that_is_now_empty(tmp_path):
    from conftest import run_cli

    n = 40
    store = make_store(tmp_path / "s.zarr", np.arange(n), np.eye(2, dtype=np.uint8)[np.arange(n) % 2])
    run_cli("split", store.path, "-o", tmp_path / "out", "--ratios", "0.6,0.2,0.2")
    assert (tmp_path / "out" / "val.zarr").exists()
    run_cli("split", store.path, "-o", tmp_path / "out", "--ratios", "0.8,0,0.2", "--overwrite")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.zarr", "train.zarr"]


@pytest.mark.parametrize("text, why", [("8-1", "fold range 8-1 runs backwards; write 1-8"),  # was an empty list
                                       ("", "fold list '' names no fold"), (",", "fold list ',' names no fold")])
def test_an_empty_or_backwards_fold_list_is_a_usage_error(tmp_path, text, why):
    from conftest import run_cli

    store = make_store(tmp_path / "s.zarr", np.arange(40), np.eye(2, dtype=np.uint8)[np.arange(40) % 2], np.arange(40) % 10 + 1)
    r = run_cli("split", store.path, "-o", tmp_path / "out", "--train-folds", text, "--val-folds", 9, "--test-folds", 10,
                expect=2)
    assert "Invalid value for '--train-folds'" in r.stderr and why in r.stderr and not (tmp_path / "out").exists()


def test_a_fold_the_store_lacks_is_a_usage_error(tmp_path):
    # --test-folds 11 on folds 1-10 wrote no test.zarr, and fold 10 went nowhere, without a word
    from conftest import run_cli

    store = make_store(tmp_path / "s.zarr", np.arange(40), np.eye(2, dtype=np.uint8)[np.arange(40) % 2], np.arange(40) % 10 + 1)
    r = run_cli("split", store.path, "-o", tmp_path / "out", "--train-folds", "1-8", "--val-folds", 9, "--test-folds", 11,
                expect=2)
    assert "Invalid value for '--test-folds': test folds: 11 not among the folds of" in r.stderr and "(1-10)" in r.stderr
    assert not (tmp_path / "out").exists()


def test_records_in_no_split_are_counted_and_named(tmp_path):
    # fold 0 (no official fold) and an unlisted fold: records in no split, said on stderr and in the JSON
    import json

    from conftest import run_cli

    folds = np.arange(44) % 10 + 1
    folds[40:] = 0
    store = make_store(tmp_path / "s.zarr", np.arange(44), np.eye(2, dtype=np.uint8)[np.arange(44) % 2], folds)
    r = run_cli("split", store.path, "-o", tmp_path / "out", "--json")
    assert "warning: 4 records are in no split: 4 of fold 0 (no official fold)" in " ".join(r.stderr.split())
    assert json.loads(r.stdout)["unassigned_records"] == {"0": 4}
    r = run_cli("split", store.path, "-o", tmp_path / "out2", "--train-folds", "1-7", "--val-folds", 9, "--test-folds", 10)
    assert "warning: 8 records are in no split: 4 of fold 0 (no official fold), 4 of fold 8" in " ".join(r.stderr.split())
    r = run_cli("split", store.path, "-o", tmp_path / "out3", "--ignore-official")
    assert "no split" not in r.stderr
