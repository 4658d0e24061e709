"""``ecgtool info``: what a store or checkpoint holds."""

from __future__ import annotations

from pathlib import Path

import click

from ecgtool.cli.options import json_option


@click.command()
@click.argument("path", type=click.Path(exists=True))
@json_option
def info(path, as_json):
    """Summarise a store (shape, fs, leads, classes with counts, folds, provenance) or a checkpoint."""
    from ecgtool.cli.options import emit_json, stdout_console

    if Path(path).is_dir():
        from ecgtool.data.store import open_store

        summary = open_store(path).summary()
    else:
        from ecgtool.checkpoint import Checkpoint

        summary = Checkpoint.load(path).summary()
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary, stdout_console())


def _print_summary(s: dict, console) -> None:
    from rich.table import Table

    if s["kind"] == "store":
        console.print(f"[bold]{s['path']}[/]  ECG store v{s['format_version']}")
        console.print(f"records {s['records']}  patients {s['patients']} ({s['patient_ids']} ids)  shape {s['shape']} {s['dtype']}  chunk {s['chunk_records']} records")
        console.print(f"fs {s['fs']} Hz  units {s['units']}  normalisation {s['normalisation']['method']}")
        console.print(f"leads {', '.join(s['leads'])}")
        console.print(f"task {s['task']} ({'multi-label' if s['multi_label'] else 'multi-class'})")
        if s.get("preprocessing"):
            console.print("preprocessing " + describe_preprocessing(s["preprocessing"]), markup=False)
        if s.get("reading"):
            console.print("read with " + ", ".join(f"{k} {v}" for k, v in s["reading"].items()), markup=False)
        console.print("folds " + ", ".join(f"{f}: {n}" for f, n in s["folds"].items()))
        table = Table("class", "records", "description")
        for c in s["classes"]:
            table.add_row(c, str(s["class_counts"][c]), s["class_descriptions"].get(c, ""))
        console.print(table)
    else:
        console.print(f"[bold]{s['path']}[/]  checkpoint v{s['format_version']} ({s['checkpoint_kind']})")
        console.print(f"model {s['model']['name']} {s['model']['kwargs']}")
        inp = s["input"]
        n = len(inp["leads"])
        console.print(f"input {n} lead{'s' if n > 1 else ''} ({', '.join(inp['leads'])}), {inp['samples']} samples at {inp['fs']} Hz, "
                      f"normalisation {inp['normalisation']['method']}, view {inp['view']['name']}")
        if s["checkpoint_kind"] == "encoder":
            console.print(f"task {s['task']}: an encoder without a classifier head (train MODEL STORE --init {s['path']})")
        else:
            console.print(f"task {s['task']} ({'multi-label' if s['multi_label'] else 'multi-class'}), classes {', '.join(s['classes'])}")
        if s["thresholds"]:
            console.print(f"thresholds, {s['thresholds']['source']}: " + ", ".join(f"{v:.3f}" for v in s["thresholds"]["values"]))
        if s["metrics"]:
            console.print("metrics " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in s["metrics"].items()))
        if s.get("init"):
            i = s["init"]
            console.print(f"initialised from {i['kind']} {i['path']} ({i['fingerprint'][:23]}), model {i['model']['name']}")
        if s.get("pretraining"):
            p = s["pretraining"]
            encoder = f" (encoder {p['encoder']['path']})" if p.get("encoder") else ""
            params = ", ".join(f"{k}={v}" for k, v in p.get("hyperparameters", {}).items())
            console.print(f"pretraining {p['method']}{encoder}" + (f": {params}" if params else ""))
            for st in p["stores"]:
                console.print(f"  {st['path']} ({st['fingerprint'][:23]}): dataset {st['dataset']}, {st['records']} records")
        if s.get("distillation"):
            d, t = s["distillation"], s["distillation"]["teacher"]
            params = ", ".join(f"{k}={v}" for k, v in d.get("hyperparameters", {}).items())
            console.print(f"distilled by {d['method']} from teacher {t['path']} ({t['fingerprint'][:23]}), model {t['model']}, "
                          f"leads {', '.join(t['leads'])}" + (f": {params}" if params else ""))
        if s.get("preprocessing"):
            console.print("preprocessing of its training data (predict replays it): " + describe_preprocessing(s["preprocessing"]))
        console.print(f"resumable: {'yes' if s['resumable'] else 'no'}")
    console.print("[bold]provenance[/]")
    for i, p in enumerate(s["provenance"], 1):
        inputs = "; ".join(f"{x['path']} ({x['fingerprint'][:23]})" for x in p.get("inputs", []))
        console.print(f" {i}. {p['time']} {p['tool']} [cyan]{p['command']}[/]" + (f"\n    inputs: {inputs}" if inputs else ""))


def describe_preprocessing(p: dict) -> str:
    """A store's or checkpoint's ``preprocessing`` record in a line."""
    edges = "-".join("…" if e is None else f"{e:g}" for e in (p.get("lowcut"), p.get("highcut")))
    length = f"{p['seconds']:g} s" if p.get("seconds") else "the longest record's length"
    parts = [f"{p.get('fs', 0):g} Hz", f"band-pass {edges} Hz" if p.get("lowcut") or p.get("highcut") else "no band-pass",
             f"notch {p['notch']:g} Hz" if p.get("notch") else "no notch",
             f"{length} ({p.get('samples')} samples; crop {p.get('crop')}, zero-pad)",
             f"normalisation {p.get('normalisation')}"]
    if p.get("dtype"):
        parts.append(f"{p['dtype']} rows")
    if p.get("beat_window"):
        parts.append(f"beat windows {p['beat_window']} s")
    return ", ".join(parts)

