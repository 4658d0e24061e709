"""``ecgtool fetch``: bring a dataset to a local directory."""

from __future__ import annotations

from pathlib import Path

import click

from ecgtool.cli.options import LibraryCommand, output_option, overwrite_option


@click.group(invoke_without_command=True)
@click.option("--list", "list_", is_flag=True, help="List the datasets that can be fetched.")
@click.pass_context
def fetch(ctx, list_):
    """Download a dataset, or generate the built-in synthetic one."""
    if list_:
        from ecgtool.data.sources import SOURCES

        click.echo("synthetic\tbuilt in\tgenerated locally\tecgtool's synthetic 12-lead dataset (CPSC2018 classes)")
        for src in SOURCES.values():
            click.echo(f"{src.name}\t{src.licence}\t{src.size}\t{src.title}\n\tcite: {src.citation}")
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        ctx.exit(2)


@fetch.command(cls=LibraryCommand)
@output_option
@click.option("--records", type=click.IntRange(1), default=2000, show_default=True, help="Number of records.")
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
    from ecgtool.errors import writing
    from ecgtool.outputs import atomic_output
    from ecgtool.provenance import make_entry

    lead_names = tuple(x.strip() for x in leads.split(",") if x.strip())
    out = Path(output)
    cfg = syn.SyntheticConfig(
        n_records=records, fs=fs, duration=seconds, leads=lead_names, snr_db=snr, powerline_hz=float(powerline), seed=seed,
    )
    with writing(out), atomic_output(out, overwrite, directory=True) as tmp:  # a full disk: one line naming OUTPUT
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
    def command(output, variant, mirror, connections, retries, dry_run):
        from ecgtool.cli.options import stderr_console
        from ecgtool.cli.progress import ProgressDisplay
        from ecgtool.data.fetching import fetch_source

        console = stderr_console()

        def log(line: str) -> None:  # plain text: a URL or a file name is not rich markup
            console.print(line, markup=False, highlight=False, soft_wrap=True)

        with ProgressDisplay(name, unit="bytes", console=console) as progress:
            files = fetch_source(src, Path(output), variant=variant, mirror=mirror, connections=connections, retries=retries,
                                 dry_run=dry_run, progress=progress, log=log)
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
