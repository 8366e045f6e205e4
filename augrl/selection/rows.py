"""Selection rows of the benchmark: every selector at one budget over one pool, then KD.

Each row takes the seed's selection pool (:meth:`augrl.methods.BenchRun.selection_pool`: the
method augmenter's candidates, or a *planted* or *budgeted* pool set by ``options.pool``), keeps
``budget`` of it, and distils a fresh student on the target set plus the kept candidates, exactly
as ``kd+<augmenter>`` distils on all of them:

====================  =========================================================================
``kd+random``         a seeded random subset (the control every selector is tested against)
``kd+oracle``         the clean candidates of a planted pool (planted ones dropped); planted only
``kd+confidence``     top by the teacher's probability of the inherited label
``kd+kl``             top by KL(teacher || student) at a warm-start student (most to learn)
``kd+valsim``         top by the largest cosine similarity to the validation set (teacher space)
``kd+influence``      top by one-step look-ahead influence on the validation divergence (Ren et
                      al. 2018), at a warm-start student, all trainable parameters
``kd+reinforce``      the REINFORCE selector (:mod:`augrl.selection.reinforce`) trained in
                      ``augrl/AugmentKD-v0`` on the paired reward, then its top-scored share
``kd+reinforce-       the same selector on the paired reward with a trajectory control
trajectory``          (``paired_control="trajectory"``) and return-to-go (``gamma = 1``)
``kd+thompson``       a linear Thompson-sampling selector (:mod:`augrl.selection.thompson`) fit
                      to the same reward: the running gap regressed on the running
                      kept-minus-control feature contrast
``kd+rule-search``    successive halving over one-feature keep rules (:mod:`augrl.selection.
                      rule_search`), each judged by whole episodes of the same reward
``kd+rule-search-     the same search with common random numbers: both signs of each feature
crn``                 are arms, every arm of a round plays the same episodes (38 arms, then
                      the best fifth, one episode a round: 48 episodes for 19 features)
====================  =========================================================================

``options.budget``: the kept share of the pool; None: ``1 - planted`` for a planted pool (the
oracle's size, so every row keeps as many as the oracle), ``320 / size`` for a budgeted one, 0.5
otherwise. Students that rank with a student (``kl``, ``influence``) use the environment's
warm-start snapshot nearest half of its schedule.

On a planted pool every row records how well its scores find the planted candidates:
``selection.detection_auc`` (:func:`augrl.metrics.detection_auc`), ``selection.planted_in_lowest_third``
(:func:`augrl.metrics.planted_in_lowest`) and how many planted candidates it kept; learned
selectors (``kd+reinforce``, ``kd+thompson``, ``kd+rule-search`` and the SB3 rows of :mod:`augrl.policies`) also record
``policy_training.detection_curve``, the AUC of their scores after every training episode
against the environment steps taken (:func:`detection_curve`).
"""

from __future__ import annotations

import copy
import json
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from augrl.runtime import stage

#: the budgeted benchmark's kept candidates (the augmentation budget of RT at 40 shots: 4 x 80)
BUDGETED_KEEP = 320


def selection_budget(ctx, pool) -> float:
    """The row's kept share of ``pool`` (module docstring)."""
    from augrl.errors import ConfigError

    budget = ctx.method.options.get("budget")
    if budget is None:
        planted = getattr(pool, "planted", None)
        pool_options = ctx.method.options.get("pool") or {}
        if planted is not None and planted.any():
            budget = 1.0 - float(planted.mean())
        elif "budgeted" in pool_options:
            budget = min(1.0, BUDGETED_KEEP / len(pool))
        else:
            budget = 0.5
    budget = float(budget)
    if not 0.0 < budget <= 1.0:
        raise ConfigError(f"method {ctx.method.name!r}: options.budget must be a fraction in (0, 1], got {budget}")
    return budget


