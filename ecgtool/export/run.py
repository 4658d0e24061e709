"""Export a checkpoint's model for deployment, checked against the PyTorch model before it is published."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ecgtool.errors import ConfigError
from ecgtool.export.choices import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL, MAX_BATCH
from ecgtool.export.formats import (ExportError, format_for, onnx_opset, read_onnx_metadata,
                                    read_torchscript_metadata, require_onnx, run_onnx, run_torchscript, supported_opsets,
                                    write_onnx, write_torchscript)
from ecgtool.export.parity import compare, random_batch, store_batch


def export_checkpoint(ckpt_path: str | os.PathLike, output: str | os.PathLike, *, fmt: str | None = None,
                      opset: int = DEFAULT_OPSET, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, batch: int = 2,
                      seed: int = 0, check_store: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Write the model of the checkpoint ``ckpt_path`` to ``output`` as ONNX or TorchScript (``fmt``, else the
    suffix), in eval mode with a dynamic batch axis, traced/exported on a seeded random ``batch``; publish it only
    when it matches the PyTorch model on other inputs (``parity.py``). Returns what was written and checked."""
    import torch

    from ecgtool.checkpoint import Checkpoint
    from ecgtool.export.metadata import export_metadata, read_metadata
    from ecgtool.outputs import atomic_output, check_new_output
    from ecgtool.provenance import fingerprint

    fmt = format_for(output, fmt)
    if fmt == "onnx":
        require_onnx()
        opsets = supported_opsets()
        if opset not in opsets:
            import onnx

            raise ConfigError(f"opset {opset} is not one the installed exporter writes: {opsets[0]} to {opsets[-1]} "
                              f"(onnx {onnx.__version__})", "opset")
    elif opset != DEFAULT_OPSET:  # an opset is ONNX's: a TorchScript file would silently ignore it
        raise ConfigError(f"opset {opset} applies to ONNX; a TorchScript export has no opset", "opset")
    if batch < 2:  # torch.export fixes a dimension of size 1 to 1: a batch axis needs an example of 2 or more
        raise ConfigError(f"the example batch must hold 2 or more records, not {batch}", "batch")
    if batch > MAX_BATCH:  # why this bound: choices.py
        raise ConfigError(f"the example batch holds at most {MAX_BATCH} records (the export takes any batch size), "
                          f"not {batch}", "batch")
    inputs = [ckpt_path, check_store]
    check_new_output(output, overwrite, inputs)
    ckpt = Checkpoint.load(ckpt_path)
    if ckpt.is_encoder:
        raise ExportError(f"{ckpt.name} is an encoder from pretraining, without a classifier to deploy; train one with "
                          f"`ecgtool train MODEL STORE --init {ckpt.name}` and export that")
    model = ckpt.build_model().eval()
    rng = np.random.default_rng(seed)
    example = random_batch(ckpt.input, batch, rng)
    checks = {f"random normal, batch of {batch}": random_batch(ckpt.input, batch, rng)}
    checks["random normal, its first record alone"] = checks[f"random normal, batch of {batch}"][:1]
    if check_store is not None:
        checks[f"{check_store}, first rows"] = store_batch(ckpt.input, check_store, batch)
    metadata = export_metadata(ckpt, fingerprint(ckpt_path))

    with atomic_output(output, overwrite, inputs=inputs) as tmp:
        try:
            if fmt == "onnx":
                written_opset = write_onnx(model, torch.from_numpy(example), tmp, metadata, opset)
            else:
                write_torchscript(model, torch.from_numpy(example), tmp, metadata)
        except OSError:
            raise  # a full disk or a quota: atomic_output names the output
        except Exception as e:
            raise ExportError(f"{ckpt.model.name} cannot be exported to {'ONNX' if fmt == 'onnx' else 'TorchScript'}: "
                              f"{_reason(e)} (rerun with --debug for the traceback)") from e
        if fmt == "onnx" and written_opset != opset:  # the exporter keeps its own opset when a conversion fails
            raise ExportError(f"{output}: the exporter could not convert {ckpt.model.name} to opset {opset} (it wrote "
                              f"opset {written_opset}); nothing was written")
        if fmt == "onnx":
            _sync(tmp)  # onnx wrote the file; write_torchscript's output_file has synced its own
        written = read_onnx_metadata(tmp) if fmt == "onnx" else read_torchscript_metadata(tmp, metadata)
        if read_metadata(written) != read_metadata(metadata):
            raise ExportError(f"{output}: the metadata read back from the exported file differs from what was written")
        run = run_onnx if fmt == "onnx" else run_torchscript
        with torch.no_grad():
            references = [model(torch.from_numpy(x)).numpy() for x in checks.values()]
        try:
            outputs = run(tmp, list(checks.values()))
        except Exception as e:  # e.g. a batch size fixed in the graph: onnxruntime refuses the other one
            raise ExportError(f"{output}: the exported model fails on the parity inputs ({', '.join(checks)}): {_reason(e)}; "
                              "nothing was written") from e
        results = [compare(name, reference, got, atol, rtol) for name, reference, got in zip(checks, references, outputs)]
        failed = [c for c in results if not c.passed]
        if failed:
            worst = max(failed, key=lambda c: c.max_abs_diff)
            raise ExportError(f"{output}: the exported model's logits differ from the PyTorch model's by up to "
                              f"{worst.max_abs_diff:.3g} on {worst.input} (tolerance {atol:g} + {rtol:g}·|logit|); "
                              "nothing was written")
        size = tmp.stat().st_size
        opset_written = onnx_opset(tmp) if fmt == "onnx" else None

    spec = ckpt.input
    return {
        "path": str(output), "format": fmt, "opset": opset_written, "model": ckpt.model.name, "checkpoint": str(ckpt_path),
        "input_shape": ["batch", spec.channels, spec.samples], "example_batch": batch,
        "output": "logits", "classes": list(ckpt.classes),
        "max_abs_diff": max(c.max_abs_diff for c in results), "atol": atol, "rtol": rtol,
        "checks": [c.to_dict() for c in results], "size_bytes": size, "warnings": ckpt.unfinished(),
    }


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(e: BaseException) -> str:
    """The root cause's first line: torch.onnx wraps the failure in paragraphs of advice."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _sync(path: Path) -> None:
    """On disk before it is renamed into place, as every ecgtool output."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
