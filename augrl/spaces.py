"""Search spaces of a hyperparameter search (``augrl tune``), and how a sample becomes a bench method.

A space is a YAML file: shipped presets live in ``augrl/configs/spaces/`` (``tune-kd``,
``tune-eda``, ``tune-tang``, ``tune-l2a``, ``tune-rl``); ``augrl tune --space FILE`` takes a
file of your own, which may start from a preset (``base: tune-eda``) and change or drop
(``null``) some of its parameters::

    base: tune-eda               # optional: a preset (or another file) to start from
    description: EDA with a fixed budget
    methods: [kd+eda]            # methods this space is the default for (presets only need it)
    params:
      augmenter.alpha_sr: {loguniform: [0.02, 0.5]}
      variants: 4                # a plain value: fixed, not searched
      config.temperature: null   # drop the preset's parameter

**Distributions**: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` (lo > 0), ``{int: [lo,
hi]}`` (both ends included), ``{choice: [a, b, ...]}``, or a plain value.

**Parameter names** say where a sampled value goes; every name is checked against the method
before anything runs (:func:`check_space`):

=========================  ====================================================================
``variants``               candidates per target train example (:class:`BenchSettings.variants`)
``augmenter.<setting>``    the method's augmenter (EDA's ``alpha_sr``, Tang's ``p_mask``, L2A's
                           ``alpha``, ``temperature``, ``top_k``...; ``augrl augment`` lists them)
``options.<name>``         the method's own options (L2A: ``episodes``, ``generator_every``...;
``options.<name>.<key>``   SB3 rows: ``learning_rate``, ``gamma``, ``ent_coef``...); one level into
                           a mapping option: ``options.selector.lr``, ``options.selector.gamma``
``env.<field>``            the AugmentKD environment of methods that act in it (L2A, SB3 rows):
                           ``batch_size`` (B), ``reward`` (``metric`` or ``loss``),
                           ``source_fraction`` (the source/target mix)...
``config.<field>``         the run config: ``temperature``, ``student_layers``...
``config.student_train.<f>``  the student's training: ``lr``, ``batch_size``, ``epochs``...
``config.objective.<loss>``   a KD loss weight, over the method's default objective
=========================  ====================================================================

:func:`apply_sample` maps one sample onto the method with :func:`augrl.bench.derive`
(``register_it=False``) and onto the bench settings, so a trial is an ordinary bench run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from augrl.errors import ConfigError

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
NAMESPACES = ("variants", "augmenter", "options", "env", "config")
#: fields of the environment's own sections (pool, world, env) that ``env.*`` does not set: the
#: augmenter and its settings come from the method and ``augmenter.*``, ``variants`` has its own
#: name, and a saved teacher's folder is not a hyperparameter (the run's sections follow ``config.*``)
ENV_FIXED = ("augmenter", "augmenter_params", "variants", "teacher_dir")
#: the default space of methods no preset names
FALLBACK = "tune-kd"


@dataclass
class SearchSpace:
    """A search space: parameter name -> distribution spec (or a fixed value).

    Attributes:
        name: the preset's name or the file's path.
        params: ``{"augmenter.alpha_sr": {"loguniform": [0.02, 0.5]}, "variants": 4, ...}``.
        methods: methods this space is the default for.
        description: what it searches.
    """

    name: str
    params: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    description: str = ""

    def searched(self) -> dict:
        """The parameters that are sampled (not fixed values)."""
        return {k: v for k, v in self.params.items() if isinstance(v, dict)}

    def fixed(self) -> dict:
        """The parameters given as plain values."""
        return {k: v for k, v in self.params.items() if not isinstance(v, dict)}


def _shipped():
    """The folder of the shipped spaces (package data, apart from the bench presets)."""
    return resources.files("augrl.configs") / "spaces"


def preset_names() -> list[str]:
    """The shipped spaces (``augrl/configs/spaces/*.yaml``)."""
    return sorted(p.name[:-5] for p in _shipped().iterdir() if p.name.endswith(".yaml"))


def _read(name: str) -> tuple[dict, str]:
    if Path(name).suffix in (".yaml", ".yml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"search space {name}: file not found")
        text, source = path.read_text(), str(path)
    else:
        entry = _shipped() / f"{name}.yaml"
        if not entry.is_file():
            raise ConfigError(f"unknown search space {name!r}; shipped: {', '.join(preset_names())} "
                              "(or the path of a YAML file)")
        text, source = entry.read_text(), name
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"search space {source}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"search space {source}: expected a mapping with 'params:' (see augrl/spaces.py)")
    unknown = sorted(set(data) - {"base", "description", "methods", "params"})
    if unknown:
        raise ConfigError(f"search space {source}: unknown key(s) {unknown}; use base, description, methods, params")
    if not isinstance(data.get("params") or {}, dict):
        raise ConfigError(f"search space {source}: 'params' must map parameter names to distributions")
    return data, source


def load_space(name: str, _seen: tuple = ()) -> SearchSpace:
    """A shipped space by name (``tune-eda``) or a YAML file, with its ``base`` applied."""
    data, source = _read(name)
    if source in _seen:
        raise ConfigError(f"search space {source}: 'base' chain loops back to itself ({' -> '.join(_seen)})")
    params: dict = {}
    methods = list(data.get("methods") or [])
    description = data.get("description") or ""
    if data.get("base"):
        parent = load_space(str(data["base"]), _seen + (source,))
        params, methods = dict(parent.params), methods or parent.methods
        description = description or parent.description
    for key, value in (data.get("params") or {}).items():
        if value is None:
            params.pop(key, None)
        else:
            params[str(key)] = value
    for key, value in params.items():
        _check_distribution(source, key, value)
    return SearchSpace(source, params, methods, description)


def default_space(method: str) -> str:
    """The shipped space whose ``methods`` list ``method`` (``tune-kd`` when none does)."""
    for name in preset_names():
        if method in load_space(name).methods:
            return name
    return FALLBACK


def _check_distribution(source: str, key: str, spec) -> None:
    if not isinstance(spec, dict):
        return
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"search space {source}: {key}: write one of {{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
                          f"{{int: [lo, hi]}}, {{choice: [a, b, ...]}} or a plain value; got {spec!r}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"search space {source}: {key}: {kind} needs a list, e.g. {{{kind}: [1, 2]}}")
    if kind == "choice":
        return
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"search space {source}: {key}: {kind} needs [lo, hi] numbers, got {args!r}")
    lo, hi = args
    if not lo < hi and not (kind == "int" and lo == hi):
        raise ConfigError(f"search space {source}: {key}: {kind} needs lo < hi, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"search space {source}: {key}: loguniform needs lo > 0, got {args!r}; use uniform")
    if kind == "int" and not all(float(a).is_integer() for a in args):
        raise ConfigError(f"search space {source}: {key}: int needs whole numbers, got {args!r}")


def check_space(space: SearchSpace, method, base) -> None:
    """Every parameter of ``space`` names something ``method`` (a :class:`augrl.bench.BenchMethod`)
    has, run on ``base`` (a :class:`augrl.pipelines.RunConfig`); ConfigError naming the file,
    the key and what it could be otherwise. Also applies a sample of each parameter's bounds,
    so values the method rejects fail here rather than in the trials."""
    for key in space.params:
        _target(space.name, key, method, base)
    for pick in (0, -1):  # the low and high ends (first and last choice) of every parameter together
        apply_sample(method, base, None, {k: _end(v, pick) for k, v in space.params.items()}, source=space.name)


def _end(spec, pick: int):
    if not isinstance(spec, dict):
        return spec
    kind, args = next(iter(spec.items()))
    return int(args[pick]) if kind == "int" else args[pick]


def _target(source: str, key: str, method, base) -> tuple[str, ...]:
    """Where ``key`` goes: ``("variants",)``, ``("augmenter", name)``, ``("options", name[, sub])``,
    ``("env", field)``, ``("config", field[, sub])``."""
    from augrl import baselines
    from augrl.envs import AugmentKDConfig
    from augrl.bench import ENV_OPTION, SHARED_FIELDS
    from augrl.kd.losses import validate_objective
    from augrl.pipelines import RunConfig
    from augrl.sections import EnvConfig, PoolConfig, WorldConfig
    from augrl.training import TrainConfig

    where = f"search space {source}: {key}"
    parts = key.split(".")
    head = parts[0]
    if head not in NAMESPACES:
        raise ConfigError(f"{where}: unknown parameter; names start with one of {', '.join(NAMESPACES)} "
                          "(e.g. augmenter.alpha_sr, options.learning_rate, env.batch_size, config.temperature)")
    if head == "variants":
        if len(parts) != 1:
            raise ConfigError(f"{where}: write plain 'variants' (candidates per target train example)")
        return ("variants",)
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: write {head}.<name>")
    if head == "augmenter":
        if not method.augmenter:
            raise ConfigError(f"{where}: method {method.name!r} uses no augmenter; drop the key or pick a method "
                              "with one (kd+eda, kd+tang, kd+l2a...)")
        accepted = [p for p in baselines.parameters(method.augmenter) if p not in ("seed", "progress", "device")]
        if len(parts) != 2 or parts[1] not in accepted:
            raise ConfigError(f"{where}: augmenter {method.augmenter!r} (method {method.name!r}) has no setting "
                              f"{'.'.join(parts[1:])!r}; it takes {accepted}")
        return ("augmenter", parts[1])
    if head == "options":
        options = {k: v for k, v in method.options.items() if k != ENV_OPTION}
        if parts[1] not in options:
            raise ConfigError(f"{where}: method {method.name!r} has no option {parts[1]!r}; its options: "
                              f"{sorted(options) or 'none'}")
        if len(parts) == 3 and parts[1] == "selector":
            from augrl.selection.reinforce import SelectorConfig

            known = [f.name for f in dataclasses.fields(SelectorConfig)]
            if parts[2] not in known:
                raise ConfigError(f"{where}: the selector has no setting {parts[2]!r}; it takes {known}")
        elif len(parts) != 2 and not (len(parts) == 3 and isinstance(options[parts[1]], dict)):
            raise ConfigError(f"{where}: option {parts[1]!r} is not a mapping; write options.{parts[1]}")
        return ("options", *parts[1:])
    if head == "env":
        if not method.options:
            raise ConfigError(f"{where}: method {method.name!r} does not act in the AugmentKD environment; env.* "
                              "parameters are for kd+l2a* and kd+ppo/kd+a2c/kd+dqn")
        own = AugmentKDConfig.fields_of(PoolConfig, WorldConfig, EnvConfig)
        known = [f.name for f in dataclasses.fields(AugmentKDConfig) if f.name in own and f.name not in ENV_FIXED]
        if len(parts) != 2 or parts[1] not in known:
            raise ConfigError(f"{where}: the environment has no tunable field {'.'.join(parts[1:])!r}; it takes {known}")
        return ("env", parts[1])
    # config
    known = [f.name for f in dataclasses.fields(RunConfig) if f.name not in SHARED_FIELDS]
    if parts[1] not in known:
        raise ConfigError(f"{where}: RunConfig has no field {parts[1]!r} a search may set; it takes {known} "
                          f"({', '.join(SHARED_FIELDS)} are fixed for the search: use the flags)")
    if parts[1] == "student_train":
        train = [f.name for f in dataclasses.fields(TrainConfig)]
        if len(parts) != 3 or parts[2] not in train:
            raise ConfigError(f"{where}: write config.student_train.<field>, one of {train}")
    elif parts[1] == "objective":
        if len(parts) != 3:
            raise ConfigError(f"{where}: write config.objective.<loss>, e.g. config.objective.dark_ce")
        try:
            validate_objective({parts[2]: 1.0})
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    elif len(parts) != 2:
        raise ConfigError(f"{where}: {parts[1]!r} is not a mapping; write config.{parts[1]}")
    return ("config", *parts[1:])


def apply_sample(method, base, settings, sample: dict, source: str = "sample"):
    """``method`` and ``settings`` with one sample's values set.

    Args:
        method: the :class:`augrl.bench.BenchMethod` searched.
        base: the search's :class:`augrl.pipelines.RunConfig` (before the method's config).
        settings: the :class:`augrl.bench.BenchSettings` of the trial (None: only check).
        sample: parameter name -> value.
        source: where the names come from (for errors).

    Returns:
        ``(method, settings)``: the method derived with :func:`augrl.bench.derive` under its own
        name (unregistered), and the settings with ``variants`` changed if sampled.
    """
    from augrl import bench
    from augrl.bench import ENV_OPTION

    run_cfg = method.run_config(base)
    config: dict = {}
    augmenter: dict = {}
    options: dict = {}
    variants = None
    for key, value in sample.items():
        target = _target(source, key, method, base)
        if target[0] == "variants":
            variants = int(value)
        elif target[0] == "augmenter":
            augmenter[target[1]] = value
        elif target[0] == "env":
            options.setdefault(ENV_OPTION, dict(method.options.get(ENV_OPTION, {})))[target[1]] = value
        elif target[0] == "options":
            if len(target) == 3:
                options.setdefault(target[1], dict(method.options.get(target[1]) or {}))[target[2]] = value
            else:
                options[target[1]] = value
        elif len(target) == 3 and target[1] == "objective":
            config.setdefault("objective", dict(run_cfg.kd_objective()))[target[2]] = float(value)
        elif len(target) == 3:
            config.setdefault(target[1], getattr(run_cfg, target[1]).to_dict())[target[2]] = value
        else:
            config[target[1]] = value
    try:
        derived = bench.derive(method.name, method, description=method.description, config=config,
                               augmenter_params=augmenter, options=options, register_it=False)
        if config:
            derived.run_config(base)  # RunConfig/TrainConfig reject bad values here
        if "objective" in config:
            from augrl.kd.losses import validate_objective

            validate_objective(config["objective"])
        if ENV_OPTION in options:
            from augrl.envs import AugmentKDConfig

            AugmentKDConfig.from_run_config(derived.run_config(base), **options[ENV_OPTION])
        if settings is not None and variants is not None:
            settings = settings.replace(variants=variants)
        elif settings is None and variants is not None and variants < 1:
            raise ConfigError(f"variants must be >= 1, got {variants}")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"search space {source}: a sample does not fit method {method.name!r}: {err}") from None
    return derived, settings


def to_jsonable(value):
    """A sampled value as plain JSON (numpy scalars from Optuna/Ray become Python numbers)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
