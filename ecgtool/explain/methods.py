"""Attribution methods: which parts of the ECG a model's class score rests on.

Every method returns an :class:`Explanation` whose ``maps`` are
``(records, leads, samples)`` float32 on the model's input grid, for one target
class per record. Gradient methods explain the class *logit* (before the
sigmoid or softmax), as their papers do.

* ``gradcam`` — Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations
  from Deep Networks via Gradient-based Localization", ICCV): the ReLU of a
  layer's activations weighted by the spatial mean of the score's gradient.
  1D feature maps ``(B, C, T')`` become one time profile, upsampled to the
  record and broadcast over leads; 2D maps that keep the leads axis
  (``im_ecg``, ``se_ecgnet``: ``(B, C, leads, T')``) give one profile per lead;
  models that see the record through windows or beats put each value on its span
  (``timeaxis.spread``).
* ``ig`` — integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution
  for Deep Networks", ICML) from the all-zero signal (the mean of a normalised
  lead), via captum's ``IntegratedGradients``. Completeness: the attributions sum
  to ``f(x) - f(baseline)`` up to the integration error, reported per record.
* ``saliency`` — the absolute input gradient (Simonyan et al. 2014), captum's
  ``Saliency``.
* ``attention`` — see :mod:`ecgtool.explain.attention`.

Channels a data-side view adds (the ``rpeaks`` marks) are model input but not
ECG: gradients are taken through them where they are differentiable, the IG
baseline keeps them as they are, and the maps keep only the signal leads.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.explain.explanation import Explanation
from ecgtool.explain.options import METHODS
from ecgtool.explain.timeaxis import interpolate, spread
from ecgtool.models.explainable import Instances, Spans


METHOD_NAMES = {"gradcam": "Grad-CAM", "attention": "attention", "ig": "integrated gradients", "saliency": "saliency"}
CITATIONS = {
    "gradcam": "Selvaraju et al. 2017, Grad-CAM, ICCV",
    "ig": "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, ICML",
    "saliency": "Simonyan et al. 2014, Deep Inside Convolutional Networks, ICLR workshop",
    "attention": "attention weights; rollout after Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers, ACL",
}
MEANING = {
    "gradcam": "ReLU of gradient-weighted layer activations, upsampled to the input (>= 0, in the layer's units)",
    "ig": "integrated gradients of the class logit, signed, per input sample (sum = logit(x) - logit(baseline))",
    "saliency": "absolute gradient of the class logit with respect to each input sample",
    "attention": "attention mass per sample relative to uniform attention (1 = uniform), class-independent",
}


@contextmanager
def gradients_enabled(model: nn.Module):
    """Gradients on, and cuDNN off for recurrent models: cuDNN's RNN backward refuses eval mode."""
    has_rnn = any(isinstance(m, nn.RNNBase) for m in model.modules())
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=not has_rnn):
        yield


# --------------------------------------------------------------------------- layers


def resolve_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The named submodule (default: the model's ``default_cam_layer``), or a one-line error with suggestions."""
    name = name or model.default_cam_layer
    modules = dict(model.named_modules())
    if name in modules and name:
        return name, modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"unknown layer {name!r} in {getattr(model, 'model_name', type(model).__name__)}; {hint}"
        f"layers are dotted module names under {', '.join(model.stages)} (default {model.default_cam_layer})", "layer"
    )


def _cam(act: torch.Tensor, grad: torch.Tensor, pool_dims: tuple[int, ...]) -> torch.Tensor:
    """Grad-CAM: channel weights = mean gradient over ``pool_dims``; ReLU of the weighted channel sum (dim 1)."""
    weights = grad.mean(dim=pool_dims, keepdim=True)
    return torch.relu((weights * act).sum(dim=1))


