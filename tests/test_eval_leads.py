"""``eval --leads``: a model run on a subset of its leads with the others zeroed, read by name, so a
multi-lead model is scored on the leads a reduced-lead student reads, even from a store holding only those."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli, write_wfdb_dir

from ecgtool.checkpoint import Checkpoint
from ecgtool.data.prep import run_prep
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store
from ecgtool.data.transforms import PrepConfig
from ecgtool.eval.evaluate import run_eval
from ecgtool.eval.options import EvalOptions
from ecgtool.train.loop import TrainArgs, Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("leads")
    raw = write_wfdb_dir(root / "raw", n=16, fs=100, seconds=4.0, seed=2)
    run_prep(open_reader(raw), root / "all.zarr", PrepConfig(fs=100, seconds=4.0))
    run_prep(open_reader(raw), root / "ii.zarr", PrepConfig(fs=100, seconds=4.0, leads=("II",)))  # lead II alone
    Trainer(TrainArgs("resnet18", epochs=1, batch_size=8, device="cpu", model_kwargs={"base_width": 8}),
            root / "all.zarr", None, root / "m.ckpt").run()
    return root


def _probs(ckpt, store, leads):
    opts = EvalOptions(bootstrap=0, tune_on_eval_store=False, leads=leads)
    return run_eval(ckpt, store, "cpu", opts).main.probs


def test_other_leads_are_zeroed(data):
    probs = _probs(data / "m.ckpt", data / "all.zarr", ("II",))
    ckpt = Checkpoint.load(data / "m.ckpt")
    model = ckpt.build_model().eval()
    x = torch.from_numpy(open_store(data / "all.zarr").rows()).float()
    x[:, [0, 2]] = 0  # I and V1
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs, _probs(data / "m.ckpt", data / "all.zarr", None))  # the zeros changed something


def test_a_store_with_only_the_kept_leads_is_enough(data):
    np.testing.assert_allclose(_probs(data / "m.ckpt", data / "ii.zarr", ("II",)),
                               _probs(data / "m.ckpt", data / "all.zarr", ("II",)), rtol=1e-5, atol=1e-6)
    r = run_cli("eval", data / "m.ckpt", data / "ii.zarr", "--bootstrap", 0, expect=1)  # without --leads: all three needed
    assert "lacks lead(s) I, V1" in r.stderr


def test_all_of_a_models_leads_change_nothing(data):
    np.testing.assert_array_equal(_probs(data / "m.ckpt", data / "all.zarr", ("V1", "I", "II")),
                                  _probs(data / "m.ckpt", data / "all.zarr", None))


def test_the_report_and_the_cli_say_which_leads(data):
    r = run_cli("eval", data / "m.ckpt", data / "ii.zarr", "--leads", "II", "--bootstrap", 0, "--json")
    import json

    report = json.loads(r.stdout)
    assert report["leads"] == {"read": ["II"], "zeroed": ["I", "V1"]}
    r = run_cli("eval", data / "m.ckpt", data / "all.zarr", "--leads", "II,aVR", "--bootstrap", 0, expect=2)
    assert "--leads" in r.stderr and "aVR is not among them" in r.stderr
    r = run_cli("eval", data / "m.ckpt", data / "all.zarr", "--leads", "II,II", "--bootstrap", 0, expect=2)
    assert "each lead once" in r.stderr
