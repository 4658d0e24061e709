"""ecgtool: a command-line toolkit for deep-learning ECG classification research."""

__version__ = "0.1.0"
