"""``ecgtool eval``: a checkpoint on a store → metrics."""

from __future__ import annotations

import click

from ecgtool.cli.options import device_option, json_option, overwrite_option


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--predictions", type=click.Path(), help="Also write probabilities, labels and record ids to this Zarr store.")
@device_option
@json_option
@overwrite_option
def eval_(checkpoint, store_path, batch_size, predictions, device, as_json, overwrite):
    """Evaluate CHECKPOINT on STORE: macro and per-class AUC, F1, precision, recall, specificity.

    Decisions use the per-class thresholds stored in the checkpoint (tuned on
    validation by train), never thresholds tuned on STORE. Prints a table, or
    every number as JSON with --json.
    """
    from ecgtool.cli.options import emit_json, resolve_device, stdout_console
    from ecgtool.eval.evaluate import run_eval, write_predictions

    if predictions:
        from ecgtool.outputs import check_new_output

        check_new_output(predictions, overwrite)  # refuse before the evaluation, not after
    result = run_eval(checkpoint, store_path, resolve_device(device), batch_size)
    if predictions:
        write_predictions(predictions, result, overwrite)
    report = result["report"]
    if as_json:
        emit_json(report)
    else:
        stdout_console().print(report_table(report))


def report_table(report: dict):
    from rich.table import Table

    def f(v):
        return "—" if v is None else f"{v:.3f}"

    multi = report["multi_label"]
    title = f"{report['model']} on {report['store']} ({report['records']} records, {report['task']})"
    m = report["macro"]
    decision = f"thresholds {report['threshold_source']}" if multi else "decision: argmax"
    summary = f"exact match {m['exact_match']:.3f}" if multi else f"accuracy {m['accuracy']:.3f}"
    caption = f"{summary}; spec. = specificity; {decision}"
    table = Table(title=title, caption=caption)
    for col in ("class", "support", "AUC", "F1", "precision", "recall", "spec.") + (("thresh.",) if multi else ()):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in report["per_class"]:
        table.add_row(c["class"], str(c["support"]), f(c["auc"]), f(c["f1"]), f(c["precision"]), f(c["recall"]),
                      f(c["specificity"]), *((f(c["threshold"]),) if multi else ()))
    table.add_row("[bold]macro[/]", str(report["records"]), f"[bold]{f(m['auc'])}[/]", f"[bold]{f(m['f1'])}[/]",
                  f(m["precision"]), f(m["recall"]), f(m["specificity"]), *(("",) if multi else ()))
    return table
