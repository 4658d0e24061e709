"""The two deployment formats: write a model with its metadata, and run the written file.

* ONNX, through PyTorch's ``torch.export``-based exporter (``torch.onnx.export(...,
  dynamo=True)``, the default and recommended one since torch 2.9; it needs
  onnxscript). It exports every registered model with a dynamic batch axis; the
  older TorchScript-based exporter (``dynamo=False``, deprecated) fails on a third
  of them (``torch.stft``, ``col2im``, ``fft_rfft``, adaptive pooling of symbolic
  sizes, windowed attention's reshapes at another batch size). The weights are
  stored inside the one ``.onnx`` file (no external data file), so the output is
  one file, published atomically. Run with onnxruntime.
* TorchScript, through ``torch.jit.trace`` (``torch.jit.script`` compiles few of
  the models: their Python is not TorchScript's subset). A trace records the
  operations of one example run: shape arithmetic is kept symbolic where torch
  can, and what is not (a Python ``int`` of a shape) is fixed to the example's
  value, which the parity check at a second batch size catches. Run with
  ``torch.jit.load`` (Python or LibTorch); needs torch only. torch 2.13 marks
  ``torch.jit`` deprecated in favour of ``torch.export`` but still ships it, and
  it is what LibTorch deployments load.

onnx, onnxruntime and onnxscript are the optional extra ``export``
(``pip install 'ecgtool[export]'``); :func:`require_onnx` names it when they are
missing.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.export.choices import DEFAULT_OPSET, FORMATS, SUFFIXES
from ecgtool.export.metadata import INPUT_NAME, OUTPUT_NAME

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


class ExportError(EcgtoolError):
    """A model that cannot be exported, or whose export does not compute what the model does."""


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format asked for (``fmt``), else the one the output's suffix names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}", "fmt")
        return fmt
    found = SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise ConfigError(f"{path}: cannot tell the format from the suffix; name it .onnx (ONNX) or .pt (TorchScript), "
                          "or give --format", "output")
    return found


def require_onnx() -> None:
    """Fail in one line, before any work, when the ``export`` extra is not installed."""
    import importlib

    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ExportError(f"ONNX export needs {', '.join(ONNX_PACKAGES)} ({name} is missing): "
                              "pip install 'ecgtool[export]' (TorchScript export, -o MODEL.pt, needs nothing more)") from None


@contextmanager
def _quiet():
    """The exporters' chatter (tracer and deprecation warnings, torch.onnx's notes on optional torchvision ops)
    says nothing the parity check does not decide: keep stderr for ecgtool's own lines."""
    # onnxscript's version converter logs its fallbacks (with a traceback when one fails): the opset read back
    # from the written file, checked in run.py, says what came of it
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def supported_opsets() -> range:
    """The ai.onnx opsets :func:`write_onnx` writes with the installed packages: from ``DEFAULT_OPSET``, the
    exporter's own (lower ones are down-converted, which fails for many models), up to the highest the installed
    onnx package defines. The exporter converts its graph to the opset asked for (onnxscript's converter, then
    onnx's); above onnx's highest that conversion fails, and the exporter keeps its own opset after logging a
    traceback, so the bound is asked of onnx rather than written down here."""
    import onnx.defs

    return range(DEFAULT_OPSET, onnx.defs.onnx_opset_version() + 1)


def write_onnx(model, example, path: Path, metadata: dict[str, str], opset: int = DEFAULT_OPSET) -> int:
    """Export ``model`` (eval mode) on ``example`` ``(B, C, S)`` with a dynamic batch axis into the one file ``path``,
    with ``metadata`` as ``metadata_props``; returns the file's ai.onnx opset."""
    import torch

    batch = torch.export.Dim("batch")
    with _quiet():
        program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    opset_version=opset, dynamo=True, dynamic_shapes=({0: batch},), external_data=False,
                                    verbose=False, optimize=True)
    program.model.metadata_props.update(metadata)
    program.save(path, external_data=False)
    return onnx_opset(path)


def onnx_opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def read_onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def run_onnx(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The file's logits for each input batch, in one onnxruntime session on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32, copy=False)})[0] for x in inputs]


def write_torchscript(model, example, path: Path, metadata: dict[str, str]) -> None:
    """Trace ``model`` (eval mode) on ``example`` and save it to ``path`` with ``metadata`` as ``_extra_files``."""
    import io

    import torch

    from ecgtool.outputs import output_file

    with _quiet(), torch.no_grad():  # _quiet: torch 2.13 marks torch.jit deprecated (below)
        traced = torch.jit.trace(model, example, check_trace=False)  # the parity check, on other inputs, decides
        # Into memory first, then to the file: torch.jit.save's C++ writer, given a file that a full disk fails,
        # aborts the whole process (SIGABRT from a destructor that writes again) and leaves its partial file.
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=metadata)
    with output_file(path) as f:
        f.write(buffer.getbuffer())


def read_torchscript_metadata(path: Path, keys) -> dict[str, str]:
    import torch

    files = {k: "" for k in keys}
    with _quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in files.items()}


def run_torchscript(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The file's logits for each input batch, loaded once."""
    import torch

    with _quiet():  # torch.jit.load's deprecation warning
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return [module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy() for x in inputs]


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}
