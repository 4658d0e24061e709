"""``ecgtool prep``: a raw dataset directory → an ECG store."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, option, output_option, overwrite_option
from ecgtool.data.choices import CROP_POLICIES, NORMALISATIONS, ON_ERROR, PTBXL_RATES, SIGNAL_DTYPES


def _leads(ctx, param, value):
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _shard(ctx, param, value):
    """``I/N`` → ``(I, N)``, 0-based: Slurm's ``--array=0-(N-1)`` gives ``$SLURM_ARRAY_TASK_ID/N``; run_prep checks it."""
    if value is None:
        return None
    try:  # int() decides what a number is: str.isdigit() passes "²", which int() refuses
        index, count = (int(p) for p in value.split("/"))
        if index < 0:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not I/N, e.g. 0/16 (shard I of N, counted from 0)") from None
    return index, count


def _beat_window(ctx, param, value):
    """``PRE,POST`` → ``(PRE, POST)`` seconds; PrepConfig checks the values."""
    if not value:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not PRE,POST seconds, e.g. 0.25,0.4") from None


@click.command(cls=LibraryCommand)
@click.argument("raw_dir", type=click.Path(file_okay=False))
@output_option
@click.option("--reader", default="auto", show_default=True, help="Dataset reader (auto detects the layout).")
@click.option("--task", default=None, help="Label task of the dataset (PTB-XL: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm; CinC: scored, scored2020, all; Chapman: merged, rhythm).")
@click.option("--rate", type=click.Choice([str(r) for r in PTBXL_RATES]), default=None, help="Which of a dataset's sampling rates to read (PTB-XL: 100 or 500 Hz files).")
@click.option("--min-likelihood", type=click.FloatRange(0, 100), default=None, help="PTB-XL: count a statement only at this likelihood or above (default: any, as the benchmark).")
@click.option("--keep-paced", is_flag=True, default=None, help="MIT-BIH: keep the paced records 102, 104, 107, 217 (left out by default, as AAMI recommends).")
@click.option("--beat-window", callback=_beat_window, metavar="PRE,POST", help="Seconds before and after each annotated beat: one store row per beat (MIT-BIH), e.g. 0.25,0.4.")
@click.option("--labels", "label_csv", type=click.Path(dir_okay=False), help="Label CSV (record_id, labels[, patient_id, age, sex, fold]) for a generic WFDB directory.")
@click.option("--fs", type=click.FloatRange(0, min_open=True), default=100.0, show_default=True, help="Target sampling rate in Hz, 1 to 100,000 (polyphase resampling, by a factor of at most 1000 either way).")
@click.option("--seconds", type=click.FloatRange(0), default=10.0, show_default=True, help="Fixed record length (at most 100 million samples per lead); 0 keeps the longest record's length and zero-pads the rest.")
@option("--crop-mode", "crop", aliases=("--crop",), type=click.Choice(CROP_POLICIES), default="start", show_default=True,
        help="Which part of a longer record to keep.")
@click.option("--lowcut", type=click.FloatRange(0), default=0.5, show_default=True, help="High-pass edge in Hz (0 disables).")
@click.option("--highcut", type=click.FloatRange(0), default=50.0, show_default=True, help="Low-pass edge in Hz (0 disables; ignored at or above Nyquist).")
@click.option("--notch", type=click.FloatRange(0), default=0.0, help="Powerline notch frequency in Hz, e.g. 50 or 60 (0 disables).")
@click.option("--normalise", "normalisation", type=click.Choice(NORMALISATIONS), default="zscore", show_default=True,
              help="zscore: per record and lead; dataset: per-lead mean/std stored in attrs and applied when loading; none.")
@click.option("--leads", callback=_leads, help="Comma-separated leads to keep, in this order (default: all).")
@click.option("--dtype", type=click.Choice(SIGNAL_DTYPES), default="int16", show_default=True,
              help="How the store keeps its rows: int16 with a per-record, per-lead scale (the size of the raw data; "
                   "error ≤ 1/65534 of each lead's peak) or float32/float16.")
