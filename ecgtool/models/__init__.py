"""ECG classification models and their registry.

Importing this package imports every family module in it (one file per model
family), so their variants register themselves; a new family is a new file.
Build models with :func:`create_model`; list them with :func:`list_models`;
describe them with :func:`model_info`.
"""

import importlib
import pkgutil

from .registry import UnknownModelError, create_model, list_models, model_info, register_model

_NOT_FAMILIES = {"registry", "layers", "explainable", "attention"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_FAMILIES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["register_model", "create_model", "list_models", "model_info", "UnknownModelError"]
