"""ecgtool's models against the official code: parameter counts and logits from copied weights.

    python benchmarks/fidelity.py --refs DIR [--only NAME ...]

DIR holds checkouts of the official repositories, one folder per repository
named ``owner+name`` (``hsd1503+MINA``, ``Amadeuszhao+SE-ECGNet``,
``ysxGitHub+MVMS-net``, ``helme+ecg_ptbxl_benchmarking``); a missing folder
skips its models. Nothing of the official code is part of ecgtool: this script
imports it from DIR at run time, builds each official model in its published
setting, gives its BatchNorm layers non-trivial statistics, copies every
weight into the ecgtool model built with the matching constructor arguments,
and prints one row per model: official and ecgtool parameter counts and the
largest absolute difference of the logits on random input (eval mode).

Weights are matched in the order the two models first *use* their layers in
one forward pass (shapes must agree pair by pair), so no key table is needed
where the layouts differ only in names or registration order; MINA, whose
attention parameters sit on container modules, gets an explicit key map.

Workarounds for the published code (they change no computation):

* SE-ECGNet's ``SE_ECGNet.__init__`` calls ``super(ECGNet, self)`` with no
  ``ECGNet`` in scope, which raises ``NameError`` as published; the name is
  bound to the class itself before building it.
* The PTB-XL benchmark's models import fastai v1 (``bn_drop_lin``, ``listify``,
  ``Flatten``), which ecgtool does not depend on; a minimal stand-in with
  fastai v1's definitions is installed in ``sys.modules`` before the import.
* MINA's ``Net`` takes pre-filtered channels and pre-computed knowledge
  (``util.py``); it is fed ecgtool's own FIR channels and the knowledge
  computed as ``util.compute_beat/compute_rhythm/compute_freq`` do, so the row
  checks everything after the filter bank (the official first-order
  Butterworth filters are a documented difference). Its ``Net`` ends in a
  softmax; its logits are read at ``fc``.

ECGNet's reference is ``models/ECGNet.py`` in the SE-ECGNet repository; it is
checked with ``stem_concat="time"`` and both poolings (only ``"reference"``
computes the same function). Not covered: DPRNN (the official model needs
asteroid and pytorch-lightning).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecgtool.models import create_model  # noqa: E402


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _package(name: str, folder: Path) -> None:
    """Make ``import name.sub`` find ``folder/sub.py`` without running ``folder/__init__.py``."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(folder)]
    sys.modules[name] = pkg


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.2 * torch.rand(m.running_mean.shape, generator=gen) - 0.1)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            if m.affine:
                # gains below 1, so that 33 residual blocks (xresnet1d101) keep the logits of order 1
                m.weight.data.copy_(0.1 + 0.4 * torch.rand(m.weight.shape, generator=gen))
                m.bias.data.copy_(0.2 * torch.rand(m.bias.shape, generator=gen) - 0.1)


def _direct_state(m: nn.Module) -> list[torch.Tensor]:
    """The module's own parameters and persistent buffers (what its state dict holds), in registration order."""
    buffers = [t for n, t in m._buffers.items() if n not in m._non_persistent_buffers_set]
    return [t for t in list(m._parameters.values()) + buffers if t is not None]


def _use_order(model: nn.Module, *inputs) -> list[nn.Module]:
    """Modules holding parameters or buffers, in the order one forward pass first calls them."""
    order, seen, hooks = [], set(), []

    def hook(module, _args):
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    for m in model.modules():
        if _direct_state(m):
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return order


def copy_by_use_order(src: nn.Module, dst: nn.Module, src_inputs: tuple, dst_inputs: tuple) -> None:
    a, b = _use_order(src, *src_inputs), _use_order(dst, *dst_inputs)
    if len(a) != len(b):
        raise RuntimeError(f"{len(a)} official vs {len(b)} ecgtool stateful modules in use order")
    for ma, mb in zip(a, b):
        ta, tb = _direct_state(ma), _direct_state(mb)
        # a 1x1 Conv2d and its Conv1d equivalent differ only by a singleton axis (MVMS coordinate attention)
        squeeze = lambda t: [d for d in t.shape if d != 1]  # noqa: E731
        if len(ta) != len(tb) or any(squeeze(x) != squeeze(y) for x, y in zip(ta, tb)):
            raise RuntimeError(f"shape mismatch: {ma} vs {mb}")
        with torch.no_grad():
            for x, y in zip(ta, tb):
                y.copy_(x.reshape(y.shape))


def _row(name, setting, official, ours, diff, scale, control):
    return dict(model=name, setting=setting, official=official, ecgtool=ours, diff=diff, scale=scale, control=control)


