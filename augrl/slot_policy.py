"""A stable-baselines3 actor-critic whose weights are shared over the B candidate slots.

SB3's ``MlpPolicy`` reads a batch observation ``(B, F)`` as one flat vector of ``B * F``
numbers, so what it learns about slot 3 says nothing about slot 17, and a permutation of the
batch changes its decisions. With ``policy="slots"`` (``PolicyConfig``) PPO and A2C use
:class:`SlotPolicy` instead: one MLP scores each candidate from its own F features, the same
for every slot (the L2A selector's permutation-equivariant scorer), and the critic averages a
per-slot embedding, so the value does not depend on the slots' order::

    observation (N, B, F) --actor MLP, per slot--> (N, B, H) --Linear(H, 1)--> keep logits (N, B)
                          --critic MLP, per slot--> (N, B, H) --mean over B--> (N, H) --> value (N, 1)

The keep logits are the Bernoulli parameters of SB3's ``MultiBinary`` distribution, so
rollouts, PPO's clipped objective and ``policy_scores`` work unchanged. The actor has
``F H + H^2 + H`` weights however large B is (against ``B F H + ... + H B`` for the MLP).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


class SlotExtractor(nn.Module):
    """SB3's ``mlp_extractor`` for :class:`SlotPolicy`: flat ``(N, B * F)`` features to the
    actor's per-slot latents, flattened ``(N, B * H)``, and the critic's pooled ``(N, H)``."""

    def __init__(self, slots: int, features: int, hidden: int = 64) -> None:
        super().__init__()
        self.slots, self.features, self.hidden = slots, features, hidden
        self.latent_dim_pi, self.latent_dim_vf = slots * hidden, hidden
        self.policy_net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.value_net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())

    def _slots(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(flat.shape[0], self.slots, self.features)

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(flat), self.forward_critic(flat)

    def forward_actor(self, flat: torch.Tensor) -> torch.Tensor:
        return self.policy_net(self._slots(flat)).flatten(1)

    def forward_critic(self, flat: torch.Tensor) -> torch.Tensor:
        return self.value_net(self._slots(flat)).mean(1)


class SlotHead(nn.Module):
    """The actor's output layer: ``(N, B * H)`` latents to ``(N, B)`` keep logits with one
    ``Linear(H, 1)`` shared by the slots."""

    def __init__(self, slots: int, hidden: int) -> None:
        super().__init__()
        self.slots, self.hidden = slots, hidden
        self.score = nn.Linear(hidden, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.score(latent.reshape(latent.shape[0], self.slots, self.hidden)).squeeze(-1)


class SlotPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` for a ``Box(B, F)`` observation and a ``MultiBinary(B)`` action with
    weights shared over the B slots (module docstring). ``slot_hidden`` (a ``policy_kwargs``
    entry) is H, default 64 (SB3's ``MlpPolicy`` width)."""

    def __init__(self, observation_space, action_space, lr_schedule, slot_hidden: int = 64, **kwargs) -> None:
        shape = observation_space.shape
        if len(shape) != 2 or getattr(action_space, "n", None) is None or int(np.prod(action_space.shape)) != shape[0]:
            raise ValueError(f"SlotPolicy needs a (B, F) observation and a MultiBinary(B) action; got observation shape "
                             f"{shape} and action space {action_space} (policy='slots' is for batch decisions: PPO, A2C)")
        self.slot_hidden = int(slot_hidden)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        slots, features = self.observation_space.shape
        self.mlp_extractor = SlotExtractor(slots, features, self.slot_hidden)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = SlotHead(self.observation_space.shape[0], self.slot_hidden)
        if self.ortho_init:
            self.action_net.apply(partial(self.init_weights, gain=0.01))
        # the optimiser built by the parent holds the replaced head's parameters: rebuild it
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
