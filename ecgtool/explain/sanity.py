"""Model-parameter randomisation test for saliency maps (Adebayo et al. 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. "Sanity Checks for Saliency
Maps", NeurIPS 2018: a map that explains a model must change when the model's
weights are destroyed. Re-initialise the layers — cascading from the top (the
classifier head first, then stage after stage down to the input) or all at
once — recompute the maps for the same records and class, and compare them with
the trained model's by the Spearman rank correlation of their absolute values.
A method whose maps stay highly correlated is showing the input, not the model.

Layers are re-initialised with their own ``reset_parameters`` (the
initialisation the model was built with; BatchNorm also resets its running
statistics); a module holding parameters directly without one (MINA's
attention vectors) gets normal noise of the same standard deviation.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn as nn


def _reinitialise(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
        elif hasattr(m, "_reset_parameters"):  # nn.MultiheadAttention
            m._reset_parameters()
        else:
            for p in m.parameters(recurse=False):
                with torch.no_grad():
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 1.0)


def randomised(model: nn.Module, stages: list[str] | None = None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the named top-level ``stages`` (default: all) re-initialised, reproducibly."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        for name in stages if stages is not None else clone.stages:
            _reinitialise(clone.get_submodule(name))
    return clone.eval()


def cascade(model: nn.Module) -> list[str]:
    """The model's stages that hold parameters, from the top (head) down to the input."""
    return [s for s in reversed(model.stages) if any(True for _ in model.get_submodule(s).parameters())]


def rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> np.ndarray:
    """Spearman's rho per record between maps ``(B, ...)``; NaN where a map is constant (no ranking)."""
    from scipy.stats import spearmanr

    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(np.asarray(a, np.float64), np.asarray(b, np.float64))):
        x, y = (np.abs(x), np.abs(y)) if absolute else (x, y)
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[i] = spearmanr(x.ravel(), y.ravel()).statistic
    return out


def sanity_check(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                 explain: Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray],
                 mode: str = "cascade", seed: int = 0) -> list[dict]:
    """Correlations between the trained model's maps and those of randomised copies.

    ``explain(model, x, targets) -> maps`` is any attribution method. ``mode``
    ``cascade``: one row per step, each re-initialising one more stage from the top;
    ``full``: one row, every stage at once. Each row: ``randomised`` (the stages),
    ``spearman_abs`` and ``spearman`` (mean over records; NaN when undefined).
    """
    if mode not in ("cascade", "full"):
        raise ValueError(f"mode must be 'cascade' or 'full', not {mode!r}")
    reference = explain(model, x, targets)
    order = cascade(model)
    steps = [order[: i + 1] for i in range(len(order))] if mode == "cascade" else [order]
    rows = []
    for stages in steps:
        maps = explain(randomised(model, stages, seed), x, targets)
        rows.append({
            "randomised": list(stages),
            "spearman_abs": _mean(rank_correlation(reference, maps, absolute=True)),
            "spearman": _mean(rank_correlation(reference, maps, absolute=False)),
        })
    return rows


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")
