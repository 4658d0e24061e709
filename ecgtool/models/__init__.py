"""ECG classification models and their registry.

Importing this package registers every model family (``resnet1d``,
``mobilenet1d``). Build models with :func:`create_model`; list them with
:func:`list_models`; describe them with :func:`model_info`.
"""

from . import inception1d as inception1d  # noqa: E402,F401
from . import mobilenet1d as mobilenet1d  # noqa: E402,F401

# Import the family modules so that their variants register themselves.
from . import resnet1d as resnet1d  # noqa: E402,F401
from . import xresnet1d as xresnet1d  # noqa: E402,F401
from .registry import UnknownModelError, create_model, list_models, model_info, register_model

__all__ = ["register_model", "create_model", "list_models", "model_info", "UnknownModelError"]