def selection_world(ctx, pool, budget: float, **env_changes):
    """The environment's world over ``pool`` for this seed (teacher outputs, features, warm-start
    snapshots), built once and shared by every selection row whose world-deciding sections
    agree (:meth:`~augrl.envs.AugmentKDConfig.world_fields`; the decision process is applied on
    the shared world).
    Its snapshot schedule must not outrun the final student (target rows plus ``budget`` of the
    pool, the bench's epochs and batch): checked before anything trains."""
    from augrl.envs import build_world
    from augrl.selection.rankers import budget_size
    from augrl.training import total_steps

    env_cfg = ctx.env_config(augmenter=ctx.method.augmenter or "eda", pool_size=len(pool),
                             batch_size=min(32, len(pool)), **env_changes)
    if ctx.max_steps is None:
        size = len(ctx.data.train) + budget_size(len(pool), budget)
        train = ctx.cfg.student_train
        env_cfg.check_snapshots(total_steps(size, train), f"the final student ({train.epochs} epochs of batch "
                                                         f"{train.batch_size} over {size} examples)")
    settings, world_fields = env_cfg.to_dict(), env_cfg.world_fields()
    key = json.dumps(["world", id(pool), {k: settings[k] for k in sorted(world_fields)}], sort_keys=True, default=str)
    world = ctx.shared.memo(key, lambda: build_world(env_cfg, progress=False, data=ctx.data, teacher=ctx.teacher(),
                                                     pool=pool))
    # rows that differ only in the decision process (episode length, decision...) share the
    # world's teacher outputs and snapshots
    return world.with_settings(**{k: v for k, v in settings.items() if k not in world_fields})


def warm_student(world):
    """A student at the warm-start snapshot nearest half of the schedule (the initial student
    without snapshots), in eval mode."""
    student = world.new_student()
    snapshots = world.snapshots()
    if snapshots:
        middle = max(s for s, _ in snapshots) / 2
        step, state = min(snapshots, key=lambda item: abs(item[0] - middle))
        distiller = world.new_distiller(student)
        distiller.load_training_state(state)
    return student.eval()


def planted_flags(pool) -> np.ndarray | None:
    """The pool's planted flags (N,) when detection can be measured on it: some rows planted,
    not all; else None."""
    planted = getattr(pool, "planted", None)
    if planted is None or not planted.any() or planted.all():
        return None
    return planted


def detection(pool, scores: np.ndarray, kept: list[int]) -> dict:
    """How a row's keep-scores find a planted pool's planted rows (empty for a clean pool)."""
    from augrl.metrics import detection_auc, planted_in_lowest

    planted = planted_flags(pool)
    if planted is None:
        return {}
    return {"detection_auc": detection_auc(scores, planted), "planted_in_lowest_third": planted_in_lowest(scores, planted),
            "planted_kept": int(planted[kept].sum()), "planted": int(planted.sum())}


def detection_curve(pool, checkpoints: list[tuple[int, dict]], module, score) -> list[dict]:
    """Detection AUC of a learned selector over its training: for each ``(env_steps, state)``
    checkpoint, ``module`` (the selector's network) is loaded with ``state`` and the AUC of
    ``score()`` ((N,) pool scores) against the planted flags is taken; the module's own
    weights are restored after. Empty for a pool without planted rows."""
    from augrl.metrics import detection_auc

    planted = planted_flags(pool)
    if planted is None:
        return []
    final = copy.deepcopy(module.state_dict())
    curve = []
    try:
        for steps, state in checkpoints:
            module.load_state_dict(state)
            curve.append({"env_steps": int(steps), "detection_auc": round(float(detection_auc(score(), planted)), 6)})
    finally:
        module.load_state_dict(final)
    return curve


def kept_by_provenance(pool, kept: list[int]) -> dict[str, int]:
    """How many kept rows each provenance of the pool gave (``"eda"``, ``"source"``,
    ``"other_domain"``, ``"planted"``...; every provenance of the pool listed, zeros included)."""
    counts = dict.fromkeys(pool.provenance, 0)
    for i in kept:
        counts[pool.provenance[int(i)]] += 1
    return counts


def selection_record(pool, kept: list[int], scores: np.ndarray, budget: float, **timing) -> dict:
    """A selection row's ``selection`` record: sizes, what kinds of candidate were kept,
    detection (planted pools), and ``timing`` (e.g. ``seconds``)."""
    return {"kept": len(kept), "pool": len(pool), "budget": budget, "kept_fraction": len(kept) / len(pool),
            **timing, "kept_by_provenance": kept_by_provenance(pool, kept), **detection(pool, scores, kept)}


