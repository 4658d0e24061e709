"""``eval``: a checkpoint applied to a store, and the report of how well it does."""

from __future__ import annotations

import os

import numpy as np

from ecgtool.data.loader import ChunkLoader, InputSpec, check_store_fits
from ecgtool.data.store import open_store
from ecgtool.eval.metrics import classification_report
from ecgtool.eval.predict import predict
from ecgtool.outputs import atomic_output
from ecgtool.provenance import fingerprint, make_entry
from ecgtool.train.checkpoint import build_model, load_checkpoint

PREDICTIONS_FORMAT = "ecgtool.predictions"


def run_eval(ckpt_path, store_path, device, batch_size: int = 256) -> dict:
    import torch

    ckpt = load_checkpoint(ckpt_path)
    store = open_store(store_path)
    check_store_fits(ckpt, store)
    model = build_model(ckpt).to(device)
    spec = InputSpec(store, leads=ckpt["input"]["leads"], normalisation=ckpt["input"]["normalisation"], view=ckpt["input"]["view"])
    loader = ChunkLoader(store, batch_size, spec=spec, pin_memory=torch.device(device).type == "cuda")
    probs, rows = predict(model, loader, torch.device(device), ckpt["multi_label"])
    y = store.labels[rows]
    thresholds = ckpt["thresholds"]
    report = classification_report(y, probs, ckpt["classes"], ckpt["multi_label"], None if thresholds is None else thresholds["values"])
    report.update({
        "checkpoint": str(ckpt_path),
        "checkpoint_fingerprint": fingerprint(ckpt_path),
        "model": ckpt["model"]["name"],
        "store": str(store_path),
        "store_fingerprint": fingerprint(store_path),
        "task": ckpt["task"],
        "multi_label": ckpt["multi_label"],
        "classes": ckpt["classes"],
        "decision": "per-class thresholds" if ckpt["multi_label"] else "argmax",
        "threshold_source": None if thresholds is None else thresholds["source"],
        "checkpoint_provenance": ckpt["provenance"],
    })
    return {"report": report, "probs": probs, "rows": rows, "store": store}


def write_predictions(path: str | os.PathLike, result: dict, overwrite: bool) -> None:
    """Probabilities, labels and record ids as a small Zarr group, written atomically."""
    import zarr

    store, rows, report = result["store"], result["rows"], result["report"]
    with atomic_output(path, overwrite, directory=False) as tmp:
        g = zarr.open_group(tmp, mode="w", zarr_format=3)
        g.create_array("probabilities", data=result["probs"].astype(np.float32))
        g.create_array("labels", data=store.labels[rows])
        ids = g.create_array("record_id", shape=(len(rows),), dtype=str)  # variable-length strings, as in the ECG store
        ids[:] = store.record_id[rows]
        g.attrs.update({
            "format": PREDICTIONS_FORMAT, "format_version": 1, "classes": report["classes"],
            "multi_label": report["multi_label"], "threshold_source": report["threshold_source"],
            "provenance": [make_entry("eval", [report["checkpoint"], report["store"]])], "complete": True,
        })
