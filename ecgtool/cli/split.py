"""``ecgtool split``: a store → train/val/test stores, patient-wise."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, json_option, option, overwrite_option, seed_option


def _ratios(ctx, param, value):
    """``0.7,0.15,0.15`` → floats; folds_for_ratios checks the values."""
    if not value:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not three comma-separated fractions, e.g. 0.7,0.15,0.15") from None


@click.command(cls=LibraryCommand)
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Directory for train.zarr, val.zarr, test.zarr (created if needed; written and replaced as a whole).")
@option("--num-folds", "k", aliases=("--folds",), type=click.IntRange(3, 100), default=10, show_default=True, help="Number of stratified folds when the store has no official folds.")
@option("--train-folds", "train_folds", aliases=("--train",), default=None, help="Folds for training, e.g. 1-8 (default: all but the last two).")
@option("--val-folds", "val_folds", aliases=("--val",), default=None, help="Folds for validation (default: the second to last).")
@option("--test-folds", "test_folds", aliases=("--test",), default=None, help="Folds for testing (default: the last).")
@click.option("--ratios", callback=_ratios, help="train,val,test fractions instead of fold lists, e.g. 0.7,0.15,0.15.")
@click.option("--ignore-official", is_flag=True, help="Stratify anew even where the store has official folds.")
@seed_option
@overwrite_option
@json_option
def split(store_path, output, k, train_folds, val_folds, test_folds, ratios, ignore_official, seed, overwrite, as_json):
    """Split STORE patient-wise into OUTPUT/{train,val,test}.zarr.

    Uses the store's official folds where it has them (PTB-XL: 1-8 / 9 / 10),
    otherwise assigns patients to stratified folds. No patient is ever in two
    splits. Prints the paths written (JSON with --json) and the class counts
    per split on stderr.
    """
    from rich.table import Table

    from ecgtool.cli.options import emit_json, print_warnings, stderr_console
    from ecgtool.data.split import SPLITS, check_split_dir, folds_for_ratios, parse_folds, plan_split, run_split
    from ecgtool.data.store import open_store
    from ecgtool.errors import EcgtoolError

    store = open_store(store_path)
    fold_lists = None
    given = [t for t in (train_folds, val_folds, test_folds) if t is not None]  # "" too: refused by parse_folds
    if ratios:
        if given:
            raise click.UsageError("give either --ratios or fold lists, not both")
        k, fold_lists = folds_for_ratios(ratios)
        ignore_official = True
    elif given:
        if len(given) < 3:
            raise click.UsageError("give all three of --train-folds, --val-folds and --test-folds")
        fold_lists = {}
        for name, text in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
            try:
                fold_lists[name] = parse_folds(text)
            except EcgtoolError as e:  # a value the flag cannot take: a usage error of that flag
                raise click.BadParameter(str(e), param_hint=f"'--{name}-folds'") from None  # quoted, as click quotes it
    check_split_dir(output, overwrite, (store_path,))  # before the (possibly long) fold assignment
    plan = plan_split(store, fold_lists, k, seed, use_official=not ignore_official)
    paths = run_split(store, output, plan, overwrite)

    table = Table(title=f"{store.path.name}: folds {plan.fold_source}")
    table.add_column("class")
    for s in SPLITS:
        table.add_column(f"{s} ({len(plan.members[s])})", justify="right")
    for j, c in enumerate(store.classes):
        table.add_row(c, *(str(int(store.labels[plan.members[s], j].sum())) for s in SPLITS))
    table.add_row("patients", *(str(len(set(store.patient_id[plan.members[s]]))) for s in SPLITS))
    stderr_console().print(table)
    left = sum(plan.unassigned.values())
    if left:
        why = ", ".join(f"{n} of fold {f}" + (" (no official fold)" if f == 0 else "") for f, n in sorted(plan.unassigned.items()))
        print_warnings(stderr_console(), [f"{left} records are in no split: {why}; name their folds in "
                                          "--train-folds/--val-folds/--test-folds, or --ignore-official to stratify "
                                          "all records anew"])
    if as_json:
        emit_json({
            "splits": {s: {"path": str(paths[s]), "records": int(len(plan.members[s])), "folds": plan.fold_lists[s]} for s in paths},
            "fold_source": plan.fold_source,
            "unassigned_records": {str(f): n for f, n in sorted(plan.unassigned.items())},
        })
    else:
        for s in SPLITS:
            if s in paths:
                click.echo(str(paths[s]))
