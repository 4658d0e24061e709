"""Model cost measurements: parameter counts, MACs (via thop) and latency.

Conventions
-----------
* **MACs** are thop's ``total_ops`` (``thop.profile``), i.e. multiply-accumulate
  operations for one forward pass over the *whole* input of ``input_shape``
  (batch included). **FLOPs are reported as 2 x MACs**, the usual convention.
* thop's op conventions are used unchanged. In particular: a convolution counts
  ``out_numel * in_channels/groups * kernel`` (bias not counted); a linear layer
  ``out_numel * in_features``; BatchNorm ``2 * in_numel`` (4x when affine, as if
  it were not fused into the preceding conv); adaptive average pooling
  ``(in_len/out_len + 1) * out_numel``; ReLU/ReLU6, max-pooling, dropout and
  flatten count zero. Operations that are not ``nn.Module`` leaves -- the
  residual ``+``, functional calls such as ``torch.flatten``/``F.relu``,
  tensor methods -- are not seen by thop and count zero, and so do leaf modules
  without a thop rule (e.g. ``nn.Flatten``, ``nn.GELU``).
* Parameter counts are exact counts of ``model.parameters()`` (not thop's,
  which only counts parameters of modules it has a rule for).
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = ["count_parameters", "count_macs", "measure_latency"]


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": int, "trainable": int}`` over ``model.parameters()`` (shared tensors counted once)."""
    total = 0
    trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"total": int(total), "trainable": int(trainable)}


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device, torch.get_default_dtype()
    return torch.device("cpu"), torch.get_default_dtype()


def _import_thop():
    # thop imports distutils.LooseVersion, which emits DeprecationWarnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import thop
    return thop


def _stage_names(model: nn.Module) -> list[str]:
    stages = getattr(model, "stages", None)
    if stages:
        return list(stages)
    return [name for name, _ in model.named_children()]


def _lookup_layer_info(layer_info: dict, dotted: str) -> tuple[float, float] | None:
    node: dict = layer_info
    entry = None
    for part in dotted.split("."):
        if part not in node:
            return None
        entry = node[part]
        node = entry[2]
    return (entry[0], entry[1]) if entry is not None else None


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Count MACs/FLOPs for one forward pass on an input of ``input_shape``.

    Runs ``thop.profile(..., ret_layer_info=True, verbose=False)`` on a deep copy
    of ``model`` (thop adds buffers and hooks), so the caller's model is never
    modified; thop's console output is suppressed. The input is a zero tensor on
    the model's device and dtype; MACs are for the whole batch in ``input_shape``.

    Returns::

        {"macs": int,              # thop total_ops
         "flops": int,             # convention: FLOPs = 2 * MACs
         "params": int,            # exact parameter count of the model
         "input_shape": [B, C, L],
         "stages": [{"name", "macs", "params"}, ...]}

    ``stages`` follows ``model.stages`` (fallback: the model's named children).
    When the stages do not account for every MAC or parameter (e.g. a child not
    listed in ``model.stages``), a final ``{"name": "other", ...}`` entry holds
    the remainder, so stage MACs and params always sum to the totals.
    """
    thop = _import_thop()
    input_shape = tuple(int(s) for s in input_shape)
    device, dtype = _device_and_dtype(model)
    work = copy.deepcopy(model)
    x = torch.zeros(input_shape, device=device, dtype=dtype)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total_ops, _thop_params, layer_info = thop.profile(
            work, inputs=(x,), verbose=False, ret_layer_info=True
        )
    del work

    total_macs = int(round(float(total_ops)))
    total_params = count_parameters(model)["total"]

    stages: list[dict[str, Any]] = []
    for name in _stage_names(model):
        found = _lookup_layer_info(layer_info, name)
        try:
            submodule = model.get_submodule(name)
        except AttributeError:
            submodule = None
        if found is None or submodule is None:
            raise ValueError(f"Stage {name!r} in model.stages is not a submodule of {type(model).__name__}.")
        stages.append(
            {
                "name": name,
                "macs": int(round(float(found[0]))),
                "params": int(sum(p.numel() for p in submodule.parameters())),
            }
        )
    other_macs = total_macs - sum(s["macs"] for s in stages)
    other_params = total_params - sum(s["params"] for s in stages)
    if other_macs != 0 or other_params != 0:
        stages.append({"name": "other", "macs": other_macs, "params": other_params})

    return {
        "macs": total_macs,
        "flops": 2 * total_macs,
        "params": total_params,
        "input_shape": list(input_shape),
        "stages": stages,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
) -> dict[str, Any]:
    """Wall-clock forward latency of ``model`` on a random input of ``input_shape``.

    The model runs in ``eval()`` mode under ``torch.inference_mode()``; on CUDA
    the device is synchronised around every timed call. If the model lives on
    another device, a copy is moved to ``device`` (the caller's model is left
    where it is); its train/eval mode is restored afterwards.

    Returns ``{"batch", "median_ms", "p90_ms", "samples_per_s", "mean_ms",
    "min_ms", "repeats", "device"}``; ``samples_per_s = batch / median``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("measure_latency: device 'cuda' requested but CUDA is not available.")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())

    model_device, dtype = _device_and_dtype(model)
    run_model = model if model_device == device else copy.deepcopy(model).to(device)
    was_training = run_model.training
    run_model.eval()
    input_shape = tuple(int(s) for s in input_shape)
    x = torch.randn(input_shape, device=device, dtype=dtype)

    times_ms: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                run_model(x)
            _sync(device)
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                run_model(x)
                _sync(device)
                times_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        run_model.train(was_training)

    median_ms = float(statistics.median(times_ms))
    batch = input_shape[0]
    return {
        "batch": batch,
        "median_ms": median_ms,
        "p90_ms": float(np.percentile(times_ms, 90)),
        "samples_per_s": float(batch / (median_ms / 1e3)) if median_ms > 0 else float("inf"),
        "mean_ms": float(statistics.fmean(times_ms)),
        "min_ms": float(min(times_ms)),
        "repeats": repeats,
        "device": str(device),
    }
