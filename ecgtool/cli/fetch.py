"""``ecgtool fetch``: bring a dataset to a local directory."""

from __future__ import annotations

from pathlib import Path

import click

from ecgtool.cli.options import LibraryCommand, json_option, option, output_option, overwrite_option


SYNTHETIC = {"name": "synthetic", "title": "ecgtool's synthetic 12-lead dataset (CPSC2018 classes)", "licence": "built in",
             "size": "generated locally", "access": "generated locally: no download", "variants": [], "default_variant": None,
             "citation": None}


def _datasets() -> list[dict]:
    """What `fetch --list` shows: every dataset that can be fetched, the synthetic one first."""
    from ecgtool.data.sources import SOURCES

    return [SYNTHETIC] + [{"name": s.name, "title": s.title, "licence": s.licence, "size": s.size, "access": s.access,
                           "variants": list(s.include), "default_variant": s.default_variant, "citation": s.citation}
                          for s in SOURCES.values()]


def _print_datasets(rows: list[dict]) -> None:
    from rich.table import Column, Table

    from ecgtool.cli.options import stdout_console

    table = Table(Column("dataset", no_wrap=True), Column("title and size", ratio=3), Column("licence", ratio=1),
                  Column("--variant", ratio=1), expand=True, title="datasets: ecgtool fetch NAME -o DIR",
                  caption="citations: ecgtool fetch NAME --help (or --json); default variant in bold")
    for r in rows:
        variants = ", ".join(f"[bold]{v}[/]" if v == r["default_variant"] else v for v in r["variants"]) or "—"
        table.add_row(r["name"], f"{r['title']}\n[dim]{r['size']}[/]", r["licence"], variants)
    stdout_console().print(table)


@click.group(invoke_without_command=True)
@click.option("--list", "list_", is_flag=True, help="List the datasets that can be fetched (a table, or JSON with --json).")
@json_option
@click.pass_context
def fetch(ctx, list_, as_json):
    """Download a dataset, or generate the built-in synthetic one."""
    if as_json and not list_:
        raise click.UsageError("--json goes with --list (a dataset's command prints its output directory)")
    if list_:
        from ecgtool.cli.options import emit_json

        emit_json(_datasets()) if as_json else _print_datasets(_datasets())
        ctx.exit(0)
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        ctx.exit(2)


@fetch.command(cls=LibraryCommand)
@output_option
@option("--num-records", "records", aliases=("--records",), type=click.IntRange(1), default=2000, show_default=True, help="Number of records.")
@click.option("--fs", type=click.IntRange(50), default=500, show_default=True, help="Sampling rate in Hz.")
@click.option("--seconds", type=click.FloatRange(2.0), default=10.0, show_default=True, help="Record duration.")
@click.option("--leads", default="I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6", show_default=True, help="Comma-separated leads to write.")
@click.option("--snr", type=float, default=20.0, show_default=True, help="Median signal-to-noise ratio in dB (varies per record).")
@click.option("--powerline", type=click.Choice(["50", "60"]), default="50", show_default=True, help="Powerline frequency in Hz.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed: the same seed writes the same dataset.")
@overwrite_option
def synthetic(output, records, fs, seconds, leads, snr, powerline, seed, overwrite):
    """Generate the built-in synthetic 12-lead dataset (CPSC2018 classes) as WFDB files.

    Physiological P-QRS-T morphology from a cardiac dipole model, heart-rate
    variability, noise, and nine pathologies as multi-label targets; several
    records per patient. Prints the output directory.
    """
    from dataclasses import asdict

    from ecgtool.cli.progress import ProgressDisplay
    from ecgtool.data import synthetic as syn
    from ecgtool.data.readers.base import write_fetch_provenance
    from ecgtool.outputs import atomic_output
    from ecgtool.provenance import make_entry

    lead_names = tuple(x.strip() for x in leads.split(",") if x.strip())
    out = Path(output)
    cfg = syn.SyntheticConfig(
        n_records=records, fs=fs, duration=seconds, leads=lead_names, snr_db=snr, powerline_hz=float(powerline), seed=seed,
    )
    with atomic_output(out, overwrite, directory=True) as tmp:
        with ProgressDisplay("synthetic") as progress:
            syn.write_dataset(tmp, cfg, progress=lambda done: progress(done, records))
        write_fetch_provenance(tmp, make_entry("fetch", dataset="synthetic", config=asdict(cfg)))
    click.echo(str(out))


def _source_command(name: str) -> click.Command:
    """``ecgtool fetch NAME``: verified, resumable download of one registered dataset."""
    from ecgtool.data.sources import SOURCES  # a plain-Python table: cheap to import for --help

    src = SOURCES[name]

    @click.command(name=name, help=f"{src.title}.\n\n{src.description}. Licence: {src.licence}. Access: {src.access}.\n\nCite: {src.citation}")
    @output_option
    @click.option("--variant", type=click.Choice(list(src.include)), default=src.default_variant, show_default=True,
                  help="Which part of the dataset to download.")
    @click.option("--mirror", envvar="ECGTOOL_MIRROR", metavar="URL",
                  help=f"Base URL of a local or institutional mirror (replaces {src.base_url}); also $ECGTOOL_MIRROR.")
    @click.option("--connections", type=click.IntRange(1, 32), default=4, show_default=True, help="Parallel downloads.")
    @click.option("--retries", type=click.IntRange(0), default=5, show_default=True, help="Retries per file after a dropped connection.")
    @click.option("--dry-run", is_flag=True, help="List the files that would be downloaded, and stop.")
    @click.option("--overwrite", is_flag=True,
                  help="Replace existing files in the output directory that fetch did not download there (or that changed since).")
    def command(output, variant, mirror, connections, retries, dry_run, overwrite):
        from ecgtool.cli.options import stderr_console
        from ecgtool.cli.progress import ProgressDisplay
        from ecgtool.data.fetching import fetch_source

        console = stderr_console()

        def log(line: str) -> None:  # plain text: a URL or a file name is not rich markup
            console.print(line, markup=False, highlight=False, soft_wrap=True)

        with ProgressDisplay(name, unit="bytes", console=console) as progress:
            files = fetch_source(src, Path(output), variant=variant, mirror=mirror, connections=connections, retries=retries,
                                 dry_run=dry_run, overwrite=overwrite, progress=progress, log=log)
        if dry_run:
            for f in files:
                click.echo(f"{f.path}\t{f.sha256 or '-'}\t{f.url}")
        else:
            click.echo(output)

    return command


def _register_sources() -> None:
    from ecgtool.data.sources import SOURCES

    for name in SOURCES:
        fetch.add_command(_source_command(name))


_register_sources()
