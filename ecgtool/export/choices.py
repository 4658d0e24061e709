"""The export command's choices and defaults, importable without torch or numpy (``ecgtool export --help``)."""

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
DEFAULT_OPSET = 18  # the lowest opset the torch.export-based ONNX exporter writes: the one most runtimes take
# Parity tolerances (a logit passes within atol + rtol·|logit|); why these values: parity.py.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