def _compare(name, setting, off, ours, x, off_inputs=None, gen=None):
    _randomise_batchnorm(off, gen)
    off.eval()
    ours.eval()
    off_inputs = off_inputs or (x,)
    with torch.no_grad():
        control = ours(x)  # before the copy: shows the comparison can fail
    copy_by_use_order(off, ours, off_inputs, (x,))
    with torch.no_grad():
        a, b = off(*off_inputs), ours(x)
    return _row(name, setting, _n_params(off), _n_params(ours), (a - b).abs().max().item(), a.abs().max().item(),
                (a - control).abs().max().item())


# --------------------------------------------------------------------------- per repository


def check_se_ecgnet(root: Path, gen):
    mod = _load_module(root / "models" / "SE_ECGNet.py", "_official_se_ecgnet")
    mod.ECGNet = mod.SE_ECGNet  # published code: super(ECGNet, self) with ECGNet undefined
    off = mod.SE_ECGNet(num_classes=34)
    ours = create_model("se_ecgnet", num_classes=34, num_leads=8, num_samples=2048)
    x = torch.randn(2, 8, 2048, generator=gen)  # the official loader resamples every record to 2048
    rows = [_compare("se_ecgnet", "8x2048, 34 classes", off, ours, x, gen=gen)]
    # ECGNet: the reference copy in the same repository (models/ECGNet.py), at its own test input 8 x 5000
    mod = _load_module(root / "models" / "ECGNet.py", "_official_ecgnet")
    x = torch.randn(2, 8, 5000, generator=gen)
    for pooling in ("reference", "adaptive"):
        ours = create_model("ecgnet_lstm", num_classes=34, num_leads=8, num_samples=5000, stem_concat="time",
                            pooling=pooling)
        rows.append(_compare("ecgnet_lstm", f"8x5000, 34, stem time, pooling {pooling}",
                             mod.ECGNet(in_channels=8, num_classes=34), ours, x, gen=gen))
    return rows


def check_mvms(root: Path, gen):
    _package("models", root / "models")
    sys.path.insert(0, str(root))
    try:
        mod = importlib.import_module("models.model")
    finally:
        sys.path.remove(str(root))
    rows = []
    x = torch.randn(2, 12, 1000, generator=gen)
    rows.append(_compare("mvms_ecg", "12x1000, 71 classes", mod.MyNet6View(num_classes=71),
                         create_model("mvms_ecg", num_classes=71, num_leads=12, num_samples=1000), x, gen=gen))
    rows.append(_compare("mvms_single", "12x1000, 71 classes", mod.MyNet(num_classes=71, input_channels=12),
                         create_model("mvms_single", num_classes=71, num_leads=12, num_samples=1000), x, gen=gen))
    return rows


def _fastai_v1_stand_in() -> None:
    """fastai v1's bn_drop_lin / listify / Flatten (fastai.layers, fastai.core), which the benchmark imports."""
    from typing import Collection, Optional, Union

    class Flatten(nn.Module):
        def __init__(self, full: bool = False):
            super().__init__()
            self.full = full

        def forward(self, x):
            return x.view(-1) if self.full else x.view(x.size(0), -1)

    def listify(p=None, q=None):
        if p is None:
            return []
        if isinstance(p, (str, bytes)) or not hasattr(p, "__iter__"):
            return [p]
        return list(p)

    def bn_drop_lin(n_in, n_out, bn=True, p=0.0, actn=None):
        layers = [nn.BatchNorm1d(n_in)] if bn else []
        if p != 0:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(n_in, n_out))
        if actn is not None:
            layers.append(actn)
        return layers

    fastai = types.ModuleType("fastai")
    for sub in ("layers", "core"):
        m = types.ModuleType(f"fastai.{sub}")
        m.Flatten, m.listify, m.bn_drop_lin = Flatten, listify, bn_drop_lin
        m.Optional, m.Collection, m.Floats = Optional, Collection, Union[float, Collection[float]]
        m.__all__ = ["Flatten", "listify", "bn_drop_lin", "Optional", "Collection", "Floats"]
        sys.modules[f"fastai.{sub}"] = m
        setattr(fastai, sub, m)
    sys.modules["fastai"] = fastai


def check_ptbxl(root: Path, gen):
    _fastai_v1_stand_in()
    _package("models", root / "code" / "models")
    sys.path.insert(0, str(root / "code"))
    try:
        xres = importlib.import_module("models.xresnet1d")
        incep = importlib.import_module("models.inception1d")
    finally:
        sys.path.remove(str(root / "code"))
    x = torch.randn(2, 12, 1000, generator=gen)
    head = dict(num_classes=71, input_channels=12, ps_head=0.5, lin_ftrs_head=[128])  # fastai_model.py defaults
    rows = []
    for name, fn in (("xresnet1d50", xres.xresnet1d50), ("xresnet1d101", xres.xresnet1d101)):
        rows.append(_compare(name, "12x1000, 71 classes", fn(kernel_size=5, **head),
                             create_model(name, num_classes=71), x, gen=gen))
    rows.append(_compare("inception1d", "12x1000, 71 classes",
                         incep.inception1d(use_residual=True, kernel_size=40, **head),
                         create_model("inception1d", num_classes=71), x, gen=gen))
    return rows


