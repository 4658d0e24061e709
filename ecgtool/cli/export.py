"""``ecgtool export``: a checkpoint's model as ONNX or TorchScript for deployment, parity-checked."""

from __future__ import annotations

import click

from ecgtool.cli.options import LibraryCommand, json_option, option, output_option, overwrite_option, seed_option
from ecgtool.export.choices import DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL, FORMATS, MAX_BATCH


@click.command(cls=LibraryCommand)
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@output_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: from the suffix: .onnx → ONNX; .pt, .ts → TorchScript).")
@click.option("--opset", type=click.IntRange(DEFAULT_OPSET), default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset: from 18, the torch.export-based exporter's own, up to the highest the installed onnx "
                   "package defines (a usage error names the range); the file is written at this opset or not at all.")
@click.option("--atol", type=click.FloatRange(0), default=DEFAULT_ATOL, show_default=True,
              help="Parity: absolute tolerance on each logit.")
@click.option("--rtol", type=click.FloatRange(0), default=DEFAULT_RTOL, show_default=True,
              help="Parity: tolerance relative to the logit (a logit passes within atol + rtol·|logit|).")
@option("--batch-size", "batch", aliases=("--batch",), type=click.IntRange(2, MAX_BATCH), default=2, show_default=True,
        help="Records in the example batch the model is exported from and in the parity batch (the file takes any batch size).")
@click.option("--check-store", type=click.Path(exists=True, file_okay=False),
              help="Also check parity on this store's first --batch-size records, read as eval reads them.")
@seed_option
@overwrite_option
@json_option
def export(checkpoint, output, fmt, opset, atol, rtol, batch, check_store, seed, overwrite, as_json):
    """Export the model of CHECKPOINT for deployment: ONNX (-o MODEL.onnx, needs the
    `export` extra) or TorchScript (-o MODEL.pt).

    The exported model takes the model input — the store's rows for the checkpoint's
    leads, in order, after its load-time normalisation and input view — as float32
    (batch, channels, samples), with any batch size, and returns logits
    (batch, classes). Its metadata names the input spec, classes, task, activation,
    thresholds and the checkpoint's fingerprint (docs/export.md).

    Before the file is published, it is run (onnxruntime / torch.jit.load) against
    the PyTorch model on seeded random inputs at two batch sizes; a logit differing
    by more than --atol + --rtol·|logit| fails the export and leaves no output.
    """
    from ecgtool.cli.options import emit_json, print_warnings, stderr_console
    from ecgtool.export.run import export_checkpoint

    result = export_checkpoint(checkpoint, output, fmt=fmt, opset=opset, atol=atol, rtol=rtol, batch=batch,
                               seed=seed, check_store=check_store, overwrite=overwrite)
    where = f"{result['format']}" + (f", opset {result['opset']}" if result["opset"] else "")
    print_warnings(stderr_console(), result["warnings"])
    stderr_console().print(
        f"exported {result['model']} to {result['path']} ({where}, {result['size_bytes'] / 1e6:,.1f} MB); parity: max |logit "
        f"difference| {result['max_abs_diff']:.2g} over {len(result['checks'])} checks (tolerance {atol:g} + {rtol:g}·|logit|)",
        highlight=False, markup=False)
    if as_json:
        emit_json(result)
    else:
        click.echo(result["path"])
