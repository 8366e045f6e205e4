"""Learning to Augment end to end: ``augrl l2a --task T``.

1. Load the split and the cached fine-tuned teacher; fit the generator ``P_s`` (the
   task-adapted MLM, :class:`~augrl.generator.L2AGenerator`) and draw the candidate pool from
   target and source inputs (``pool_size`` default: ``variants`` x the target train size, the
   augmentation budget every benchmark row gets).
2. For ``episodes`` episodes the reinforced selector (:class:`~augrl.selection.reinforce.ReinforceSelector`)
   acts in ``augrl/AugmentKD-v0`` while the environment's student (warm-started from the world's
   snapshots) is distilled on what it keeps (L2A's objective by default: L_att + L_hidden +
   L_dark); it keeps a fixed ``budget`` share of every batch and REINFORCE updates it after every
   step on the paired reward. Every ``generator_every`` (K) episodes ``G_theta`` is updated with L2A's loss on
   the pool, weighted by ``log P_s(z)`` and the selector's keep probabilities, and the pool is
   drawn again from the updated generator.
3. The trained selector scores every candidate of the final pool at each warm-start state of
   the environment's student and keeps the top ``budget`` fraction by mean score
   (:meth:`~augrl.selection.reinforce.ReinforceSelector.select`); a fresh student is distilled
   on the target set plus the kept candidates (:func:`augrl.augmented.distil_on`, selected on
   validation) and tested once.

Ablations (the L2A paper's): ``use_source=False`` (w/o src: target inputs only),
``use_target=False`` (w/o tgt: source inputs only), ``generator_every=0`` (no G_theta update),
``use_selector=False`` (P_s samples kept as they come: no episodes, no generator update).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from augrl.augmented import distil_on
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.methods import build_record
from augrl.pipelines import stage_summary
from augrl.runtime import stage
from augrl.selection.reinforce import ReinforceSelector, SelectorConfig
from augrl.training import evaluate

L2A_OBJECTIVE = {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0}


@dataclass
class L2AConfig(ConfigMixin):
    """The L2A loop's own settings (the environment's are an :class:`augrl.envs.AugmentKDConfig`).

    Attributes:
        episodes: selector episodes (E).
        generator_every: update ``G_theta`` and redraw the pool every K episodes (0: never).
        generator_lr, generator_steps: the update's AdamW learning rate and passes over the pool.
        use_source, use_target: sample from source / target inputs (not both False).
        use_selector: False: keep every ``P_s`` sample (no episodes).
        selector: :class:`~augrl.selection.reinforce.SelectorConfig` settings.
        eval_epochs, eval_batch_size: the final student's training (the defaults of
            ``augrl distill``: 10 epochs of batch 16).
        max_steps: smoke runs: cap on the final student's optimiser steps and on episodes' length.
    """

    episodes: int = 30
    generator_every: int = 5
    generator_lr: float = 1e-5
    generator_steps: int = 1
    use_source: bool = True
    use_target: bool = True
    use_selector: bool = True
    selector: dict = field(default_factory=dict)
    eval_epochs: int = 10
    eval_batch_size: int = 16
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not (self.use_source or self.use_target):
            raise ConfigError("L2A needs source or target inputs: --no-source and --no-target cannot both be set")
        if self.episodes < 0 or self.generator_every < 0:
            raise ConfigError("episodes and generator_every must be >= 0")

    def variant(self) -> str:
        """The method name of this configuration (benchmark rows)."""
        if not self.use_selector:
            return "kd+l2a-noselector"
        if not self.use_source:
            return "kd+l2a-nosrc"
        if not self.use_target:
            return "kd+l2a-notgt"
        return "kd+l2a" if self.generator_every else "kd+l2a-nogen"


def l2a_env_config(env_cfg, cfg: L2AConfig, train_size: int):
    """The environment settings L2A runs with: the ``l2a`` augmenter, the source/target mix of
    the ablation, the budget-sized pool and L2A's objective unless others are given."""
    fraction = env_cfg.source_fraction
    if not cfg.use_source:
        fraction = 0.0
    elif not cfg.use_target:
        fraction = 1.0
    changes = {"augmenter": "l2a", "source_fraction": fraction, "decision": "batch"}
    if env_cfg.augmenter != "l2a":
        changes["augmenter_params"] = {}
    if not env_cfg.objective:
        changes["objective"] = dict(L2A_OBJECTIVE)
    cfg_changed = env_cfg.replace(**changes)
    if cfg_changed.pool_size == type(env_cfg)().pool_size:  # not set by the user: the augmentation budget
        size = max(cfg_changed.batch_size, cfg_changed.variants * train_size)
        cfg_changed = cfg_changed.replace(pool_size=size)
    if cfg.max_steps is not None:
        cfg_changed = cfg_changed.replace(pool_size=min(cfg_changed.pool_size, cfg.max_steps * cfg_changed.batch_size))
    return cfg_changed


