"""``ecgtool eval``: a checkpoint on a store → metrics with bootstrap intervals, optional plots."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, device_option, json_option, overwrite_option, seed_option, window_options
from ecgtool.eval.options import DEFAULT_BOOTSTRAP, THRESHOLD_OBJECTIVES, THRESHOLD_SCOPES


@click.command("eval", cls=LibraryCommand)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.option("--val", type=click.Path(exists=True, file_okay=False),
              help="Tune the decision thresholds now on this validation store (instead of the checkpoint's).")
@click.option("--threshold-objective", type=click.Choice(THRESHOLD_OBJECTIVES), default="f1", show_default=True,
              help="What tuned thresholds maximise.")
@click.option("--threshold-scope", type=click.Choice(THRESHOLD_SCOPES), default="class", show_default=True,
              help="One threshold per class, or one for all classes.")
@click.option("--tune-on-eval-store", is_flag=True,
              help="Tune thresholds on STORE itself (optimistic; the report says so).")
@click.option("--bootstrap", type=click.IntRange(0), default=DEFAULT_BOOTSTRAP, show_default=True,
              help="Bootstrap resamples for confidence intervals (0: none); with --resamples, the file's count or none.")
@click.option("--ci", "level", type=click.FloatRange(0.5, 1, max_open=True), default=0.95, show_default=True,
              help="Confidence level of the intervals.")
@click.option("--resamples", type=click.Path(exists=True, dir_okay=False),
              help="Reuse these resample ids (.npy [resamples, records], e.g. saved by --save-resamples).")
@click.option("--save-resamples", type=click.Path(dir_okay=False), help="Write the resample ids used to this .npy file.")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False),
              help="A second checkpoint: report the paired difference CHECKPOINT − COMPARE on the same resamples.")
@window_options
@click.option("--leads", metavar="LEAD[,LEAD...]", help="Run the model(s) on these of their leads only, the others "
              "zeroed (read by name: STORE needs only these): e.g. a 12-lead teacher on lead I beside a lead-I student.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--predictions", type=click.Path(), help="Also write probabilities, decisions, labels, record and resample ids to this Zarr store.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write ROC, PR, reliability and confusion/threshold figures (PNG) to this new directory.")
@seed_option
@device_option
@json_option
@overwrite_option
def eval_(checkpoint, store_path, val, threshold_objective, threshold_scope, tune_on_eval_store, bootstrap, level,
          resamples, save_resamples, compare, window_stride, aggregate, leads, batch_size, predictions, plots, seed, device,
          as_json, overwrite):
    """Evaluate CHECKPOINT on STORE: AUROC, AUPRC, F1, Fmax, F/G-beta, sensitivity, specificity,
    accuracy, the CinC challenge metric for SNOMED-coded classes, with bootstrap intervals.

    Decisions use the thresholds stored in the checkpoint (tuned on validation
    by train), or thresholds tuned now on --val; never thresholds tuned on
    STORE unless --tune-on-eval-store says so. Prints a table, or every number
    as JSON with --json.
    """
    import os
    from pathlib import Path

    from ecgtool.cli.options import emit_json, print_warnings, resolve_device, stderr_console, stdout_console
    from ecgtool.eval.evaluate import run_eval, write_predictions
    from ecgtool.eval.options import EvalOptions
    from ecgtool.outputs import atomic_output, check_new_output

    opts = EvalOptions(batch_size=batch_size, val=val, tune_on_eval_store=tune_on_eval_store, threshold_objective=threshold_objective,
                       threshold_scope=threshold_scope, bootstrap=bootstrap, seed=seed, level=level, resamples=resamples,
                       window_stride=window_stride, aggregate=aggregate,
                       leads=None if leads is None else tuple(x.strip() for x in leads.split(",") if x.strip()))
    if save_resamples and not (bootstrap or resamples):
        raise click.UsageError("--save-resamples needs --bootstrap N > 0")
    named = {"--predictions": predictions, "--plots": plots, "--save-resamples": save_resamples}
    outputs = [p for p in named.values() if p]
    inputs = [p for p in (checkpoint, store_path, val, compare, resamples) if p]
    real_inputs = {os.path.realpath(p) for p in inputs}
    seen: dict[str, str] = {}
    for flag, path in named.items():
        if not path:
            continue
        real = os.path.realpath(path)
        if real in real_inputs:
            raise click.BadParameter(f"{path} is an input of this evaluation", param_hint=f"'{flag}'")
        if real in seen:
            raise click.BadParameter(f"{path} is also the {seen[real]} path; each output needs its own", param_hint=f"'{flag}'")
        seen[real] = flag
    for path in outputs:
        check_new_output(path, overwrite, inputs)  # refuse before the evaluation, not after
    if tune_on_eval_store:
        stderr_console().print("[yellow]thresholds are tuned on the evaluated store: thresholded metrics are optimistic")
    from ecgtool.cli.progress import ProgressDisplay

    with ProgressDisplay("eval") as progress:
        result = run_eval(checkpoint, store_path, resolve_device(device), opts, compare, progress)
    report = result.report
    print_warnings(stderr_console(), result.warnings)
    if predictions:
        write_predictions(predictions, result, overwrite, inputs)
    if save_resamples:
        with atomic_output(save_resamples, overwrite, inputs=inputs) as tmp:
            with open(tmp, "wb") as f:
                result.resamples.write_npy(f)
    if plots:
        from ecgtool.eval.plots import write_report_plots

        with atomic_output(plots, overwrite, directory=True, inputs=inputs) as tmp:
            main = result.main
            write_report_plots(Path(tmp), main.y, main.probs, list(main.checkpoint.classes), main.checkpoint.multi_label,
                               main.thresholds, title=f"{main.checkpoint.model.name} on {Path(store_path).name}")
    if as_json:
        emit_json(report)
    else:
        console = stdout_console()
        console.print(report_table(report))
        console.print(summary_table(report))


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _with_interval(value, interval: dict | None) -> str:
    if interval is None or interval.get("low") is None:
        return _f(value)
    return f"{_f(value)} [{interval['low']:.3f}, {interval['high']:.3f}]"


def report_table(report: dict):
    """Per-class numbers."""
    from rich.table import Table

    multi = report["multi_label"]
    title = f"{report['model']} on {report['store']} ({report['records']} records, {report['task']})"
    ci = report.get("bootstrap", {}).get("intervals", {}).get("per_class_auroc", {})
    leads = report.get("leads")
    zeroed = f"; leads {', '.join(leads['read'])} read, {', '.join(leads['zeroed'])} zeroed" if leads and leads["zeroed"] else ""
    table = Table(title=title, caption=f"decisions: {report['threshold_source']}{zeroed}")
    for col in ("class", "support", "AUROC" + (" [CI]" if ci else ""), "AUPRC", "F1", "precision", "sens.", "spec.") + (("thresh.",) if multi else ()):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in report["per_class"]:
        table.add_row(c["class"], str(c["support"]), _with_interval(c["auroc"], ci.get(c["class"])), _f(c["auprc"]), _f(c["f1"]),
                      _f(c["precision"]), _f(c["sensitivity"]), _f(c["specificity"]), *((_f(c["threshold"]),) if multi else ()))
    return table


SUMMARY = (("auroc", "macro AUROC"), ("auprc", "macro AUPRC"), ("f1", "macro F1"), ("fmax", "Fmax"),
           ("f_beta2", "F-beta (beta=2)"), ("g_beta2", "G-beta (beta=2)"), ("sensitivity", "macro sensitivity"),
           ("specificity", "macro specificity"), ("accuracy", "accuracy"), ("exact_match", "exact match"),
           ("challenge", "CinC challenge metric"))


def _p_value(d: dict | None, boot: dict | None) -> str:
    if not d or d["p_value"] is None:
        return "—"
    # no resample on the other side of zero: the p-value is below the bootstrap's resolution
    return f"<{1 / boot['resamples']:.3g}" if d["p_value"] == 0 else f"{d['p_value']:.3f}"


def summary_table(report: dict):
    """Macro numbers with their intervals, and the paired difference to a compared checkpoint."""
    from pathlib import Path

    from rich.table import Table

    boot = report.get("bootstrap")
    intervals = boot["intervals"] if boot else {}
    cmp = report.get("comparison")
    caption = f"{boot['level']:.0%} bootstrap intervals, {boot['resamples']} resamples" if boot else "no bootstrap (--bootstrap 0)"
    table = Table(title="summary", caption=caption)
    name = lambda path: Path(path).name  # noqa: E731
    for col in ("metric", name(report["checkpoint"])) + ((name(cmp["checkpoint"]), "difference [CI]", "p") if cmp else ()):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, name in SUMMARY:
        if key not in report["macro"]:
            continue
        row = [name, _with_interval(report["macro"][key], intervals.get(key))]
        if cmp:
            d = cmp.get("difference", {}).get(key)
            row += [_f(cmp["macro"].get(key)), _with_interval(d["difference"], d) if d else "—", _p_value(d, boot)]
        table.add_row(*row)
    return table
