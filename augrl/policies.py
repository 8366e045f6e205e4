"""Keep/drop policies trained with stable-baselines3 on augrl/AugmentKD-v0, and their honest test.

    augrl train-policy --task rt --algo ppo --episodes 10 --out runs/ppo

PPO and A2C act on whole batches (``MultiBinary(B)``), DQN on one candidate at a time
(``Discrete(2)``). Training logs to TensorBoard (``OUT/tensorboard``), saves the policy
(``OUT/<algo>-seed<seed>/policy.zip``) and the learning curves (episode return and the
student's final validation metric per episode, ``learning_curves.png``).

The evaluation does not trust the environment's reward: the trained policy scores every
candidate of the pool at the student's warm-start states and keeps the top ``budget`` fraction
(:func:`select_by_policy`), then a *fresh* student is distilled
(:func:`augrl.augmented.distil_on`) on the target train set plus the candidates the policy
kept, and is tested once. Beside it, with the same split, teacher, pool and training: all the
candidates (``all``) and a random subset of the policy's size (``random``).
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from augrl.augmented import distil_on
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.fileio import write_file_atomically
from augrl.methods import build_record
from augrl.runtime import resolve_precision, stage
from augrl.training import evaluate

ALGOS = {"ppo": "batch", "a2c": "batch", "dqn": "sample"}
POLICIES = ("mlp", "slots")


@dataclass
class PolicyConfig(ConfigMixin):
    """How the policy is trained and evaluated.

    Attributes:
        algo: ``ppo``, ``a2c`` (batch decisions) or ``dqn`` (per-candidate decisions).
        episodes: training episodes (passes over the pool).
        max_steps: cap on environment steps (PPO and A2C finish their last rollout), and on
            the optimiser steps of the evaluation's students (smoke runs); None: no cap.
        learning_rate, gamma, ent_coef: the agent's settings (SB3 names). ``gamma = 0`` by
            default: the paired reward is a per-step counterfactual, so each step is a bandit.
        n_steps: PPO/A2C rollout length in env steps (None: one episode for PPO, 5 for A2C);
            DQN: the n of its n-step returns (SB3's ``n_steps``; None: 1). In sample mode a
            batch's reward comes with its B-th decision and the other B - 1 get 0, so with
            ``gamma = 0`` and 1-step returns only the last decision of each batch is credited;
            ``n_steps = B``, ``gamma = 1`` and one-batch episodes credit every decision of the
            batch with its reward (``kd+dqn-nstep``).
        batch_size: PPO minibatch / DQN batch size.
        target_update_interval: DQN's target network update period in env steps (within the run).
        budget: the share of the pool the trained policy keeps: the top ``budget`` fraction of
            candidates by the policy's keep probability (DQN: Q(keep) - Q(drop)), so the policy
            and its random-kept control keep the same number.
        eval_epochs, eval_batch_size: training of the evaluation's students (epochs over
            target + kept candidates, examples per step).
        policy_device: where the policy network runs (``cpu``: the MLP is tiny).
        policy: ``mlp`` (SB3's ``MlpPolicy``: PPO and A2C read the batch as one flat vector)
            or ``slots`` (PPO, A2C: :class:`~augrl.slot_policy.SlotPolicy`, one scorer shared
            over the batch's slots). DQN decides per candidate and always uses ``mlp``.
    """

    algo: str = "ppo"
    episodes: int = 10
    max_steps: int | None = None
    learning_rate: float = 3e-4
    gamma: float = 0.0
    ent_coef: float = 0.01
    n_steps: int | None = None
    batch_size: int = 64
    target_update_interval: int = 100
    budget: float = 0.5
    eval_epochs: int = 3
    eval_batch_size: int = 32
    policy_device: str = "cpu"
    policy: str = "mlp"

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"unknown algo {self.algo!r}; use one of {sorted(ALGOS)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {list(POLICIES)}, got {self.policy!r}")
        if self.policy == "slots" and ALGOS[self.algo] != "batch":
            raise ConfigError(f"policy='slots' shares one scorer over a batch's slots, but {self.algo} decides one "
                              "candidate at a time; use policy='mlp' with dqn, or algo='ppo' / 'a2c'")
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"policy budget must be a fraction in (0, 1], got {self.budget}")


def make_agent(algo: str, env, cfg: PolicyConfig, seed: int, tensorboard: str | None = None,
               total: int | None = None):
    """A stable-baselines3 agent for ``env`` with the configured settings (PPO/A2C rollouts no
    longer than ``total`` env steps, so that a capped run takes exactly that many; PPO takes at
    least 2)."""
    from stable_baselines3 import A2C, DQN, PPO

    common = dict(learning_rate=cfg.learning_rate, gamma=cfg.gamma, seed=seed, device=cfg.policy_device,
                  tensorboard_log=tensorboard, verbose=0)
    steps = env.unwrapped.steps_per_episode if hasattr(env, "unwrapped") else env.steps_per_episode
    if cfg.policy == "slots":
        from augrl.slot_policy import SlotPolicy

        policy = SlotPolicy
    else:
        policy = "MlpPolicy"
    if algo == "ppo":
        # at least 2: PPO normalises advantages over a minibatch
        n_steps = max(2, min(cfg.n_steps or steps, total or steps))
        agent = PPO(policy, env, n_steps=n_steps, batch_size=min(cfg.batch_size, n_steps), ent_coef=cfg.ent_coef,
                    **common)
    elif algo == "a2c":
        agent = A2C(policy, env, n_steps=min(cfg.n_steps or 5, total or 5), ent_coef=cfg.ent_coef, **common)
    else:
        agent = DQN("MlpPolicy", env, batch_size=cfg.batch_size, learning_starts=min(1000, 4 * env.unwrapped.B),
                    buffer_size=50_000, target_update_interval=cfg.target_update_interval, n_steps=cfg.n_steps or 1,
                    **common)
    if tensorboard is None:
        # SB3's default logger makes an empty /tmp/SB3-<time> folder per agent even when it writes nothing
        from stable_baselines3.common.logger import Logger

        agent.set_logger(Logger(folder=None, output_formats=[]))
    return agent


def _callback(total: int, progress: bool, checkpoints: bool = False):
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLog(BaseCallback):
        """Per-episode return, final validation metric and kept fraction; a progress bar; with
        ``checkpoints``, the policy's weights after every episode (``(env_steps, state)``).

        SB3 updates the policy after a rollout is collected (PPO, A2C) or every few steps (DQN),
        so an episode's end comes before the update that learns from it: its checkpoint is taken
        at the start of the next rollout, or at the end of training, after that update."""

        def __init__(self) -> None:
            super().__init__()
            self.episodes: list[dict] = []
            self.checkpoints: list[tuple[int, dict]] = []
            self._pending: list[int] = []  # env steps of episodes whose checkpoint waits for the update
            self._return = 0.0
            self.bar = tqdm(total=total, desc="policy", unit="step", disable=not progress, file=sys.stderr,
                            leave=False)

        def _on_step(self) -> bool:
            self.bar.update(1)
            self._return += float(self.locals["rewards"][0])
            if self.locals["dones"][0]:
                info = self.locals["infos"][0]
                row = {"episode": len(self.episodes) + 1, "return": self._return,
                       "val_metric": info["val_metric"], "kept_fraction": info["kept_total"] / max(1, info["candidates_seen"]),
                       "env_steps": self.num_timesteps}
                self.episodes.append(row)
                if checkpoints:
                    self._pending.append(self.num_timesteps)
                for k in ("return", "val_metric", "kept_fraction"):
                    self.logger.record(f"augrl/episode_{k}", row[k])
                self.bar.set_postfix(ret=f"{row['return']:+.3f}", val=f"{row['val_metric']:.3f}")
                self._return = 0.0
            return True

        def _flush(self) -> None:
            if self._pending:
                state = copy.deepcopy(self.model.policy.state_dict())
                self.checkpoints.extend((steps, state) for steps in self._pending)
                self._pending = []

        def _on_rollout_start(self) -> None:
            self._flush()

        def _on_training_end(self) -> None:
            self._flush()
            self.bar.close()

    return EpisodeLog()


def policy_scores(agent, observations: np.ndarray, decision: str, batch_size: int) -> np.ndarray:
    """(N,) how much a trained SB3 policy wants to keep each candidate of an (N, F) array of
    observation rows: the Bernoulli keep probability of its slot for batch policies (PPO, A2C:
    rows scored in batches of ``batch_size``, the last one padded with the first rows), Q(keep) -
    Q(drop) for DQN."""
    import torch

    obs = np.asarray(observations, dtype=np.float32)
    n = len(obs)
    with torch.no_grad():
        if decision == "sample":
            q = agent.q_net(torch.as_tensor(obs, device=agent.device))
            return (q[:, 1] - q[:, 0]).cpu().numpy()
        out = np.empty(n)
        for start in range(0, n, batch_size):
            rows = np.arange(start, start + batch_size) % n
            tensor, _ = agent.policy.obs_to_tensor(obs[rows])
            probs = agent.policy.get_distribution(tensor).distribution.probs[0].cpu().numpy()
            take = min(batch_size, n - start)
            out[start:start + take] = probs[:take]
    return out


def pool_views(world, decision: str, seed: int) -> list[np.ndarray]:
    """The pool's (N, F) observation rows at each warm-start state of the student (the current
    student without snapshots): what a trained policy's final selection scores."""
    from augrl.envs import AugmentKDEnv

    env = AugmentKDEnv.from_world(world, decision=decision)
    env.reset(seed=seed)
    return env.pool_views()


def views_scores(agent, views: list[np.ndarray], decision: str, batch_size: int) -> np.ndarray:
    """(N,) :func:`policy_scores` averaged over the pool's ``views``."""
    return np.mean([policy_scores(agent, obs, decision, batch_size) for obs in views], axis=0)


def select_by_policy(agent, world, decision: str, budget: float, seed: int,
                     views: list[np.ndarray] | None = None) -> tuple[list[int], np.ndarray]:
    """The final selection of a trained policy: the top ``budget`` fraction of the pool by
    :func:`policy_scores`, averaged over the student's warm-start states (:func:`pool_views`,
    or the ``views`` given). Returns the kept indices and the scores."""
    from augrl.selection.rankers import budget_size, top_k

    views = pool_views(world, decision, seed) if views is None else views
    scores = views_scores(agent, views, decision, world.config.batch_size)
    return top_k(scores, budget_size(len(scores), budget), seed), scores


def random_subset(n: int, size: int, seed: int) -> list[int]:
    """``size`` of ``range(n)`` drawn without replacement from ``seed`` (sorted): the random-kept
    control of a policy's selection."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 17])
    return sorted(rng.choice(n, size=size, replace=False).tolist())


def evaluate_selection(world, kept: list[int], cfg: PolicyConfig, seed: int, progress: bool = True) -> dict:
    """Test metrics of fresh students distilled on target + kept / all / random-kept candidates."""
    run = world.config.run_config()
    train = run.student_train.replace(epochs=cfg.eval_epochs, batch_size=cfg.eval_batch_size,
                                      max_steps=cfg.max_steps)
    run = run.replace(student_train=train)
    n = len(world.pool)
    selections = {"policy": sorted(kept), "all": list(range(n)), "random": random_subset(n, len(kept), seed)}
    out = {}
    for name, keep in selections.items():
        start = time.perf_counter()
        result = distil_on(run, world.data, world.teacher, world.pool, keep=keep, progress=progress,
                           desc=f"student ({name})", freeze_embeddings=world.config.freeze_embeddings)
        test = evaluate(result.student, world.data.test, world.data.task.spec, world.data.device)
        out[name] = {"test": test, "val": result.fit.best_val, "kept": len(keep), "kept_fraction": len(keep) / n,
                     "kept_indices": list(keep) if name != "all" else None,
                     "train_size": result.train_size, "seconds": round(time.perf_counter() - start, 2)}
    return out


def learn_policy(world, cfg: PolicyConfig, seed: int, run_dir: Path | None = None, progress: bool = True,
                 checkpoints: bool = False):
    """Train ``cfg.algo`` on an env of ``world`` for ``cfg.episodes`` episodes (capped by
    ``cfg.max_steps``); TensorBoard logs go to ``run_dir/tensorboard``.

    Returns:
        ``(agent, log, seconds)``: the SB3 agent, the episode log (``log.episodes``: return,
        validation metric and kept fraction per episode; with ``checkpoints``, ``log.checkpoints``:
        the policy's weights after every episode's update) and the training wall time.
    """
    from stable_baselines3.common.monitor import Monitor

    from augrl.envs import AugmentKDEnv

    decision = ALGOS[cfg.algo]
    env = Monitor(AugmentKDEnv.from_world(world, decision=decision))
    steps_per_episode = env.unwrapped.steps_per_episode * (env.unwrapped.B if decision == "sample" else 1)
    total = cfg.episodes * steps_per_episode
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    agent = make_agent(cfg.algo, env, cfg, seed, tensorboard=str(run_dir / "tensorboard") if run_dir else None,
                       total=total)
    log = _callback(total, progress, checkpoints)
    t = time.perf_counter()
    agent.learn(total_timesteps=total, callback=log, tb_log_name=cfg.algo)
    return agent, log, time.perf_counter() - t


def train_policy(env_config, cfg: PolicyConfig, out_dir: str | Path | None = None, progress: bool = True,
                 world=None) -> dict:
    """Train a policy on the env, evaluate its selection honestly, return the result record.

    Args:
        env_config: an :class:`augrl.envs.AugmentKDConfig` (its ``decision`` is set by the algo).
        cfg: the agent's settings.
        out_dir: TensorBoard logs, the policy and its learning curves go under
            ``out_dir/<algo>-seed<seed>/`` (None: nothing is saved).
        world: a ready world for ``env_config`` (else it is built).
    """
    from augrl.envs import build_world
    from augrl.plots import plot_policy_curves

    start = time.perf_counter()
    decision = ALGOS[cfg.algo]
    env_config = env_config.replace(decision=decision)
    if world is None:
        world = build_world(env_config, progress=progress)
    run_dir = Path(out_dir) / f"{cfg.algo}-seed{env_config.seed}" if out_dir is not None else None
    agent, log, train_seconds = learn_policy(world, cfg, env_config.seed, run_dir, progress)
    kept, _ = select_by_policy(agent, world, decision, cfg.budget, seed=env_config.seed)
    evaluation = evaluate_selection(world, kept, cfg, env_config.seed, progress)
    spec = world.data.task.spec
    record = build_record("train-policy", f"kd+{cfg.algo}", env_config.run_config(), world.data,
                          evaluation["policy"]["test"], evaluation["policy"]["val"], {},
                          time.perf_counter() - start, {},
                          config={"env": env_config.to_dict(), "policy": cfg.to_dict()})
    record.update({
        "evaluation": evaluation,
        "training": {"env_steps": int(agent.num_timesteps), "updates": policy_updates(agent), "episodes": log.episodes,
                     "seconds": round(train_seconds, 2)},
        "pool": world.pool.meta,
        "teacher": {k: world.teacher_info.get(k) for k in ("val", "cached", "dir")},
        "world_timings": world.timings,
    })
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        # written beside its place and renamed: a full disk leaves no cut-off policy.zip (DiskFullError)
        write_file_atomically(run_dir / "policy.zip", agent.save)
        record["policy_path"] = str(run_dir / "policy.zip")
        if log.episodes:
            plot_policy_curves(log.episodes, spec.metric, run_dir / "learning_curves.png",
                               f"{spec.name} {cfg.algo} seed {env_config.seed}")
    return record


# ----------------------------------------------------------------------------- benchmark rows


def policy_updates(agent) -> int:
    """Policy updates an SB3 agent has made (its ``train/n_updates``): PPO counts its epochs over
    each rollout, A2C one per rollout, DQN one per gradient step."""
    return int(getattr(agent, "_n_updates", 0))


def _bench_policy(ctx):
    """``kd+ppo`` (and ``kd+a2c``, ``kd+dqn``): an SB3 policy trained on the env over the seed's
    selection pool (:mod:`augrl.selection.rows`: the same pool and budget as the other selection
    rows), then a fresh student distilled on the target set plus the top ``budget`` share of the
    pool by the policy's keep probability. A control student on a random subset of the same size
    is trained too; its test metrics are recorded under ``random_same_size`` and its time is not
    charged to the row."""
    from augrl.selection.rows import detection_curve, planted_flags, selection_budget, selection_record, selection_world

    cfg = ctx.options_config(PolicyConfig)
    pool = ctx.selection_pool()
    budget = selection_budget(ctx, pool)
    decision = ALGOS[cfg.algo]
    with stage("selection"):
        world = selection_world(ctx, pool, budget, decision=decision)
        agent, log, seconds = learn_policy(world, cfg, ctx.cfg.seed, progress=ctx.progress,
                                           checkpoints=planted_flags(pool) is not None)
        views = pool_views(world, decision, ctx.cfg.seed)
        kept, scores = select_by_policy(agent, world, decision, budget, seed=ctx.cfg.seed, views=views)
        curve = detection_curve(pool, log.checkpoints, agent.policy,
                                lambda: views_scores(agent, views, decision, world.config.batch_size))
    outcome = ctx.distil(pool, keep=kept)
    start = time.perf_counter()
    control = ctx.distil(pool, keep=random_subset(len(pool), len(kept), ctx.cfg.seed))
    ctx.charged_seconds -= time.perf_counter() - start
    outcome.extra.update(selection=selection_record(pool, kept, scores, budget),
                         policy_training={"env_steps": int(agent.num_timesteps), "updates": policy_updates(agent),
                                          "seconds": round(seconds, 2), "episodes": log.episodes,
                                          "env_precision": resolve_precision(world.config.precision,
                                                                             world.data.device),
                                          "detection_curve": curve},
                         random_same_size={"val": control.best_val})
    spec, device = ctx.data.task.spec, ctx.data.device

    def control_test(test) -> dict:  # the final evaluation's, with the row's own test metrics
        return {"random_same_size": {"test": evaluate(control.model, test, spec, device), "val": control.best_val}}

    outcome.evaluate_extra = control_test
    return outcome


def register_methods() -> None:
    """Register the policy rows in :mod:`augrl.methods` (called once, by its first lookup)."""
    from augrl import methods

    defaults = {k: v for k, v in PolicyConfig().to_dict().items()
                if k not in ("max_steps", "eval_epochs", "eval_batch_size", "budget")}
    defaults.update(budget=None, pool={}, env={"episode_length": 10}, episodes=30)
    for algo in ALGOS:
        name = f"kd+{algo}"
        methods.register(name, _bench_policy, augmenter="eda", options={**defaults, "algo": algo},
                         description=f"KD on the top-scored share of the pool by an SB3 {algo.upper()} policy "
                                     "(trained on augrl/AugmentKD-v0, paired reward)")
    # sample mode pays a batch's reward on its last decision: n-step returns over the batch, in
    # one-batch episodes, give every decision of the batch that reward (PolicyConfig.n_steps);
    # 300 episodes of one batch are kd+dqn's 300 batches (32 = the env's default batch_size)
    methods.register("kd+dqn-nstep", _bench_policy, augmenter="eda",
                     options={**defaults, "algo": "dqn", "gamma": 1.0, "n_steps": 32, "episodes": 300,
                              "env": {"episode_length": 1}},
                     description="DQN whose every per-candidate decision is credited with its batch's paired reward "
                                 "(32-step returns, gamma 1, one-batch episodes), then its top share")
    # the trajectory control compounds a consistent choice over the episode (the anti-oracle's
    # reward is clearer with it, README "Learned selection"), so the return-to-go (gamma 1) is
    # what credits an action
    methods.register("kd+ppo-slots", _bench_policy, augmenter="eda",
                     options={**defaults, "algo": "ppo", "policy": "slots", "gamma": 1.0,
                              "env": {"episode_length": 10, "paired_control": "trajectory"}},
                     description="PPO with one scorer shared over the batch's slots (augrl.slot_policy.SlotPolicy) on "
                                 "the paired reward with a trajectory control and return-to-go, then its top share")