def check_schedule(env_cfg, cfg: L2AConfig, n_train: int, final_train) -> None:
    """Refuse warm-start snapshots later than the final student's optimiser steps (target rows
    plus the selector's budget of the pool, ``final_train``'s epochs and batch), before training."""
    from augrl.selection.reinforce import SelectorConfig
    from augrl.selection.rankers import budget_size
    from augrl.training import total_steps

    budget = SelectorConfig.from_dict({**cfg.selector}).budget if cfg.use_selector else 1.0
    size = n_train + budget_size(env_cfg.pool_size, budget)
    env_cfg.check_snapshots(total_steps(size, final_train),
                            f"the final student ({final_train.epochs} epochs of batch {final_train.batch_size} over "
                            f"{size} examples)")


@dataclass
class L2ASelection:
    """What the L2A loop hands to the final student.

    Attributes:
        pool: the last pool drawn from ``P_s`` (after the last generator update).
        kept: indices of ``pool`` the trained selector keeps (all without a selector).
        world: the environment's world of ``pool``.
        episodes: per-episode ``{"episode", "return", "val_metric", "kept_fraction", "policy_loss"}``.
        generator_updates: per update ``{"after_episode", ...}`` (see ``L2AGenerator.update``).
        selector: the trained selector (None without one).
    """

    pool: object
    kept: list
    world: object
    episodes: list
    generator_updates: list
    selector: ReinforceSelector | None


def select_with_l2a(env_cfg, cfg: L2AConfig, data, teacher, generator, progress: bool = True) -> L2ASelection:
    """Steps 1 (the pool) and 2 (episodes, generator updates) of the module docstring, and the
    selector's deterministic pass over the final pool.

    Args:
        env_cfg: the environment (:func:`l2a_env_config` applied).
        cfg: the loop's settings.
        data, teacher: the prepared split and its fine-tuned teacher.
        generator: a fitted :class:`~augrl.generator.L2AGenerator` (updated in place).
    """
    with stage("selection"):
        return _select_with_l2a(env_cfg, cfg, data, teacher, generator, progress)


def _select_with_l2a(env_cfg, cfg: L2AConfig, data, teacher, generator, progress: bool) -> L2ASelection:
    from augrl.envs import AugmentKDEnv, build_world
    from augrl.pool import build_pool

    def new_world(round_: int, first=None):
        pool = build_pool(data.task, generator, env_cfg.pool_size, env_cfg.variants, env_cfg.source_fraction,
                          seed=env_cfg.seed + 1000 * round_)
        world = build_world(env_cfg, data=data, teacher=teacher, pool=pool)
        if first is not None:
            # a redrawn pool keeps the first pool's warm-start snapshots and feature scale: the
            # student states depend little on which draw of the same generator they trained on,
            # and training them again for every redraw would cost more than the episodes
            world.snapshot_store = first.snapshot_store
        return world

    world = first_world = new_world(0)
    episodes: list[dict] = []
    generator_updates: list[dict] = []
    selector = None
    if cfg.use_selector and cfg.episodes:
        env = AugmentKDEnv(world=world)
        selector = ReinforceSelector.for_env(env, SelectorConfig.from_dict({"seed": env_cfg.seed, **cfg.selector}))
        bar = tqdm(total=cfg.episodes, desc="L2A episodes", unit="ep", disable=not progress, file=sys.stderr, leave=False)
        for e in range(cfg.episodes):
            stats = selector.run_episode(env, seed=env_cfg.seed * 10_000 + e, learn=True)
            row = {"episode": e + 1, "return": stats["return"], "val_metric": stats["info"]["val_metric"],
                   "kept_fraction": stats["kept_fraction"], "policy_loss": stats["policy_loss"],
                   "updates": selector.updates, "start_step": stats["info"].get("start_step")}
            episodes.append(row)
            bar.update(1)
            bar.set_postfix(ret=f"{row['return']:+.3f}", kept=f"{row['kept_fraction']:.2f}")
            if cfg.generator_every and (e + 1) % cfg.generator_every == 0 and e + 1 < cfg.episodes:
                pool = world.pool
                probs = stats["keep_probs"]
                rows = sorted(probs)
                update = generator.update([pool.origins[i] for i in rows], [pool.texts[i] for i in rows],
                                          [float(pool.logprob[i]) for i in rows], [probs[i] for i in rows],
                                          lr=cfg.generator_lr, steps=cfg.generator_steps, seed=env_cfg.seed + e)
                world = new_world(len(generator_updates) + 1, first_world)
                env = AugmentKDEnv(world=world)
                generator_updates.append({"after_episode": e + 1, **update})
        bar.close()
    if selector is not None:
        env = AugmentKDEnv(world=world)
        env.reset(seed=env_cfg.seed)
        kept = selector.select(env.pool_views())
    else:
        kept = list(range(len(world.pool)))
    return L2ASelection(world.pool, kept, world, episodes, generator_updates, selector)


