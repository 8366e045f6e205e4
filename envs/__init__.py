"""Gymnasium environments, imported as ``augrl.envs``.

    import gymnasium as gym
    import augrl.envs  # registers augrl/AugmentKD-v0

    env = gym.make("augrl/AugmentKD-v0", task="rt", shots=40, augmenter="eda", pool_size=1600, batch_size=32)
    obs, info = env.reset(seed=0)

See :class:`AugmentKDEnv` for the decision process and :mod:`augrl.envs.features` for the
observation.
"""

import gymnasium as gym

from .augment_kd import AugmentKDEnv
from .config import AugmentKDConfig
from .features import feature_names
from .world import KDWorld, build_world

ENV_ID = "augrl/AugmentKD-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="augrl.envs.augment_kd:AugmentKDEnv")

__all__ = ["AugmentKDEnv", "AugmentKDConfig", "KDWorld", "build_world", "feature_names", "ENV_ID"]
