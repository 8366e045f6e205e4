"""Teacher outputs computed once per dataset and looked up by example index."""

from __future__ import annotations

from pathlib import Path

import torch

from augrl.batching import Encoded, predict
from augrl.kd.losses import Outputs


class TeacherCache:
    """Frozen-teacher logits for every example of one :class:`~augrl.batching.Encoded`.

    Args:
        logits: (N, C) teacher logits, row i for example i.
    """

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits.detach().float().cpu()

    @classmethod
    def from_model(cls, teacher, data: Encoded, batch_size: int = 128, device: torch.device | str = "cpu") -> "TeacherCache":
        """Run the teacher once over ``data`` (no gradients, eval mode)."""
        return cls(predict(teacher, data, batch_size=batch_size, device=device))

    def __len__(self) -> int:
        return self.logits.shape[0]

    def __getitem__(self, index: torch.Tensor) -> Outputs:
        """Outputs for a batch: ``index`` is (B,) positions into the cached dataset."""
        return Outputs(logits=self.logits[index.cpu()])

    def to(self, device: torch.device | str) -> "TeacherCache":
        self.logits = self.logits.to(device)
        return self

    def save(self, path: str | Path) -> None:
        torch.save({"logits": self.logits.cpu()}, path)

    @classmethod
    def load(cls, path: str | Path) -> "TeacherCache":
        return cls(torch.load(path, map_location="cpu")["logits"])
