"""Deployment export: a checkpoint's model as ONNX or TorchScript, with its metadata, parity-checked.

``run.export_checkpoint`` is the one entry point (``ecgtool export``);
``formats`` writes and runs the two formats, ``metadata`` says what an exported
file carries, ``parity`` checks it against the PyTorch model. docs/export.md is
the reference.
"""