def finish(ctx, pool, kept: list[int], scores: np.ndarray, budget: float, seconds: float, **extra):
    """Distil on target + kept and record the selection (:func:`selection_record`, with the
    selector's time)."""
    outcome = ctx.distil(pool, keep=kept)
    outcome.extra.update(selection=selection_record(pool, kept, scores, budget, seconds=round(seconds, 2)), **extra)
    return outcome


def ranker_selection(ctx) -> tuple[object, list[int], np.ndarray, float, float]:
    """What a ranker row (``options.ranker``) keeps of its pool, before any final student:
    ``(pool, kept, scores, budget, seconds)``."""
    from augrl.selection.rankers import get_ranker, select_scores

    pool = ctx.selection_pool()
    budget = selection_budget(ctx, pool)
    start = time.perf_counter()
    name = ctx.method.options["ranker"]
    params = dict(ctx.method.options.get("ranker_params") or {})
    if name == "random":
        params.setdefault("seed", ctx.cfg.seed)
    ranker = get_ranker(name, **params)
    with stage("selection"):
        world = selection_world(ctx, pool, budget)
        student = warm_student(world) if name in ("teacher_student_kl", "influence") else None
        kept, scores = select_scores(world, ranker, budget, student=student, seed=ctx.cfg.seed)
    return pool, kept, scores, budget, time.perf_counter() - start


def _ranker_row(ctx):
    return finish(ctx, *ranker_selection(ctx))


def _oracle_row(ctx):
    from augrl.errors import ConfigError
    from augrl.selection.rankers import budget_size, top_k

    pool = ctx.selection_pool()
    planted = getattr(pool, "planted", None)
    if planted is None or not planted.any():
        raise ConfigError(f"method {ctx.method.name!r} keeps the clean candidates of a planted pool, but this pool has "
                          "no planted rows; set options.pool.planted (e.g. the `planted` preset)")
    budget = selection_budget(ctx, pool)
    scores = np.where(planted, -1.0, 1.0)
    kept = top_k(scores, budget_size(len(pool), budget), ctx.cfg.seed)
    return finish(ctx, pool, kept, scores, budget, 0.0)


def learners() -> dict:
    """``options.learner`` of a learned-selector row -> (selector class, its config class)."""
    from augrl.selection.reinforce import ReinforceSelector, SelectorConfig
    from augrl.selection.rule_search import RuleSearchConfig, RuleSearchSelector
    from augrl.selection.thompson import ThompsonConfig, ThompsonSelector

    return {"reinforce": (ReinforceSelector, SelectorConfig), "thompson": (ThompsonSelector, ThompsonConfig),
            "rule_search": (RuleSearchSelector, RuleSearchConfig)}


