"""Augmenters by name: ``augrl.baselines.get("eda", alpha_sr=0.2)``.

The built-in augmenters are listed in :data:`BUILTINS` (name -> ``module:class``) and imported
on first use, so importing :mod:`augrl.baselines` loads no model code and no module registers
anything as a side effect of being imported. Users add theirs with :func:`register`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from augrl.config import build_with_params
from augrl.errors import ConfigError

from .base import Augmenter

Factory = Callable[..., Augmenter]

#: The built-in augmenters: name -> ``module:class``.
BUILTINS: dict[str, str] = {
    "eda": "augrl.baselines.eda:EDA",
    "mask": "augrl.baselines.tang:MaskAugmenter",
    "pos": "augrl.baselines.tang:POSAugmenter",
    "ngram": "augrl.baselines.tang:NgramAugmenter",
    "tang": "augrl.baselines.tang:TangAugmenter",
    "contextual": "augrl.baselines.contextual:ContextualAugmenter",
    "cbert": "augrl.baselines.cbert:CBERTAugmenter",
    "l2a": "augrl.generator:L2AGenerator",
}

_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory | None = None, overwrite: bool = False):
    """Register an augmenter class (or any factory returning one) under ``name``.

    Usable as a decorator (``@register("mine")``) or a call (``register("mine", Mine)``).
    """

    def add(f: Factory) -> Factory:
        if (name in _REGISTRY or name in BUILTINS) and not overwrite and _REGISTRY.get(name) is not f:
            raise ConfigError(f"augmenter {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = f
        return f

    return add if factory is None else add(factory)


def names() -> list[str]:
    """The augmenter names: the built-ins, then those registered by users."""
    return list(BUILTINS) + [n for n in _REGISTRY if n not in BUILTINS]


def _factory(name: str) -> Factory:
    if name not in _REGISTRY and name in BUILTINS:
        module, attr = BUILTINS[name].split(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown augmenter {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def parameters(name: str) -> list[str]:
    """The parameters the augmenter ``name`` takes."""
    return [p for p in inspect.signature(_factory(name)).parameters if p != "self"]


def get(name: str, **params) -> Augmenter:
    """A new augmenter of the given name, built with ``params``.

    Raises:
        ConfigError: unknown name, or a parameter the augmenter does not take.
    """
    factory = _factory(name)
    return build_with_params(f"augmenter {name!r}", factory, params)
