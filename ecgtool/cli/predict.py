"""``ecgtool predict``: a checkpoint applied to raw recordings → probabilities and decisions."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, device_option, json_option, overwrite_option
from ecgtool.data.choices import CSV_UNITS, ON_ERROR


@click.command(cls=LibraryCommand)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the predictions to this .csv or .json file (default: a table on stdout).")
@click.option("--fs", type=click.FloatRange(0, min_open=True), default=None,
              help="Sampling rate in Hz of CSV recordings, 1 to 100,000 (required for them; WFDB headers give their own).")
@click.option("--csv-units", type=click.Choice(CSV_UNITS), default="mV", show_default=True,
              help="Units of the values in CSV recordings (WFDB headers give their own).")
@click.option("--on-error", type=click.Choice(ON_ERROR), default="fail", show_default=True,
              help="What to do with a recording that cannot be read or lacks a lead the model reads.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--jobs", "workers", type=click.IntRange(1), default=None,
        help="Recordings read and preprocessed in parallel, one process each (at most 4 per CPU) [default: CPU count, at most 8].")
@device_option
@json_option
@overwrite_option
def predict(checkpoint, inputs, output, fs, csv_units, on_error, batch_size, workers, device, as_json, overwrite):
    """Apply CHECKPOINT to raw recordings: WFDB records (.hea, or the .dat/.mat
    signal file beside it), CSV files (a header row of lead names; --fs), or
    directories of them.

    Each recording gets the preprocessing the checkpoint's training data had
    (resampling, filters, crop or zero-pad, normalisation, recorded in the
    checkpoint by train), the leads the model reads picked by name. Prints, per
    record, the probability of each class and the decided labels (the
    checkpoint's tuned thresholds; argmax for a multi-class task): a table, or
    with -o a CSV or JSON file (then its path), or JSON with --json.
    """
    from rich.markup import escape

    from ecgtool.cli.options import print_warnings, resolve_device, stderr_console, stdout_console
    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.data.recordings import find_recordings, named_files
    from ecgtool.eval.recordings import PredictOptions, check_recordings, output_format, run_predict, write_predictions
    from ecgtool.outputs import check_new_output
    from ecgtool.processes import default_workers

    opts = PredictOptions(batch_size=batch_size, on_error=on_error, fs=fs, csv_units=csv_units, workers=workers or default_workers())
    recordings = find_recordings(inputs)
    check_recordings(recordings, opts)
    protected = [checkpoint, *inputs, *named_files(recordings)]
    if output:
        output_format(output)
        check_new_output(output, overwrite, protected)  # before reading a single recording
    console = stderr_console()
    with ProgressDisplay("predict", console=console, enabled=len(recordings) > 1) as progress:
        result = run_predict(checkpoint, recordings, resolve_device(device), opts, progress=progress)
    for rec, why in result.skipped[:20]:
        console.print(f"[yellow]skipped[/] {escape(rec.name)}: {escape(why)}", highlight=False)
    if len(result.skipped) > 20:
        console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped recordings (a JSON output lists them all)")
    print_warnings(console, result.warnings)
    if output:
        write_predictions(output, result, overwrite, protected)
        console.print(f"predicted {len(result.recordings)} recording(s) into {escape(str(output))}"
                      + (f"; {len(result.skipped)} left out" if result.skipped else ""), highlight=False)
    if as_json:
        import sys

        result.write_json(sys.stdout)  # record by record: a large run is never held as one text
    elif output:
        click.echo(output)
    else:
        stdout_console().print(predictions_table(result))


def predictions_table(result):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{result.checkpoint.model.name}: {len(result.recordings)} recording(s)",
                  caption=f"decisions: {result.threshold_source}")
    table.add_column("record")
    for c in result.classes:
        table.add_column(escape(c), justify="right")
    table.add_column("labels")
    for i, rec in enumerate(result.recordings):
        table.add_row(escape(rec.name), *(f"{p:.3f}" for p in result.probs[i]), escape(", ".join(result.labels(i))) or "—")
    return table
