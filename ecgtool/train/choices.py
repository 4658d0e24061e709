"""The values a training run's string settings may take, each defined once.

The training loop validates against these tuples and the CLI offers them as its
choices; this module imports nothing, so the CLI's option definitions do not
load torch (``--help`` and TAB completion stay instant).
"""

SCHEDULES = ("cosine", "step", "constant")  # learning-rate schedule, stepped per batch
PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtype: fp32 (off), bf16, or fp16 with a grad scaler
AUGMENTATIONS = ("lead_mask", "segment_mask", "noise", "baseline_wander", "amplitude_scale", "time_stretch", "mixup")  # train.augment
PRETRAIN_METHODS = ("cpc", "clocs-cmsc", "clocs-cmlc", "clocs-cmsmlc", "st-mem", "jepa")  # train.pretrain.methods
DISTILL_METHODS = ("kd", "mvms", "mvkt")  # train.distill.loop
