"""Model cost measurements: parameter counts, MACs and latency.

Two MAC counts
--------------
``count_macs`` reports two counts of multiply-accumulate operations for one
forward pass over the *whole* input of ``input_shape`` (batch included):

* ``macs`` -- **thop's** ``total_ops`` (``thop.profile``), the headline number
  (the research notebook's numbers are thop's). It sums per-``nn.Module`` rules,
  so it sees only modules; see "thop's conventions" below.
* ``macs_with_attention`` -- torch's own counter,
  ``torch.utils.flop_counter.FlopCounterMode``, which watches every aten
  operation the forward pass dispatches, whether it comes from a module, a
  functional call (``F.conv1d`` with a fixed filter buffer, ``F.linear``) or a
  tensor method/operator (``q @ k.transpose(-2, -1)``, ``attn @ v``,
  ``torch.einsum``), **divided by 2** (FlopCounterMode counts 2 FLOPs per
  multiply-accumulate, so the halves are exact MACs and the two columns are
  comparable). It counts **only matrix-multiply-like operations**: ``mm``,
  ``addmm``, ``bmm``, ``baddbmm``, convolutions
  (``out_numel * in_channels/groups * kernel``, bias not counted, as thop) and
  scaled-dot-product attention (``F.scaled_dot_product_attention``: ``q @ k^T``
  and ``attn @ v``, i.e. ``2 * B * heads * N_q * N_k * d`` MACs for
  ``d``-dimensional heads), plus ``mv`` and ``dot`` registered here. Everything else counts zero: BatchNorm,
  LayerNorm, GroupNorm, activations, softmax, pooling, elementwise ``+``/``*``,
  FFTs (``torch.stft``), the recurrent gates' elementwise part. So it can be
  **lower** than thop's count for BatchNorm-heavy CNNs (thop charges BatchNorm
  2-4 MACs per element) and **higher** wherever work happens outside modules
  thop has rules for (attention products, functional filters,
  ``nn.MultiheadAttention``'s functional input projection).

  To let FlopCounterMode see every matrix product, the count runs with three
  fused paths switched off (and restored afterwards): oneDNN (mkldnn; CPU
  ``nn.LSTM`` otherwise runs as one ``mkldnn_rnn_layer`` kernel it cannot see),
  cuDNN (the same for ``_cudnn_rnn`` on CUDA) and the native
  ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` fast path (one fused
  kernel in eval mode). The arithmetic is the same on the unfused paths. torch
  2.13 has no FlopCounterMode formula for the CPU attention kernel
  (``aten._scaled_dot_product_flash_attention_for_cpu``, pytorch/pytorch#195460),
  so CPU ``scaled_dot_product_attention`` would count zero; it is registered here
  with torch's own SDPA formula (and left to torch where a later version has it).

thop's conventions
------------------
* **FLOPs are reported as 2 x MACs**, the usual convention (``flops``,
  ``flops_with_attention``).
* thop's op conventions are used unchanged. In particular: a convolution counts
  ``out_numel * in_channels/groups * kernel`` (bias not counted); a linear layer
  ``out_numel * in_features``; BatchNorm ``2 * in_numel`` (4x when affine, as if
  it were not fused into the preceding conv); adaptive average pooling
  ``(in_len/out_len + 1) * out_numel``; ReLU/ReLU6, max-pooling, dropout and
  flatten count zero. Operations that are not ``nn.Module`` leaves -- the
  residual ``+``, functional calls such as ``torch.flatten``/``F.relu``,
  tensor methods, attention matrix products -- are not seen by thop and count
  zero, and so do leaf modules without a thop rule (e.g. ``nn.Flatten``,
  ``nn.GELU``, and subclasses such as ``nn.MultiheadAttention``'s
  ``out_proj``, whose type is not ``nn.Linear`` itself).
* A module shared by ``k`` parents (se_ecgnet's shared shortcut convolutions)
  is hooked by thop once per parent and its total is added into every parent,
  so thop counts each of its calls ``k**2`` times (se_ecgnet at 12 x 1000:
  thop's convolutions total 1172.6 M MACs, 753.3 M with each call counted once).
  ``macs_with_attention`` counts each call once.
* Parameter counts are exact counts of ``model.parameters()`` (not thop's,
  which only counts parameters of modules it has a rule for).

Both counts run on a deep copy of the model in eval mode under
``torch.no_grad()``, on the model's own device and dtype (CPU, CUDA or
``meta``), with a zero input; the caller's model is never modified.
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

__all__ = ["count_parameters", "count_macs", "count_full_macs", "measure_latency"]


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


def _shape(x) -> tuple[int, ...]:
    # this torch passes shapes to custom formulas; older ones (before the shape wrapper applied to them) tensors
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x)


def _sdpa_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of scaled-dot-product attention: ``q @ k^T`` then ``attn @ v`` (2 FLOPs per MAC), as torch's formula."""
    b, heads, n_q, d_qk = _shape(query)
    n_k, d_v = _shape(key)[-2], _shape(value)[-1]
    return 2 * b * heads * n_q * n_k * d_qk + 2 * b * heads * n_q * n_k * d_v