def check_mina(root: Path, gen):
    from scipy.signal import periodogram

    sys.path.insert(0, str(root))  # mina.py imports its util.py
    try:
        mod = _load_module(root / "mina.py", "_official_mina")
    finally:
        sys.path.remove(str(root))

    off = mod.Net(4, 3000, 50)  # n_channel, n_dim, n_split as in run(); n_class is fixed at 2 inside
    ours = create_model("mina", num_classes=2, num_leads=1, num_samples=3000)
    _randomise_batchnorm(off, gen)  # (MINA has no BatchNorm; kept for symmetry)
    off.eval()
    ours.eval()
    sd = {}
    for k, v in off.state_dict().items():
        parts = k.split(".")
        if parts[0].startswith("base_net_"):
            i, rest = parts[0].rsplit("_", 1)[1], ".".join(parts[1:])
            pre = f"branches.branches.{i}."
            key = {"W_att_cnn": "beat_att.W", "v_att_cnn": "beat_att.v",
                   "W_att_rnn": "rhythm_att.W", "v_att_rnn": "rhythm_att.v"}.get(rest)
            if key is None:
                head, tail = rest.split(".", 1)
                key = {"conv": "conv.conv", "conv_k": "conv_k.conv"}.get(head, head) + "." + tail
            sd[pre + key] = v
        else:
            top = {"W_att_channel": "freq_attention.att.W", "v_att_channel": "freq_attention.att.v"}
            sd[top.get(k, k.replace("fc.", "head."))] = v
    x = torch.randn(2, 1, 3000, generator=gen)
    with torch.no_grad():
        control = ours(x)  # before the copy
    missing = ours.load_state_dict(sd, strict=False)
    assert missing.missing_keys == ["filter_bank.taps"] and not missing.unexpected_keys, missing

    with torch.no_grad():
        chans = ours.filter_bank(x)[:, :, 0].double().numpy()  # (B, 4, T): ecgtool's channels for both
    beat = np.concatenate([np.zeros(chans.shape[:2] + (1,)), np.abs(np.diff(chans, axis=-1))], axis=-1)
    rhythm = chans.reshape(*chans.shape[:2], 60, 50).std(axis=-1)
    freq = np.stack([[periodogram(c, 300)[1].sum() for c in rec] for rec in chans])  # (B, 4)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    args = ([f(chans[:, i]) for i in range(4)] + [f(beat[:, i]) for i in range(4)]
            + [f(rhythm[:, i]) for i in range(4)] + [f(freq.T[:, :, None])])
    logits = {}
    h = off.fc.register_forward_hook(lambda m, i, o: logits.__setitem__("fc", o))
    with torch.no_grad():
        off(*args)
        b = ours(x)
    h.remove()
    a = logits["fc"]
    return [_row("mina", "1x3000, 2 classes, after the filter bank", _n_params(off), _n_params(ours),
                 (a - b).abs().max().item(), a.abs().max().item(), (a - control).abs().max().item())]


CHECKS = {
    "hsd1503+MINA": check_mina,
    "Amadeuszhao+SE-ECGNet": check_se_ecgnet,
    "ysxGitHub+MVMS-net": check_mvms,
    "helme+ecg_ptbxl_benchmarking": check_ptbxl,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=Path, required=True, help="folder of official checkouts named owner+name")
    ap.add_argument("--only", nargs="*", help="repository folder names to check (default: all present)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)  # the official models initialise from the global generator
    rows = []
    for repo, check in CHECKS.items():
        if args.only and repo not in args.only:
            continue
        root = args.refs / repo
        if not root.is_dir():
            print(f"skip {repo}: no {root}", file=sys.stderr)
            continue
        gen = torch.Generator().manual_seed(args.seed)
        rows += check(root, gen)
    # max |dlogit|: copied weights; before copy: the same comparison with ecgtool's own initial weights
    print(f"{'model':<13} {'setting':<42} {'official':>11} {'ecgtool':>11} {'max |dlogit|':>13} "
          f"{'max |logit|':>11} {'before copy':>11}")
    for r in rows:
        print(f"{r['model']:<13} {r['setting']:<42} {r['official']:>11,} {r['ecgtool']:>11,} "
              f"{r['diff']:>13.2e} {r['scale']:>11.3g} {r['control']:>11.3g}")


if __name__ == "__main__":
    main()