@option("--jobs", "workers", aliases=("--workers",), type=click.IntRange(1), default=None,
        help="Records preprocessed in parallel, one process each (at most 4 per CPU) [default: CPU count, at most 8].")
@click.option("--on-error", type=click.Choice(ON_ERROR), default="fail", show_default=True, help="What to do with a record that cannot be read.")
@click.option("--keep-unlabelled", is_flag=True, help="Keep records with none of the task's classes (dropped by default).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N records (for a quick look).")
@click.option("--shard", callback=_shard, metavar="I/N",
              help="Only the I-th of N contiguous ranges of the record list, I counted from 0 (Slurm: --array=0-15 with "
                   "--shard $SLURM_ARRAY_TASK_ID/16); join the parts with `ecgtool merge`. Needs --seconds > 0.")
@overwrite_option
def prep(raw_dir, output, reader, task, rate, min_likelihood, keep_paced, beat_window, label_csv, fs, seconds, crop, lowcut, highcut, notch, normalisation, leads, dtype,
         workers, on_error, keep_unlabelled, limit, shard, overwrite):
    """Preprocess RAW_DIR (a WFDB dataset directory) into the ECG store OUTPUT.

    Resample → band-pass → notch → crop/pad → normalise, per record, in parallel,
    streamed into the store. Prints the store path.

    With --shard I/N it writes part I (0 ≤ I < N) of the store, a complete store of
    its own; `ecgtool merge` joins all N parts into the store one unsharded run
    writes (same records, order, attributes and --normalise dataset statistics).
    """
    from rich.markup import escape

    from ecgtool.cli.options import print_warnings, stderr_console
    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.transforms import PrepConfig
    from ecgtool.processes import default_workers

    # The values are checked by PrepConfig and run_prep (LibraryCommand names the flag at fault).
    cfg = PrepConfig(
        fs=fs, seconds=seconds or None, crop=crop, lowcut=lowcut or None, highcut=highcut or None,
        notch=notch or None, normalisation=normalisation, leads=leads, beat_window=beat_window,
    )
    if shard and not seconds and not beat_window:  # before reading the dataset, in the flags' own words
        raise click.BadParameter("needs a fixed --seconds > 0: with --seconds 0 each part would pad to its own longest record",
                                 param_hint="'--shard'")  # quoted, as click quotes the flags it names
    options = {k: v for k, v in {
        "labels": label_csv, "task": task, "rate": int(rate) if rate else None, "min_likelihood": min_likelihood,
        "keep_paced": keep_paced,
    }.items() if v is not None}
    source = open_reader(raw_dir, reader, **options)
    console = stderr_console()
    with ProgressDisplay("prep", console=console) as progress:
        report = run_prep(
            source, output, cfg, workers=workers or default_workers(), on_error=on_error,
            keep_unlabelled=keep_unlabelled, dtype=dtype, overwrite=overwrite, limit=limit, shard=shard,
            progress=progress,
        )
    for rid, why in report.skipped[:20]:
        console.print(f"[yellow]skipped[/] {escape(rid)}: {escape(why)}", highlight=False)
    if len(report.skipped) > 20:
        console.print(f"[yellow]… and {len(report.skipped) - 20} more skipped records (listed in the store's attrs)")
    if report.unknown_labels:
        ranked = sorted(report.unknown_labels.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{code} ({n} record{'s' * (n != 1)})" for code, n in ranked[:10])
        more = f" and {len(ranked) - 10} more" if len(ranked) > 10 else ""
        print_warnings(console, [f"labels outside the classes of {source.task}, ignored: {shown}{more} "
                                 "(counted in the store's attrs, unknown_labels)"])
    unlabelled_beats = report.unlabelled if beat_window is not None else 0
    console.print(
        f"wrote {report.written} records to {output}"
        + (f" (shard {shard[0]}/{shard[1]}: {report.records} of {report.records_total} source records)" if shard else "")
        + (f"; {len(report.skipped)} records left out (listed in the store's attrs, skipped_records)" if report.skipped else "")
        + (f"; {unlabelled_beats} beats without a label of the task dropped" if unlabelled_beats else "")
    )
    click.echo(output)
