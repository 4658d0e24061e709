"""What an explanation run may be asked, validated where the values live.

Import-light on purpose (no numpy or torch): the CLI's option definitions take
their choices from here. Each check raises a ``ConfigError`` naming the
parameter; the CLI reports it as a usage error of the flag that set it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgtool.errors import ConfigError
from ecgtool.eval.options import AGGREGATES

METHODS = ("gradcam", "attention", "ig", "saliency")
# Methods whose map is computed for every lead on its own (an input gradient), so that leads can be compared;
# Grad-CAM of a 1D layer and attention over time give one profile that all leads share.
PER_LEAD_METHODS = ("ig", "saliency")
SANITY_MODES = ("cascade", "full")  # Adebayo et al. 2018: randomise layers from the top one by one, or all at once


@dataclass(frozen=True)
class ExplainOptions:
    method: str = "gradcam"
    layer: str | None = None  # Grad-CAM only; default: the model's default_cam_layer
    class_name: str | None = None  # None: each record's predicted (most probable) class
    steps: int = 64  # integrated gradients
    batch_size: int = 16
    charts: bool = True
    dpi: float = 150.0
    sanity: str | None = None  # None, "cascade" or "full"
    seed: int = 0
    per_lead: bool = False  # the per-lead view: one row per lead with its own band, and the leads ranked
    window_stride: int | None = None  # a model trained on crops: eval's sliding windows (default: half the input)
    aggregate: str | None = None  # how window probabilities combine (default: max multi-label, mean multi-class)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}", "method")
        if self.layer is not None and self.method != "gradcam":
            raise ConfigError(f"a layer applies to the gradcam method, not {self.method}", "layer")
        if self.sanity is not None and self.sanity not in SANITY_MODES:
            raise ConfigError(f"sanity {self.sanity!r} is not one of {', '.join(SANITY_MODES)}", "sanity")
        if self.per_lead and self.method not in PER_LEAD_METHODS:
            raise ConfigError(f"the per-lead view needs a map of each lead's own ({' or '.join(PER_LEAD_METHODS)}); "
                              f"{self.method} gives one time profile for all leads of a 1D model", "per_lead")
        if self.aggregate is not None and self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate {self.aggregate!r} is not one of {', '.join(AGGREGATES)}", "aggregate")
        if self.window_stride is not None and self.window_stride < 1:
            raise ConfigError(f"window_stride must be at least 1 sample, not {self.window_stride}", "window_stride")
        if self.steps < 2:
            raise ConfigError(f"integrated gradients need at least 2 steps, not {self.steps}", "steps")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}", "batch_size")
        if not 50 <= self.dpi <= 1200:
            raise ConfigError(f"dpi must be between 50 and 1200, not {self.dpi:g}", "dpi")
