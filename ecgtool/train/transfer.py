"""Transfer learning for ``ecgtool train``: ``--init``, ``--freeze-encoder`` and ``--encoder-lr``.

``--init CKPT`` starts the model named on the command line from the weights of
an encoder checkpoint (``pretrain``'s output; ``checkpoint.encoder_checkpoint``)
or of a classifier or student checkpoint (supervised pre-training): every
weight except the classifier head (``head.*``) is loaded strictly, and the head
keeps the fresh initialisation the model gives it. The init must be the same
registry model with the same constructor arguments (``num_classes`` apart) and
the same input (sampling rate, leads in order, samples per input,
normalisation, view); anything else is refused as a usage error of ``--init``.

``--freeze-encoder`` trains the head only (a linear probe): every other
parameter has ``requires_grad`` False and is not given to the optimiser, and
every module outside the head is held in eval mode during training, so that
BatchNorm running statistics stay as loaded and Dropout is off. Without
``--init`` it is the random-encoder baseline. ``--encoder-lr`` gives the
non-head parameters their own learning rate (a second parameter group, which
the schedule scales like the head's).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ecgtool.checkpoint import HEAD_PREFIX, Checkpoint
from ecgtool.data.inputs import InputSpec
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.provenance import fingerprint


def check_init(init: Checkpoint, model_name: str, model_kwargs: dict, spec: InputSpec, train_store) -> None:
    """Refuse, as a usage error of ``--init`` in one sentence, an init whose backbone or input differs
    from the model this run builds (``model_kwargs``: its full constructor arguments)."""
    what = f"{'the encoder' if init.is_encoder else f'the {init.kind} checkpoint'} {init.path}"
    if init.model.name != model_name:
        raise ConfigError(f"{what} holds a {init.model.name}, not a {model_name}; train {init.model.name} "
                          f"or pretrain a {model_name}", "init")
    try:
        init.input.check(train_store, "the training store", windows=True, model=what)
    except EcgtoolError as e:
        raise ConfigError(str(e), "init") from None
    if tuple(init.input.leads) != tuple(spec.leads):
        raise ConfigError(f"{what} takes leads {', '.join(init.input.leads)} in this order; the training store "
                          f"{train_store.path} gives {', '.join(spec.leads)}", "init")
    if init.input.samples != spec.samples:
        raise ConfigError(f"{what} was trained on inputs of {init.input.samples} samples, this run trains on "
                          f"{spec.samples} (--crop sets it)", "init")
    if init.input.view != spec.view:
        raise ConfigError(f"{what} takes the input view {init.input.view}, {model_name} here {spec.view}", "init")
    theirs = {k: v for k, v in init.model.kwargs.items() if k != "num_classes"}
    ours = {k: v for k, v in model_kwargs.items() if k != "num_classes"}
    if theirs != ours:
        differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k, "(default)") != ours.get(k, "(default)"))
        detail = ", ".join(f"{k}={theirs.get(k, '(default)')!r} there, {ours.get(k, '(default)')!r} here" for k in differ)
        raise ConfigError(f"{what} was built with other {model_name} arguments ({detail}); give the same --model-arg", "init")


def apply_init(model: torch.nn.Module, init: Checkpoint) -> None:
    """Load every weight of ``init`` except the head into ``model`` (strictly: the same tensors, the same shapes);
    the model's own head is left as initialised."""
    state = init.backbone_state()
    wanted = {k for k in model.state_dict() if not k.startswith(HEAD_PREFIX)}
    missing, extra = sorted(wanted - state.keys()), sorted(state.keys() - wanted)
    if missing or extra:
        raise ConfigError(f"the weights of {init.path} do not fit {init.model.name}: {len(missing)} missing and "
                          f"{len(extra)} unexpected tensors (e.g. {(missing or extra)[0]})", "init")
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        wrong = sum("size mismatch" in line for line in str(e).splitlines())
        raise ConfigError(f"the weights of {init.path} do not fit {init.model.name}: {wrong or 'some'} tensor(s) "
                          "of the wrong shape", "init") from None
    assert all(k.startswith(HEAD_PREFIX) for k in missing)


def init_record(init: Checkpoint) -> dict:
    """What the new checkpoint records of its init (the ``init`` field and the train provenance entry)."""
    return {"path": str(Path(init.path).resolve()), "fingerprint": fingerprint(init.path), "kind": init.kind,
            "model": init.model.to_dict(), "trained_on": [f for f in init.trained_on() if f]}


def inherited_pretraining(init: Checkpoint) -> dict | None:
    """The pretraining record the new checkpoint carries: its init's, naming the encoder file it came from
    (kept when the init was itself trained from an encoder)."""
    if init.pretraining is None:
        return None
    record = dict(init.pretraining)
    if init.is_encoder:
        record["encoder"] = {"path": str(Path(init.path).resolve()), "fingerprint": fingerprint(init.path)}
    return record


def split_parameters(model: torch.nn.Module) -> tuple[list, list]:
    """(head parameters, the others), in the model's parameter order."""
    head, encoder = [], []
    for name, p in model.named_parameters():
        (head if name.startswith(HEAD_PREFIX) else encoder).append(p)
    return head, encoder


def freeze_encoder(model: torch.nn.Module) -> None:
    """Every parameter outside the head stops requiring gradients."""
    for name, p in model.named_parameters():
        if not name.startswith(HEAD_PREFIX):
            p.requires_grad_(False)


def hold_encoder_in_eval(model: torch.nn.Module) -> None:
    """After ``model.train()``: every module outside the head back in eval mode (BatchNorm's running statistics
    frozen, Dropout off). The model itself and its head stay in training mode, so that what a model does in
    training at its top level (the auxiliary losses it asks for) still happens."""
    for name, module in model.named_modules():
        if name and name != "head" and not name.startswith(HEAD_PREFIX):
            module.eval()


def parameter_groups(model: torch.nn.Module, lr: float, freeze: bool, encoder_lr: float | None):
    """The optimiser's parameters: all of them (one group, as without transfer options), the head's only
    (``freeze``), or the head's at ``lr`` and the others' at ``encoder_lr`` (the head's group first, so the
    logged learning rate stays the head's)."""
    if not freeze and encoder_lr is None:
        return model.parameters()
    head, encoder = split_parameters(model)
    if not head:
        raise EcgtoolError(f"{getattr(model, 'model_name', 'the model')} has no 'head' parameters to train apart from its encoder")
    if freeze:
        return [{"params": head, "lr": lr}]
    return [{"params": head, "lr": lr}, {"params": encoder, "lr": encoder_lr}]