def run_l2a(env_cfg, cfg: L2AConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Run L2A (module docstring) and return the result record."""
    from augrl import baselines, models
    from augrl.pipelines import prepare
    from augrl.teachers import obtain_teacher

    start = time.perf_counter()
    data = prepare(env_cfg.run_config())
    env_cfg = l2a_env_config(env_cfg, cfg, len(data.train))
    run = env_cfg.run_config()
    teacher_start = time.perf_counter()
    teacher, teacher_info = obtain_teacher(run, data, env_cfg.teacher_dir, progress=progress)
    teacher_seconds = time.perf_counter() - teacher_start
    train = run.student_train.replace(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size, max_steps=cfg.max_steps)
    if cfg.max_steps is None:
        check_schedule(env_cfg, cfg, len(data.train), train)
    generator = baselines.get("l2a", **env_cfg.augmenter_params)
    generator.fit(data.task)
    selection = select_with_l2a(env_cfg, cfg, data, teacher, generator, progress)
    world, kept, episodes, selector = selection.world, selection.kept, selection.episodes, selection.selector
    generator_updates = selection.generator_updates
    final_run = run.replace(student_train=train)
    student = distil_on(final_run, data, teacher, world.pool, keep=kept, progress=progress, desc="student (L2A)")
    test = evaluate(student.student, data.test, data.task.spec, data.device)
    spec = data.task.spec
    method = cfg.variant()
    record = build_record(
        "l2a", method, run, data, test, student.fit.best_val,
        {"teacher": models.count_parameters(teacher), "student": models.count_parameters(student.student)},
        time.perf_counter() - start, {"student": stage_summary(student.fit)},
        config={"env": env_cfg.to_dict(), "l2a": cfg.to_dict(), "final_student": train.to_dict()})
    record.update({
        "selection": {"kept": len(kept), "pool": len(world.pool), "kept_fraction": len(kept) / max(1, len(world.pool)),
                      "train_size": student.train_size},
        "episodes": episodes,
        "generator_updates": generator_updates,
        "pool": world.pool.meta,
        "objective": student.distiller.objective,
        "teacher": {"val": teacher_info.get("val"), "cached": teacher_info.get("cached"), "seconds": round(teacher_seconds, 2)},
    })
    if out_dir is not None:
        run_dir = Path(out_dir) / f"{method}-seed{env_cfg.seed}"
        if selector is not None:
            record["selector_path"] = str(selector.save(run_dir / "selector.pt"))
        if episodes:
            from augrl.plots import plot_policy_curves

            plot_policy_curves(episodes, spec.metric, run_dir / "learning_curves.png", f"{spec.name} {method} "
                               f"seed {env_cfg.seed}")
    return record


# ----------------------------------------------------------------------------- benchmark rows


def _bench_l2a(ctx) -> "object":
    """``kd+l2a*`` rows: the L2A loop on the seed's split and teacher, with the bench's KD
    objective in the env and for the final student (so the rows differ from ``kd+eda`` only in
    how the candidates are made and chosen) and the bench's budget: ``variants`` x N_train
    candidates in the pool, of which the selector keeps a subset."""
    from augrl import baselines

    cfg = ctx.options_config(L2AConfig)
    settings = ctx.augmenter_settings("l2a", ctx.method.augmenter_params)
    env_cfg = l2a_env_config(ctx.env_config(augmenter="l2a", augmenter_params=settings), cfg, len(ctx.data.train))
    if ctx.max_steps is None:
        check_schedule(env_cfg, cfg, len(ctx.data.train), ctx.cfg.student_train)
    teacher = ctx.teacher()
    generator = baselines.get("l2a", **settings).fit(ctx.data.task)
    selection = select_with_l2a(env_cfg, cfg, ctx.data, teacher, generator, ctx.progress)
    ctx.record_pool(selection.pool)
    outcome = ctx.distil(selection.pool, keep=selection.kept)
    n = len(selection.pool)
    outcome.extra.update(selection={"kept": len(selection.kept), "pool": n,
                                    "kept_fraction": len(selection.kept) / max(1, n)},
                         episodes=selection.episodes, generator_updates=selection.generator_updates)
    return outcome


def register_methods() -> None:
    """Register L2A's rows in :mod:`augrl.methods` (called once, by its first lookup)."""
    from augrl import methods

    variants = {
        "kd+l2a": ({}, "L2A: generator P_s from source + target, G_theta updates, REINFORCE selector"),
        "kd+l2a-nosrc": ({"use_source": False}, "L2A w/o src: candidates from target inputs only"),
        "kd+l2a-notgt": ({"use_target": False}, "L2A w/o tgt: candidates from source inputs only"),
        "kd+l2a-noselector": ({"use_selector": False}, "L2A without selector: every P_s sample kept"),
        "kd+l2a-nogen": ({"generator_every": 0}, "L2A without G_theta updates"),
    }
    defaults = {k: v for k, v in L2AConfig().to_dict().items() if k not in ("max_steps", "eval_epochs",
                                                                             "eval_batch_size")}
    for name, (changes, description) in variants.items():
        methods.register(name, _bench_l2a, description=description, augmenter="l2a", options={**defaults, **changes})
