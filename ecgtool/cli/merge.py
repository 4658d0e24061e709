"""``ecgtool merge``: the parts of a ``prep --shard I/N`` run → one ECG store."""

from __future__ import annotations

import click

from ecgtool.cli.options import output_option, overwrite_option


@click.command()
@click.argument("parts", metavar="PART...", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@output_option
@overwrite_option
def merge(parts, output, overwrite):
    """Join the parts written by `prep --shard I/N` into the store OUTPUT.

    Give every part 0 … N-1 of one run exactly once, in any order (a shell glob
    such as parts/part-*.zarr will do): they are joined in shard order, chunk by
    chunk, into the store a single unsharded prep writes — same records, order,
    attributes, and --normalise dataset mean/std recomputed from the parts'
    statistics. Missing, duplicate or mismatched parts are refused. Prints the
    store path.
    """
    from ecgtool.cli.options import stderr_console
    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.data.merge import merge_parts

    console = stderr_console()
    with ProgressDisplay("merge", console=console) as progress:
        report = merge_parts(list(parts), output, overwrite=overwrite, progress=progress)
    console.print(
        f"merged {report.parts} parts: {report.written} records to {output}"
        + (f"; {report.skipped} records left out (listed in the store's attrs, skipped_records)" if report.skipped else "")
        + (f"; {report.unlabelled} beats without a label of the task dropped" if report.unlabelled and report.beats else "")
    )
    click.echo(output)