def _cam_on_time(model: nn.Module, layer_name: str, layer: nn.Module, act: torch.Tensor, grad: torch.Tensor,
                 x: torch.Tensor, n_leads: int) -> np.ndarray:
    """Grad-CAM of one layer as ``(B, leads or 1, samples)``, by where the model says the layer's positions lie."""
    b, samples = x.shape[0], x.shape[-1]
    shape = tuple(act.shape)
    where = model.positions(layer_name, layer, x, shape)
    if isinstance(where, Instances):
        # K instances per record: weights pooled over every instance of the record, each instance's
        # map stretched to its window and put where the window starts.
        k = shape[0] // b
        a, g = act.reshape(b, k, *shape[1:]), grad.reshape(b, k, *shape[1:])
        cam = _cam(a.transpose(1, 2), g.transpose(1, 2), (2, 3))  # (B, K, W')
        profile = interpolate(cam.detach().cpu().numpy(), where.width)
        return spread(profile, where.starts, where.width, samples, where.valid)[:, None]
    if shape[0] != b or act.dim() not in (3, 4):
        raise EcgtoolError(
            f"layer {layer_name!r} gives activations of shape {list(shape)} for {b} record(s); Grad-CAM needs "
            f"(batch, channels, time) or (batch, channels, leads, time) — choose a layer such as {model.default_cam_layer!r}"
        )
    if isinstance(where, Spans):
        # one value per window, segment or token: put on its span of the record
        if where.channels_last:  # (B, n, d) -> (B, d, n)
            act, grad = act.transpose(1, 2), grad.transpose(1, 2)
        return spread(_cam(act, grad, (2,)).detach().cpu().numpy(), where.starts, where.width, samples)[:, None]
    if act.dim() == 4:
        # Leads on H: the ECG-as-image models (declared), or a map at full input resolution (MINA's filter bank).
        if shape[2] == n_leads and (model.cam_leads_axis or shape[3] == samples):
            return interpolate(_cam(act, grad, (2, 3)).detach().cpu().numpy(), samples)
        # e.g. a spectrogram stream (B, C, freq, frames): one time profile, weights over freq and time
        return interpolate(_cam(act, grad, (2, 3)).mean(dim=1).detach().cpu().numpy(), samples)[:, None]
    return interpolate(_cam(act, grad, (2,)).detach().cpu().numpy(), samples)[:, None]


def gradcam(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, n_leads: int, layer: str | None = None) -> Explanation:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default ``model.default_cam_layer``) → ``(B, n_leads, samples)``."""
    name, module = resolve_layer(model, layer)
    outputs: list = []
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        with gradients_enabled(model):
            x = x.detach().requires_grad_(True)  # so layers before any parameter (a filter bank) get gradients
            logits = model(x)
            if len(outputs) != 1 or not torch.is_tensor(outputs[0]):
                what = f"runs {len(outputs)} times per forward pass" if len(outputs) != 1 else "does not return one tensor"
                raise EcgtoolError(f"layer {name!r} {what}; Grad-CAM needs a layer that maps the whole record once, "
                                   f"such as {model.default_cam_layer!r}")
            act = outputs[0]
            score = logits.gather(1, targets[:, None]).sum()
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
    maps = _cam_on_time(model, name, module, act.detach(), grad.detach(), x.detach(), n_leads)
    maps = np.broadcast_to(maps, (x.shape[0], n_leads, x.shape[-1])) if maps.shape[1] == 1 else maps
    return Explanation(np.ascontiguousarray(maps, dtype=np.float32), info={"layer": name, "activation_shape": list(act.shape[1:])})


def integrated_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, n_leads: int, steps: int = 64,
                         internal_batch_size: int | None = None) -> Explanation:
    """Integrated gradients (Sundararajan et al. 2017) from the zero signal, Gauss-Legendre with ``steps`` points."""
    from captum.attr import IntegratedGradients

    baseline = x.detach().clone()
    baseline[:, :n_leads] = 0.0  # view channels (R-peak marks) stay as they are: only the ECG is attributed
    with gradients_enabled(model):
        attr, delta = IntegratedGradients(model).attribute(
            x.detach(), baselines=baseline, target=targets, n_steps=steps, method="gausslegendre",
            internal_batch_size=internal_batch_size, return_convergence_delta=True,
        )
    maps = attr[:, :n_leads].detach().cpu().numpy().astype(np.float32)
    return Explanation(maps, arrays={"ig_delta": delta.detach().cpu().numpy().astype(np.float32)},
                       info={"steps": steps, "baseline": "zero signal (view channels kept)", "integration": "gausslegendre"})


def saliency(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, n_leads: int) -> Explanation:
    """Absolute gradient of the class logit with respect to every input sample (captum ``Saliency``)."""
    from captum.attr import Saliency

    with gradients_enabled(model):
        attr = Saliency(model).attribute(x.detach().requires_grad_(True), target=targets, abs=True)
    return Explanation(attr[:, :n_leads].detach().cpu().numpy().astype(np.float32))


def explain(method: str, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, n_leads: int, *,
            layer: str | None = None, steps: int = 64, internal_batch_size: int | None = None) -> Explanation:
    """Dispatch to one method; ``model`` must be in eval mode, ``x`` the model input on the model's device."""
    if method == "gradcam":
        return gradcam(model, x, targets, n_leads, layer)
    if method == "ig":
        return integrated_gradients(model, x, targets, n_leads, steps, internal_batch_size)
    if method == "saliency":
        return saliency(model, x, targets, n_leads)
    if method == "attention":
        from ecgtool.explain.attention import attention

        return attention(model, x, n_leads)
    raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}", "method")
