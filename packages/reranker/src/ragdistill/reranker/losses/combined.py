"""Several list-distillation losses summed with weights, the student scored once."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ragdistill.reranker.losses.base import ListDistillationLoss


class WeightedSumLoss(ListDistillationLoss):
    """``sum_i w_i * loss_i(student, teacher, mask)``; every part sees the same student scores,
    so combining MarginMSE + listwise KL + MSE costs one forward pass.

    Inputs: as its parts (``(query, [positive, neg_1, ...])`` with teacher scores).
    """

    def __init__(self, model: Any, parts: list[tuple[ListDistillationLoss, float]], mini_batch_size: int = 0,
                 teacher_norm: str = "none") -> None:
        super().__init__(model, mini_batch_size, teacher_norm)
        parts = [(loss, float(w)) for loss, w in parts if w]
        if not parts:
            raise ValueError("WeightedSumLoss needs at least one part with a non-zero weight")
        self.parts = parts
        for i, (loss, _) in enumerate(parts):  # registered for .to(device) and repr, not trained
            self.add_module(f"part{i}_{type(loss).__name__}", loss)

    def compute_parts(self, student: Tensor, teacher: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Each weighted part by name (the trainer logs them separately and sums them)."""
        return {type(loss).__name__: w * loss.compute(student, teacher, mask) for loss, w in self.parts}

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return torch.stack(list(self.compute_parts(student, teacher, mask).values())).sum()

    def forward(self, inputs: list[Any], labels: list[Tensor] | Tensor, **_: Any) -> dict[str, Tensor]:  # type: ignore[override]
        student, teacher, mask = self.prepare(inputs, labels)
        return self.compute_parts(student, teacher, mask)

    def get_config_dict(self) -> dict[str, Any]:
        return {type(loss).__name__: {"weight": w, **loss.get_config_dict()} for loss, w in self.parts}