def _learned_row(ctx):
    """A learned selector (``options.learner``, :func:`learners`) trained for ``options.episodes``
    episodes of the env over the pool, then its top-scored share."""
    from augrl.envs import AugmentKDEnv
    from augrl.errors import ConfigError

    pool = ctx.selection_pool()
    budget = selection_budget(ctx, pool)
    learner, known = ctx.method.options.get("learner", "reinforce"), learners()
    if learner not in known:
        raise ConfigError(f"method {ctx.method.name!r}: options.learner must be one of {sorted(known)}, got {learner!r}")
    selector_class, config_class = known[learner]
    start = time.perf_counter()
    with stage("selection"):
        world = selection_world(ctx, pool, budget)
        env = AugmentKDEnv(world=world)
        settings = {"seed": ctx.cfg.seed, **(ctx.method.options.get("selector") or {}), "budget": budget}
        selector = selector_class.for_env(env, config_class.from_dict(settings, source=f"method {ctx.method.name}"))
        if not selector.reads_observations:  # same rewards, without the passes that build observations
            env = AugmentKDEnv(world=world.with_settings(observations=False))
        episodes = int(ctx.method.options.get("episodes", 30))
        if ctx.max_steps is not None:
            episodes = min(episodes, max(1, ctx.max_steps // env.steps_per_episode))
        checkpoints: list[tuple[int, dict]] = []  # the scoring network after every episode
        bar = tqdm(total=episodes, desc="selector episodes", unit="ep", disable=not ctx.progress, file=sys.stderr,
                   leave=False)

        def after_episode(stats: dict) -> None:
            checkpoints.append(((len(checkpoints) + 1) * env.steps_per_episode,
                                copy.deepcopy(selector.policy.state_dict())))
            bar.update(1)
            bar.set_postfix(ret=f"{stats['return']:+.4f}", updates=selector.updates)

        history = selector.learn(env, episodes, seed=ctx.cfg.seed * 10_000, callback=after_episode)
        bar.close()
        env.reset(seed=ctx.cfg.seed)
        views = env.pool_views()
        scores = selector.pool_scores(views)
        kept = selector.select(views)
    seconds = time.perf_counter() - start
    curve = detection_curve(pool, checkpoints, selector.policy, lambda: selector.pool_scores(views))
    return finish(ctx, pool, kept, scores, budget, seconds,
                  # the episodes actually played: a search may stop before its cap
                  policy_training={"env_steps": len(history) * env.steps_per_episode, "updates": selector.updates,
                                   "seconds": round(seconds, 2), "env_precision": env.precision,
                                   "episodes": history, "detection_curve": curve,
                                   **selector.training_record()})


RANKER_ROWS = {
    "kd+random": ("random", {}, "a random subset of the pool at the row's budget (the selectors' control)"),
    "kd+confidence": ("teacher_confidence", {}, "top candidates by the teacher's probability of their label"),
    "kd+kl": ("teacher_student_kl", {"prefer": "high"}, "top candidates by KL(teacher || warm student)"),
    "kd+valsim": ("val_similarity", {}, "top candidates by cosine similarity to the validation set"),
    "kd+influence": ("influence", {"scope": "all"}, "top candidates by one-step look-ahead influence (Ren et al. 2018)"),
}


def register_methods() -> None:
    """Register the selection rows in :mod:`augrl.methods` (called once, by its first lookup)."""
    from augrl import methods

    common = {"budget": None, "pool": {}}
    for name, (ranker, params, description) in RANKER_ROWS.items():
        methods.register(name, _ranker_row, augmenter="eda", description=description,
                         options={**common, "ranker": ranker, "ranker_params": params})
    methods.register("kd+oracle", _oracle_row, augmenter="eda", options=dict(common),
                     description="the clean candidates of a planted pool (the planted ones dropped)")
    methods.register("kd+reinforce", _learned_row, augmenter="eda",
                     options={**common, "episodes": 30, "selector": {}, "env": {"episode_length": 10}},
                     description="the REINFORCE selector trained on the paired reward, then its top-scored share")
    methods.register("kd+reinforce-trajectory", _learned_row, augmenter="eda",
                     options={**common, "episodes": 30, "selector": {"gamma": 1.0},
                              "env": {"episode_length": 10, "paired_control": "trajectory"}},
                     description="the REINFORCE selector on the paired reward with a trajectory control "
                                 "(return-to-go), then its top-scored share")
    methods.register("kd+thompson", _learned_row, augmenter="eda",
                     options={**common, "learner": "thompson", "episodes": 30, "selector": {},
                              "env": {"episode_length": 10, "paired_control": "trajectory"}},
                     description="a linear Thompson-sampling selector fit to the paired reward with a trajectory "
                                 "control (the running gap on the running kept-minus-control contrast), then its "
                                 "top-scored share")
    methods.register("kd+rule-search", _learned_row, augmenter="eda",
                     options={**common, "learner": "rule_search", "episodes": 50, "selector": {},
                              "env": {"episode_length": 10, "paired_control": "trajectory"}},
                     description="successive halving over one-feature keep rules, each judged by whole episodes "
                                 "of the paired reward with a trajectory control, then the best rule's top share")
    methods.register("kd+rule-search-crn", _learned_row, augmenter="eda",
                     options={**common, "learner": "rule_search", "episodes": 50,
                              "selector": {"common_episodes": True, "keep_fraction": 0.2, "episodes_per_round": 1},
                              "env": {"episode_length": 10, "paired_control": "trajectory"}},
                     description="rule search with common random numbers: both signs of every feature are arms, "
                                 "and every arm of a round plays the same episodes; the best fifth goes on")
