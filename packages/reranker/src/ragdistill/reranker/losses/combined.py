"""The training loss: ``w_kd * (teacher losses) + w_sup * (supervised loss)``, the student scored once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ragdistill.reranker.losses.base import ListDistillationLoss


@dataclass
class Part:
    """One weighted term: ``weight * loss.compute(student, target, mask)``, its target the teacher's
    scores (``"teacher"``) or the judged relevance (``"judged"``); logged under ``name``."""

    name: str
    loss: Any
    weight: float
    target: str = "teacher"


class WeightedSumLoss(ListDistillationLoss):
    """``sum_i w_i * loss_i(student, target_i, mask)``; every part sees the same student scores, so
    MarginMSE + listwise KL + a supervised loss cost one forward pass. The trainer logs each part.

    Inputs: as its parts (``(query, [positive, neg_1, ...])`` with teacher scores, or
    ``[[t_j, y_j], ...]`` teacher scores and judged relevance when a supervised part is on).
    """

    def __init__(self, model: Any, parts: list[Part], mini_batch_size: int = 0, teacher_norm: str = "none") -> None:
        super().__init__(model, mini_batch_size, teacher_norm)
        parts = [p for p in parts if p.weight]
        if not parts:
            raise ValueError("WeightedSumLoss needs at least one part with a non-zero weight")
        self.parts = parts
        self.part_modules = nn.ModuleList([p.loss for p in parts if isinstance(p.loss, nn.Module)])  # .to(device), repr

    def compute_parts(self, student: Tensor, teacher: Tensor, mask: Tensor, judged: Tensor | None = None) -> dict[str, Tensor]:
        """Each weighted part by name (the trainer logs them separately and sums them)."""
        if judged is None:
            judged = torch.full_like(teacher, -1.0)
        return {p.name: p.weight * p.loss.compute(student, judged if p.target == "judged" else teacher, mask) for p in self.parts}

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor, judged: Tensor | None = None) -> Tensor:
        return torch.stack(list(self.compute_parts(student, teacher, mask, judged).values())).sum()

    def forward(self, inputs: list[Any], labels: list[Tensor] | Tensor, **_: Any) -> dict[str, Tensor]:  # type: ignore[override]
        student, teacher, judged, mask = self.prepare_all(inputs, labels)
        return self.compute_parts(student, teacher, mask, judged)

    @property
    def supervised(self) -> bool:
        return any(p.target == "judged" for p in self.parts)

    def get_config_dict(self) -> dict[str, Any]:
        return {p.name: {"weight": p.weight, **p.loss.get_config_dict()} for p in self.parts} | {"teacher_norm": self.teacher_norm}
