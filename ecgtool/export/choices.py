"""The export command's choices and defaults, importable without torch or numpy (``ecgtool export --help``)."""

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
DEFAULT_OPSET = 18  # the lowest opset the torch.export-based ONNX exporter writes: the one most runtimes take
# The example and parity batch: the exported graph takes any batch size whatever its example's, so a large one buys
# nothing but memory (1024 records of 12 x 5000 samples are 245 MB of input and a few GB of a ResNet's activations;
# 100,000 were killed for memory); parity over a whole store is eval's job.
MAX_BATCH = 1024
# Parity tolerances (a logit passes within atol + rtol·|logit|); why these values: parity.py.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
