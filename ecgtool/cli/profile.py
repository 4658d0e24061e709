"""``ecgtool profile``: parameters, MACs per stage and latency of a model or checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from ecgtool.cli.completion import complete_model_or_file
from ecgtool.cli.options import LibraryCommand, device_option, json_option, option


def _print_registry(leads: int, samples: int, classes: int, as_json: bool) -> None:
    from rich.table import Table

    from ecgtool.cli.options import emit_json, stdout_console
    from ecgtool.data.views import data_view, extra_channels
    from ecgtool.models import create_model, list_models, model_info
    from ecgtool.profile.measure import count_macs, count_parameters

    from rich.table import Column

    names = list_models()
    # Within 80 columns (a pipe) whole names and numbers; the families are in `ecgtool train --list`.
    numbers = [Column(h, no_wrap=True, justify="right") for h in ("params", "MACs (M)", "MACs incl.\nattention (M)")]
    table = Table(Column("model", no_wrap=True, min_width=max(map(len, names), default=5)), *numbers,
                  title=f"registered models at {leads} leads × {samples} samples, {classes} classes",
                  caption="MACs: thop's count; MACs incl. attention: every matrix product, attention included "
                          "(torch's FlopCounterMode). Sources, reference-parity counts and both counts: "
                          "docs/models.md; per-model details: each file's docstring")
    from ecgtool.cli.progress import ProgressDisplay

    rows = []
    with ProgressDisplay("profile", unit="models") as progress:  # counting every model takes a minute on a laptop
        for done, name in enumerate(names, 1):
            model = create_model(name, num_classes=classes, num_leads=leads, num_samples=samples)
            channels = leads + extra_channels(data_view(model_info(name)["input_view"]))
            macs = count_macs(model, (1, channels, samples))
            rows.append({"model": name, "parameters": count_parameters(model)["total"], "macs": macs["macs"],
                         "macs_with_attention": macs["macs_with_attention"]})
            progress(done, len(names), note=name)
    if as_json:
        emit_json({"input_shape": [leads, samples], "classes": classes, "models": rows})
        return
    for r in rows:
        table.add_row(r["model"], f"{r['parameters']:,}", f"{r['macs'] / 1e6:,.1f}", f"{r['macs_with_attention'] / 1e6:,.1f}")
    stdout_console().print(table)


@click.command(cls=LibraryCommand)
@click.argument("target", metavar="MODEL|CHECKPOINT", required=False, shell_complete=complete_model_or_file)
@option("--num-leads", "leads", aliases=("--leads",), type=click.IntRange(1), default=12, show_default=True, help="Input leads (for a model name).")
@option("--num-samples", "samples", aliases=("--samples",), type=click.IntRange(16), default=1000, show_default=True, help="Input samples (for a model name).")
@option("--num-classes", "classes", aliases=("--classes",), type=click.IntRange(1), default=9, show_default=True, help="Output classes (for a model name).")
@option("--batch-size", "batches", aliases=("--batch",), type=click.IntRange(1), multiple=True, default=(1, 32), show_default=True,
        help="Batch sizes for latency; repeatable.")
@click.option("--repeats", type=click.IntRange(1), default=20, show_default=True, help="Timed repeats per batch size (median reported).")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for torch (0: torch's default; at most 4 per CPU).")
@click.option("--list", "list_", is_flag=True,
              help="Print every registered model's parameters and MACs (both counts) at --num-leads/--num-samples/--num-classes, and exit.")
@device_option
@json_option
def profile(target, leads, samples, classes, batches, repeats, threads, list_, device, as_json):
    """Profile a registered MODEL name or a CHECKPOINT file.

    Parameters, MACs counted by thop for one record (FLOPs = 2 × MACs) with a
    per-stage breakdown, beside a second count that includes attention matrix
    products and functional ops (torch's FlopCounterMode: matrix products and
    convolutions only), and latency (median of repeats) at each --batch-size.
    A checkpoint's input shape comes from the checkpoint.
    """
    ignored = ((("--batch-size", "batches"), ("--repeats", "repeats"), ("--device", "device"))
               if list_ else (("--num-leads", "leads"), ("--num-samples", "samples"), ("--num-classes", "classes"))
               if target is not None and Path(target).is_file() else ())
    _refuse_typed(ignored, "--list counts parameters and MACs, and times nothing" if list_ else "a checkpoint's input shape and classes are its own")
    if list_:
        if target is not None:
            raise click.UsageError("--list profiles every registered model; give it no MODEL or CHECKPOINT")
        _print_registry(leads, samples, classes, as_json)
        return
    if target is None:
        raise click.UsageError("give a MODEL name or a CHECKPOINT file (or --list)")
    import torch

    from ecgtool.cli.options import emit_json, resolve_device, stdout_console
    from ecgtool.data.views import data_view, extra_channels
    from ecgtool.models import create_model, model_info
    from ecgtool.profile.measure import count_macs, count_parameters, measure_latency

    if threads:
        from ecgtool.processes import check_parallel

        check_parallel(threads, "threads", "threads", "torch threads")  # LibraryCommand names --threads
        torch.set_num_threads(threads)
    if Path(target).is_file():
        from ecgtool.checkpoint import Checkpoint

        ckpt = Checkpoint.load(target)
        model = ckpt.build_model()
        leads, samples, name = len(ckpt.input.leads), ckpt.input.samples, ckpt.model.name
        view = ckpt.input.view
    else:
        try:
            model = create_model(target, num_classes=classes, num_leads=leads, num_samples=samples)
        except KeyError as e:
            raise click.BadParameter(e.args[0], param_hint="MODEL|CHECKPOINT") from None
        name = target
        view = data_view(model_info(name)["input_view"])
    channels = leads + extra_channels(view)  # a data-side view (R-peak marks) adds input channels
    dev = resolve_device(device)
    macs = count_macs(model, (1, channels, samples))
    latency = [measure_latency(model, (b, channels, samples), device=str(dev), repeats=repeats) for b in batches]
    result = {
        "model": name, "input_shape": [leads, samples], "parameters": count_parameters(model),
        "macs": macs["macs"], "flops": macs["flops"], "flops_convention": "FLOPs = 2 x MACs (thop counts MACs)",
        "macs_with_attention": macs["macs_with_attention"], "flops_with_attention": macs["flops_with_attention"],
        "macs_with_attention_convention": ("torch.utils.flop_counter.FlopCounterMode FLOPs / 2: every matrix product, "
                                           "convolution and attention, functional ones included; no norms or elementwise ops"),
        "stages": macs["stages"], "latency": latency, "device": str(dev), "torch_threads": torch.get_num_threads(),
    }
    if as_json:
        emit_json(result)
        return
    _print(result, stdout_console())


def _refuse_typed(options, why: str) -> None:
    """A usage error for options typed on the command line that this run would ignore (a value set in the
    environment is a default for many runs, and is left alone)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    typed = [flag for flag, name in options if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if typed:
        raise click.UsageError(f"{', '.join(typed)} would be ignored: {why}")


def _print(r: dict, console) -> None:
    from rich.table import Table

    console.print(f"[bold]{r['model']}[/]  input {r['input_shape'][0]} leads × {r['input_shape'][1]} samples")
    console.print(f"parameters {r['parameters']['total']:,}  MACs {r['macs'] / 1e6:,.1f} M  FLOPs {r['flops'] / 1e6:,.1f} M (2 × MACs)")
    console.print(f"MACs incl. attention {r['macs_with_attention'] / 1e6:,.1f} M  "
                  f"FLOPs incl. attention {r['flops_with_attention'] / 1e6:,.1f} M")
    table = Table("stage", "params", "MACs (M)", "% MACs", "MACs incl. attention (M)",
                  caption="MACs: thop's count of nn.Module leaves; MACs incl. attention: every matrix product, "
                          "convolution and attention (torch's FlopCounterMode), no norms or elementwise ops")
    for s in r["stages"]:
        table.add_row(s["name"], f"{s['params']:,}", f"{s['macs'] / 1e6:,.2f}", f"{100 * s['macs'] / max(r['macs'], 1):.1f}",
                      f"{s['macs_with_attention'] / 1e6:,.2f}")
    console.print(table)
    lat = Table("batch", "median ms", "p90 ms", "records/s", title=f"latency on {r['device']} ({r['torch_threads']} threads)")
    for x in r["latency"]:
        lat.add_row(str(x["batch"]), f"{x['median_ms']:.2f}", f"{x['p90_ms']:.2f}", f"{x['samples_per_s']:,.0f}")
    console.print(lat)
