"""Model registry (the timm ``register_model`` / ``create_model`` pattern).

A model *variant* is a plain function decorated with :func:`register_model`::

    @register_model(default_cfg=dict(family="resnet1d", paper="He et al. 2016 ..."))
    def resnet18(num_classes, num_leads=12, num_samples=1000, **kwargs) -> nn.Module:
        \"\"\"1D ResNet-18 ...\"\"\"
        ...

Variants are looked up by name with :func:`create_model`. Every model built here
takes input ``(batch, num_leads, num_samples)`` and returns logits
``(batch, num_classes)``.

Constructor keyword arguments must be JSON-serialisable: they are stored in
checkpoints and passed back to :func:`create_model` to rebuild the model.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import Any, Callable

import torch.nn as nn

__all__ = [
    "UnknownModelError",
    "register_model",
    "register_variant",
    "create_model",
    "list_models",
    "model_info",
]

# name -> (variant function, default_cfg)
_MODEL_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {}


class UnknownModelError(KeyError):
    """Raised by :func:`create_model` / :func:`model_info` for an unregistered name."""

    def __init__(self, name: str, suggestions: list[str], available: list[str]):
        self.name = name
        self.suggestions = suggestions
        self.available = available
        msg = f"Unknown model {name!r}."
        if suggestions:
            msg += " Did you mean: " + ", ".join(suggestions) + "?"
        msg += " Available models: " + (", ".join(available) if available else "(none)") + "."
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message (extra quotes)
        return self.message


def register_model(fn: Callable[..., nn.Module] | None = None, *, default_cfg: dict | None = None):
    """Register a model variant function under its ``__name__``.

    Usable as ``@register_model`` or ``@register_model(default_cfg=dict(...))``.
    Recognised ``default_cfg`` keys: ``family``, ``paper``, ``source``,
    ``input_view`` (default ``{"name": "raw"}``) and ``default_kwargs``
    (merged over the defaults found in the function's signature). Any other key
    is kept and reported by :func:`model_info`.
    """

    def decorator(func: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = func.__name__
        if name in _MODEL_REGISTRY and _MODEL_REGISTRY[name][0] is not func:
            existing = _MODEL_REGISTRY[name][0]
            raise ValueError(
                f"Model {name!r} is already registered (by {existing.__module__}.{existing.__qualname__})."
            )
        _MODEL_REGISTRY[name] = (func, dict(default_cfg or {}))
        return func

    if fn is not None:
        return decorator(fn)
    return decorator


def register_variant(name: str, model_class: Callable[..., nn.Module], doc: str, config: dict,
                     **default_cfg: Any) -> Callable[..., nn.Module]:
    """Register ``name`` as ``model_class(num_classes, num_leads, num_samples, **{**config, **kwargs})``.

    For a family whose variants differ only in constructor arguments: ``config`` is
    reported as the variant's ``default_kwargs``, ``doc`` is its docstring (first line:
    the description), ``default_cfg`` the rest of :func:`register_model`'s metadata.
    """

    def variant(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs: Any) -> nn.Module:
        return model_class(num_classes, num_leads, num_samples, **{**config, **kwargs})

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = doc
    variant.__module__ = model_class.__module__  # the family's file, as for a variant written there
    return register_model(variant, default_cfg={**default_cfg, "default_kwargs": dict(config)})


def _lookup(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    try:
        return _MODEL_REGISTRY[name]
    except KeyError:
        available = sorted(_MODEL_REGISTRY)
        suggestions = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        if not suggestions:
            # Case-insensitive / substring fallback, e.g. "ResNet18" or "mobilenet".
            low = name.lower()
            suggestions = [m for m in available if low in m.lower() or m.lower() in low][:3]
        raise UnknownModelError(name, suggestions, available) from None


def create_model(
    name: str,
    num_classes: int,
    num_leads: int = 12,
    num_samples: int = 1000,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    Extra ``kwargs`` are forwarded to the variant (e.g. ``zero_init_residual``,
    ``width_mult``, ``dropout``). The returned module carries ``model_name`` and
    ``model_kwargs`` (the JSON-serialisable arguments needed to rebuild it).
    """
    fn, _cfg = _lookup(name)
    model = fn(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(
        num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs
    )
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (fnmatch), sorted."""
    return sorted(n for n in _MODEL_REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _signature_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            continue
        out[p.name] = p.default
    return out


def model_info(name: str) -> dict[str, Any]:
    """Metadata of a registered model.

    Returns ``{"name", "family", "paper", "source", "description",
    "input_view", "default_kwargs", **other default_cfg keys}``;
    ``description`` is the first line of the variant's docstring.
    """
    fn, cfg = _lookup(name)
    doc = inspect.getdoc(fn) or ""
    description = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    family = cfg.get("family") or fn.__module__.rsplit(".", 1)[-1]
    default_kwargs = _signature_defaults(fn)
    default_kwargs.update(cfg.get("default_kwargs", {}))
    info: dict[str, Any] = {
        "name": name,
        "family": family,
        "paper": cfg.get("paper", ""),
        "source": cfg.get("source", ""),
        "description": description,
        "input_view": dict(cfg.get("input_view", {"name": "raw"})),
        "default_kwargs": default_kwargs,
    }
    for k, v in cfg.items():
        info.setdefault(k, v)
    return info
