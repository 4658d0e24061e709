"""What an explanation run may be asked, validated where the values live.

Import-light on purpose (no numpy or torch): the CLI's option definitions take
their choices from here. Each check raises a ``ConfigError`` naming the
parameter; the CLI reports it as a usage error of the flag that set it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgtool.errors import ConfigError

METHODS = ("gradcam", "attention", "ig", "saliency")
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

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}", "method")
        if self.layer is not None and self.method != "gradcam":
            raise ConfigError(f"a layer applies to the gradcam method, not {self.method}", "layer")
        if self.sanity is not None and self.sanity not in SANITY_MODES:
            raise ConfigError(f"sanity {self.sanity!r} is not one of {', '.join(SANITY_MODES)}", "sanity")
        if self.steps < 2:
            raise ConfigError(f"integrated gradients need at least 2 steps, not {self.steps}", "steps")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}", "batch_size")
        if not 50 <= self.dpi <= 1200:
            raise ConfigError(f"dpi must be between 50 and 1200, not {self.dpi:g}", "dpi")
