"""What an evaluation may be asked, validated where the values live.

Import-light on purpose (no numpy, torch or zarr): the CLI's option definitions
take their choices from here, and ``--help`` and TAB completion must load
nothing heavy. Each check raises a ``ConfigError`` that names the parameter; the
CLI reports it as a usage error of the flag that set it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgtool.errors import ConfigError

THRESHOLD_OBJECTIVES = ("f1", "youden")  # what tuned thresholds maximise
THRESHOLD_SCOPES = ("class", "global")  # one threshold per class, or one for all
AGGREGATES = ("max", "mean")  # how window probabilities combine into a record's
DEFAULT_BOOTSTRAP = 1000  # resamples


@dataclass(frozen=True)
class EvalOptions:
    batch_size: int = 256
    val: str | None = None  # validation store to tune thresholds on now
    tune_on_eval_store: bool = False  # the user's explicit request to tune on the reported store
    threshold_objective: str = "f1"
    threshold_scope: str = "class"
    bootstrap: int = DEFAULT_BOOTSTRAP  # resamples; 0 = no intervals
    seed: int = 0
    level: float = 0.95  # of the bootstrap intervals
    resamples: str | None = None  # .npy of resample ids to reuse
    window_stride: int | None = None
    aggregate: str | None = None  # default: max for multi-label, mean for multi-class (probabilities sum to 1)
    leads: tuple[str, ...] | None = None  # run the model on these of its leads, the others zeroed (eval/leads.py)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}", "batch_size")
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise ConfigError(f"threshold_objective {self.threshold_objective!r} is not one of {', '.join(THRESHOLD_OBJECTIVES)}",
                              "threshold_objective")
        if self.threshold_scope not in THRESHOLD_SCOPES:
            raise ConfigError(f"threshold_scope {self.threshold_scope!r} is not one of {', '.join(THRESHOLD_SCOPES)}",
                              "threshold_scope")
        if self.aggregate is not None and self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate {self.aggregate!r} is not one of {', '.join(AGGREGATES)}", "aggregate")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be 0 (no intervals) or a number of resamples, not {self.bootstrap}", "bootstrap")
        if not 0.5 <= self.level < 1:
            raise ConfigError(f"the interval level must be in [0.5, 1), not {self.level}", "level")
        if self.level != 0.95 and not (self.bootstrap or self.resamples):  # as the threshold objective below
            raise ConfigError(f"the interval level {self.level:g} applies to bootstrap intervals, and bootstrap is 0 "
                              "(no intervals)", "level")
        if self.window_stride is not None and self.window_stride < 1:
            raise ConfigError(f"window_stride must be at least 1 sample, not {self.window_stride}", "window_stride")
        if self.leads is not None and (not self.leads or len(set(self.leads)) != len(self.leads)):
            raise ConfigError(f"leads must name each lead once, not {', '.join(self.leads) or 'none'}", "leads")
        if self.val is not None and self.tune_on_eval_store:
            raise ConfigError("a validation store and tuning on the evaluated store both say where thresholds are tuned; "
                              "give one", "tune_on_eval_store")
        if (self.threshold_objective, self.threshold_scope) != ("f1", "class") and not (self.val or self.tune_on_eval_store):
            raise ConfigError("the threshold objective and scope choose how thresholds are tuned now: give a validation "
                              "store to tune them on (or tune on the evaluated store)", "threshold_objective")

    @property
    def tuning(self) -> str:
        """How thresholds are tuned now, in words."""
        scope = "per class" if self.threshold_scope == "class" else "one global threshold"
        return f"{scope}, max {'F1' if self.threshold_objective == 'f1' else 'Youden J'}"
