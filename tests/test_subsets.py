"""Label-fraction subsets: nested across fractions, whole patients, every class where possible, seeded;
and train's use of them (the loader's rows, the checkpoint's record, an exact resume)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_same_run, interrupt_after_epoch, wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import open_store
from ecgtool.data.subsets import label_subset, stratified_patient_order
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.train.engine import resume_path
from ecgtool.train.loop import TrainArgs, Trainer

FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def fake_store(n_patients=600, k=6, seed=0):
    """Patients with 1-3 records each; classes of very different frequencies (the rarest in 4 patients),
    a few patients with no label at all."""
    rng = np.random.default_rng(seed)
    freq = np.array([0.5, 0.2, 0.1, 0.05, 0.02, 0.0])
    patient_labels = rng.random((n_patients, k)) < freq
    patient_labels[rng.choice(n_patients, 4, replace=False), k - 1] = True  # the rarest class: 4 patients
    per = rng.integers(1, 4, n_patients)
    pid = np.repeat(np.arange(n_patients), per)
    labels = patient_labels[pid].astype(np.uint8)
    # a patient's records need not share every label: drop some labels of later records
    labels[np.r_[False, pid[1:] == pid[:-1]] & (rng.random(len(pid)) < 0.3)] = 0
    order = rng.permutation(len(pid))  # records not grouped by patient in the store
    pid, labels = pid[order], labels[order]
    return FakeStore(patient_id=np.array([f"P{p:04d}" for p in pid]), labels=labels,
                     record_id=np.array([f"R{i:05d}" for i in range(len(pid))]), classes=[f"C{c}" for c in range(k)])


class FakeStore(SimpleNamespace):
    """What label_subset reads of a store."""

    def __len__(self):
        return len(self.labels)


@pytest.fixture(scope="module")
def store():
    return fake_store()


def test_fractions_are_nested(store):
    subsets = [set(label_subset(store, f, seed=3).indices.tolist()) for f in FRACTIONS]
    for small, large in zip(subsets, subsets[1:]):
        assert small < large  # strictly inside
    assert subsets[-1] == set(range(len(store)))


def test_sizes_follow_the_fraction(store):
    n = len(store)
    for f in FRACTIONS[2:]:
        got = len(label_subset(store, f, seed=3).indices)
        assert np.ceil(f * n) <= got <= np.ceil(f * n) + 2  # whole patients: at most one patient (3 records) over


def test_patients_are_never_split(store):
    for f in FRACTIONS:
        chosen = label_subset(store, f, seed=1).indices
        inside = set(store.patient_id[chosen])
        outside = set(np.delete(store.patient_id, chosen))
        assert not inside & outside


def test_every_class_is_present_even_at_one_percent(store):
    for seed in range(5):
        s = label_subset(store, 0.01, seed=seed)
        present = store.labels.any(axis=0)
        assert (store.labels[s.indices].any(axis=0) == present).all() and s.missing_classes == ()
        assert not present[-1] or store.labels[s.indices, -1].any()  # the class of 4 patients too


def test_a_class_no_record_has_is_reported_not_invented():
    s = FakeStore(patient_id=np.array(["a", "b", "c", "d"]), record_id=np.array(list("wxyz")), classes=["A", "B", "C"],
                  labels=np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.uint8))
    sub = label_subset(s, 0.25, seed=0)
    assert sub.missing_classes == ()  # C has no record anywhere: not missing
    assert s.labels[sub.indices, :2].any(axis=0).all() and len(sub.indices) <= 2  # A and B, by at most two patients


def test_prefixes_are_stratified(store):
    """Each class's share of the patients of a 10 % subset is close to its share of all patients, much
    closer than whole patients drawn at random come."""
    from ecgtool.data.split import patient_table

    _, inverse, labels = patient_table(store)
    share = labels.mean(axis=0)
    strat, rand = [], []
    for seed in range(10):
        chosen = np.unique(inverse[label_subset(store, 0.1, seed=seed).indices])
        strat.append(np.abs(labels[chosen].mean(axis=0) - share).max())
        drawn = np.random.default_rng(seed).choice(len(labels), len(chosen), replace=False)
        rand.append(np.abs(labels[drawn].mean(axis=0) - share).max())
    assert max(strat) < 0.025 and np.mean(strat) < np.mean(rand) / 2


def test_the_same_seed_repeats_other_seeds_differ(store):
    a, b = label_subset(store, 0.1, seed=7), label_subset(store, 0.1, seed=7)
    assert np.array_equal(a.indices, b.indices) and a.record_ids_sha256 == b.record_ids_sha256
    c = label_subset(store, 0.1, seed=8)
    assert not np.array_equal(a.indices, c.indices) and a.record_ids_sha256 != c.record_ids_sha256


def test_the_order_covers_every_patient_once():
    labels = np.random.default_rng(0).random((200, 4)) < 0.3
    order, opening = stratified_patient_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(200)) and 1 <= opening <= 5


def test_fraction_bounds(store):
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="label_fraction"):
            label_subset(store, bad, seed=0)


# -- train -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("frac")
    return wfdb_store(root / "train.zarr", n=48, seed=1), wfdb_store(root / "val.zarr", n=16, seed=2)


def args(**kw):
    base = dict(model="resnet18", epochs=3, batch_size=4, lr=1e-3, seed=0, device="cpu", label_fraction=0.5,
                model_kwargs={"base_width": 8})
    return TrainArgs(**{**base, **kw})


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_loader_over_a_subset_shuffles_and_starts_anywhere(stores, mode):
    s = open_store(stores[0])
    idx = label_subset(s, 0.5, seed=2).indices
    loader = ChunkLoader(s, 5, indices=idx, shuffle=True, seed=3, mode=mode, window_chunks=1)
    rows = [r for _, _, r in loader]
    assert sorted(np.concatenate(rows).tolist()) == idx.tolist()
    loader.set_epoch(0, 2)
    assert [r.tolist() for _, _, r in loader] == [r.tolist() for r in rows[2:]]
    loader.set_epoch(1)
    assert np.concatenate([r for _, _, r in loader]).tolist() != np.concatenate(rows).tolist()


def test_train_uses_only_the_subset_and_records_it(stores, tmp_path, monkeypatch):
    train, val = stores
    seen = []
    original = ChunkLoader.__iter__

    def spy(self):
        for x, y, rows in original(self):
            if self.shuffle:  # the training loader
                seen.append(rows)
            yield x, y, rows

    monkeypatch.setattr(ChunkLoader, "__iter__", spy)
    trainer = Trainer(args(epochs=1), train, val, tmp_path / "m.ckpt")
    ckpt = trainer.run()
    expected = label_subset(open_store(train), 0.5, seed=0)
    assert sorted(np.concatenate(seen).tolist()) == expected.indices.tolist()
    recorded = Checkpoint.load(tmp_path / "m.ckpt").train_args
    assert recorded["label_fraction"] == 0.5 and recorded["label_subset"] == expected.to_dict() == ckpt.train_args["label_subset"]
    assert recorded["label_subset"]["records"] == 24 and recorded["label_subset"]["patients"] == 12


def test_resume_with_a_label_fraction_is_exact(stores, tmp_path):
    train, val = stores
    full = Trainer(args(), train, val, tmp_path / "full.ckpt").run()

    interrupt_after_epoch(lambda **hook: Trainer(args(), train, val, tmp_path / "cut.ckpt", **hook))
    with pytest.raises(EcgtoolError, match="different training options"):
        Trainer(args(label_fraction=0.25), train, val, tmp_path / "cut.ckpt").resume()
    trainer = Trainer(args(), train, val, tmp_path / "cut.ckpt")
    assert trainer.resume() and trainer.start_epoch == 1
    resumed = trainer.run()
    assert_same_run(full, resumed)


def test_resume_refuses_a_subset_that_changed(stores, tmp_path, monkeypatch):
    train, val = stores
    with pytest.raises(KeyboardInterrupt):
        Trainer(args(epochs=2), train, val, tmp_path / "m.ckpt",
                on_epoch=lambda r, b: (_ for _ in ()).throw(KeyboardInterrupt) if r["epoch"] == 2 else None).run()
    assert resume_path(tmp_path / "m.ckpt").exists()
    from ecgtool.data import subsets

    original = subsets.stratified_patient_order
    monkeypatch.setattr(subsets, "stratified_patient_order", lambda labels, seed: original(labels, seed + 1))
    with pytest.raises(EcgtoolError, match="another label subset"):
        Trainer(args(epochs=2), train, val, tmp_path / "m.ckpt").resume()
