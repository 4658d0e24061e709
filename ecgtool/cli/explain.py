"""``ecgtool explain``: a checkpoint's decisions on chosen records → saliency store + clinical charts."""

from __future__ import annotations

import click

from ecgtool.cli.options import (LibraryCommand, device_option, json_option, option, overwrite_option, seed_option,
                                 window_options)
from ecgtool.explain.options import METHODS, SANITY_MODES


@click.command(cls=LibraryCommand)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Directory to write: saliency.zarr and one PNG per record.")
@click.option("--records", multiple=True, metavar="ID[,ID…]", help="Record ids (the store's record_id) to explain; repeatable.")
@option("--limit", "first", aliases=("--first",), type=click.IntRange(1), help="Explain the store's first N records instead.")
@click.option("--method", type=click.Choice(METHODS), default="gradcam", show_default=True,
              help="gradcam (Grad-CAM), attention (attention models), ig (integrated gradients, signed) or saliency (|gradient|).")
@click.option("--per-lead", is_flag=True, help="Per-lead view (ig, saliency): every lead on its own row with its own band, "
              "and the leads ranked by their share of the record's |attribution|.")
@click.option("--layer", help="Grad-CAM layer, a dotted module name (default: the model's default_cam_layer).")
@click.option("--class", "class_name", metavar="NAME", help="Explain this class (default: each record's predicted class, the most probable one above its threshold).")
@click.option("--steps", type=click.IntRange(2), default=64, show_default=True, help="Integration steps for ig.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--charts/--no-charts", default=True, show_default=True, help="Write the per-record PNG charts.")
@click.option("--dpi", type=click.IntRange(50, 1200), default=150, show_default=True, help="Chart resolution; the grid is true to scale (25 mm/s, 10 mm/mV) at it.")
@click.option("--sanity", type=click.Choice(SANITY_MODES), help="Also run the weight-randomisation sanity check (Adebayo et al. 2018) and print its rank correlations.")
@window_options
@seed_option
@device_option
@overwrite_option
@json_option
def explain(checkpoint, store_path, output, records, first, method, per_lead, layer, class_name, steps, batch_size, charts, dpi,
            sanity, window_stride, aggregate, seed, device, overwrite, as_json):
    """Explain CHECKPOINT's decisions on records of STORE; write OUTPUT/saliency.zarr and OUTPUT/<record>.png.

    Each chart is the ECG on paper (25 mm/s, 10 mm/mV, 3 x 4 leads plus a lead II
    rhythm strip for 12 leads) with the map as a colour overlay. A model trained on
    crops is explained on eval's sliding windows, stitched over the record. Prints
    OUTPUT (a summary as JSON with --json); --sanity prints the randomisation check on stderr.
    """
    from ecgtool.cli.options import emit_json, print_warnings, resolve_device, stderr_console
    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.explain.options import ExplainOptions
    from ecgtool.explain.run import run_explain

    if bool(records) == (first is not None):
        raise click.UsageError("give either --records ID[,ID…] or --limit N")
    options = ExplainOptions(method=method, layer=layer, class_name=class_name, steps=steps, batch_size=batch_size,
                             charts=charts, dpi=dpi, sanity=sanity, seed=seed, per_lead=per_lead,
                             window_stride=window_stride, aggregate=aggregate)
    console = stderr_console()
    with ProgressDisplay("explain", console=console) as progress:
        result = run_explain(checkpoint, store_path, output, records=list(records), first=first, options=options,
                             device=resolve_device(device), overwrite=overwrite, progress=progress)
    print_warnings(console, result.warnings)
    if result.sanity:
        console.print(sanity_table(result.sanity, method))
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(result.output)


def sanity_table(rows: list[dict], method: str):
    from rich.table import Table

    def f(v):
        return "—" if v is None or v != v else f"{v:.3f}"

    table = Table(title=f"{method}: trained vs randomised weights",
                  caption="Spearman rank correlation with the trained model's maps (Adebayo et al. 2018 sanity check); "
                          "near 1 = the map ignores the weights")
    for col in ("randomised (from the top)", "|map| rho", "map rho"):
        table.add_column(col, justify="left" if col.startswith("randomised") else "right")
    for r in rows:
        table.add_row(" + ".join(r["randomised"]) if len(r["randomised"]) <= 3 else f"{r['randomised'][-1]} and all above",
                      f(r["spearman_abs"]), f(r["spearman"]))
    return table