def _mv_flop(matrix, vector, *args, out_shape=None, **kwargs) -> int:
    rows, cols = _shape(matrix)
    return 2 * rows * cols


def _dot_flop(a, b, *args, out_shape=None, **kwargs) -> int:
    return 2 * _shape(a)[0]


def _extra_flop_formulas() -> dict:
    """Formulas FlopCounterMode lacks in this torch: the CPU (and out-of-tree) SDPA kernels, ``mv`` and ``dot``."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_flop,
        "mv": _mv_flop,
        "dot": _dot_flop,
    }
    extra = {}
    for name, formula in wanted.items():
        try:
            op = getattr(aten, name)
        except (AttributeError, RuntimeError):
            continue
        if op not in flop_registry:  # a later torch's own formula wins
            extra[op] = formula
    return extra


@contextlib.contextmanager
def _unfused_kernels():
    """Switch off the fused paths whose one kernel hides matrix products from FlopCounterMode; restore them after.

    oneDNN runs CPU ``nn.LSTM`` as ``mkldnn_rnn_layer``, cuDNN runs it as
    ``_cudnn_rnn``, and the native fast path runs an eval-mode
    ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` as one kernel; with
    them off the same arithmetic runs as ``addmm``/``bmm``/SDPA, which are counted.
    """
    mha = getattr(torch.backends, "mha", None)  # absent from older torch, where the fast path cannot be switched off
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    mkldnn = torch.backends.mkldnn.enabled
    cudnn = torch.backends.cudnn.enabled
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        torch.backends.mkldnn.enabled = False
        torch.backends.cudnn.enabled = False
        yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
        torch.backends.mkldnn.enabled = mkldnn
        torch.backends.cudnn.enabled = cudnn


def _tally_stages(stages: dict[str, nn.Module], counter, tally: dict[str, int]) -> list:
    """Hooks adding to ``tally[name]`` the FLOPs counted while stage ``name``, or any module inside it, runs.

    Every module of a stage's subtree is hooked, not the stage alone: a
    container such as an ``nn.ModuleList`` of encoders is never called itself,
    only its members are. The first stage entered owns everything until it is
    left: calls nested in it (its blocks, a re-entrant call, a module it shares
    with another stage) count once and for it alone, so stages never overlap and
    sum to at most the total. Every separate call counts, so a module run once
    per scale or window is charged each time.
    """
    active = {"name": None, "depth": 0, "start": 0}

    def hooks(name):
        def pre(_module, _args):
            if active["name"] is None:
                active.update(name=name, depth=0, start=counter.get_total_flops())
            if active["name"] == name:
                active["depth"] += 1

        def post(_module, _args, _output):
            if active["name"] == name:
                active["depth"] -= 1
                if active["depth"] == 0:
                    tally[name] += counter.get_total_flops() - active["start"]
                    active["name"] = None

        return pre, post

    handles = []
    for name, stage in stages.items():
        pre, post = hooks(name)
        for module in stage.modules():
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post, always_call=True))
    return handles


def count_full_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """MACs of every matrix-multiply-like operation in one forward pass, attention products included.

    Runs ``torch.utils.flop_counter.FlopCounterMode`` over a forward pass of a
    deep copy of ``model`` in eval mode under ``torch.no_grad()``, on a zero
    input of ``input_shape`` on the model's device and dtype, with the fused
    kernels that hide matrix products switched off (module docstring). MACs are
    FlopCounterMode's FLOPs / 2; what they include is in the module docstring.

    Per stage, forward hooks on the stage module and every module inside it add
    up the FLOPs counted while any of them runs (every call, so a module called
    once per scale or window counts each time; a container that is never called
    itself, such as an ``nn.ModuleList`` of encoders, is charged for its
    members; a module shared by two stages is charged to the one it runs in).
    Stage names may be dotted (``"encoders.0"``). Whatever runs outside
    every stage -- functional code in the model's own ``forward``, a child not
    listed in ``model.stages`` -- is the ``"other"`` remainder, present when not
    zero, so the stages sum to the total.

    Returns::

        {"macs_with_attention": int, "flops_with_attention": int,
         "stages": [{"name", "macs_with_attention"}, ...]}
    """
    from torch.utils.flop_counter import FlopCounterMode

    input_shape = tuple(int(s) for s in input_shape)
    device, dtype = _device_and_dtype(model)
    work = copy.deepcopy(model).eval()
    names = _stage_names(model)
    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    tally = dict.fromkeys(names, 0)
    submodules = {}
    for name in names:
        try:
            submodules[name] = work.get_submodule(name)
        except AttributeError:
            raise ValueError(f"Stage {name!r} in model.stages is not a submodule of {type(model).__name__}.") from None
    handles = _tally_stages(submodules, counter, tally)
    try:
        x = torch.zeros(input_shape, device=device, dtype=dtype)
        with _unfused_kernels(), torch.no_grad(), counter:
            work(x)
    finally:
        for handle in handles:
            handle.remove()
    del work

    total_flops = int(counter.get_total_flops())
    stages = [{"name": name, "macs_with_attention": tally[name] // 2} for name in names]
    other = total_flops // 2 - sum(s["macs_with_attention"] for s in stages)
    if other != 0:
        stages.append({"name": "other", "macs_with_attention": other})
    return {"macs_with_attention": total_flops // 2, "flops_with_attention": total_flops, "stages": stages}


def count_macs(model: nn.Module, input_shape: tuple[int, int, int], with_attention: bool = True) -> dict[str, Any]:
    """Count MACs/FLOPs for one forward pass on an input of ``input_shape``.

    Runs ``thop.profile(..., ret_layer_info=True, verbose=False)`` on a deep copy
    of ``model`` (thop adds buffers and hooks), so the caller's model is never
    modified; thop's console output is suppressed. The input is a zero tensor on
    the model's device and dtype; MACs are for the whole batch in ``input_shape``.
    With ``with_attention`` (the default) the second count, ``count_full_macs``
    (FlopCounterMode: every matrix product, attention included), is added beside
    thop's, in total and per stage.

    Returns::

        {"macs": int,                  # thop total_ops
         "flops": int,                 # convention: FLOPs = 2 * MACs
         "macs_with_attention": int,   # count_full_macs (only with with_attention)
         "flops_with_attention": int,  # 2 * macs_with_attention (idem)
         "params": int,                # exact parameter count of the model
         "input_shape": [B, C, L],
         "stages": [{"name", "macs", "params", "macs_with_attention"}, ...]}

    ``stages`` follows ``model.stages`` (fallback: the model's named children).
    When the stages do not account for every MAC or parameter of either count
    (e.g. a child not listed in ``model.stages``, or matrix products in the
    model's own ``forward``), a final ``{"name": "other", ...}`` entry holds the
    remainder, so stage MACs (both counts) and params always sum to the totals.
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

    result = {
        "macs": total_macs,
        "flops": 2 * total_macs,
        "params": total_params,
        "input_shape": list(input_shape),
        "stages": stages,
    }
    if with_attention:
        _merge_full_count(result, count_full_macs(model, input_shape))
    return result


def _merge_full_count(result: dict[str, Any], full: dict[str, Any]) -> None:
    """Put ``count_full_macs``'s totals and stage counts into ``count_macs``'s result (an "other" row when either needs one)."""
    result["macs_with_attention"] = full["macs_with_attention"]
    result["flops_with_attention"] = full["flops_with_attention"]
    by_name = {s["name"]: s["macs_with_attention"] for s in full["stages"]}
    stages = result["stages"]
    if "other" in by_name and not any(s["name"] == "other" for s in stages):
        stages.append({"name": "other", "macs": 0, "params": 0})
    for s in stages:
        s["macs_with_attention"] = by_name.get(s["name"], 0)


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
