"""Config dataclasses that serialise to JSON/YAML and reject unknown fields by name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from augrl.errors import ConfigError

C = TypeVar("C", bound="ConfigMixin")


class ConfigMixin:
    """Mix into a ``@dataclass`` to get ``to_dict``/``from_dict`` and JSON/YAML files."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
        return cls(**data)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed; ``None`` values are ignored (unset CLI flags)."""
        return self.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    def to_file_dict(self) -> dict[str, Any]:
        """What :meth:`save` writes (composed configs write one mapping per section)."""
        return self.to_dict()

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_file_dict` as YAML (``.yaml``/``.yml``) or JSON."""
        path = Path(path)
        data = _plain(self.to_file_dict())
        text = yaml.safe_dump(data, sort_keys=False) if path.suffix in (".yaml", ".yml") else json.dumps(data, indent=2)
        path.write_text(text)
        return path

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML/JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of field: value")
        return cls.from_dict(data, source=str(path))


def _plain(value):
    """Tuples as lists, so YAML stays plain (``safe_load`` reads it back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_with_params(what: str, factory, params: dict):
    """``factory(**params)`` for a registry entry named ``what`` (e.g. ``"augmenter 'eda'"``), with
    a ConfigError naming the parameters it does not take (and those it does), or a bad value."""
    import inspect

    signature = inspect.signature(factory)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    known = [p for p in signature.parameters if p != "self"]
    unknown = sorted(set(params) - set(known))
    if unknown and not accepts_any:
        raise ConfigError(f"{what} has no parameter(s) {unknown}; it takes {known}")
    try:
        return factory(**params)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what}: bad parameter value ({err})") from None
