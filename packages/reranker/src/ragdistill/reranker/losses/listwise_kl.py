"""Listwise KL: match the teacher's softmax distribution over each query's candidates."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ragdistill.reranker.losses.base import ListDistillationLoss


class ListwiseKLLoss(ListDistillationLoss):
    """``T^2 * mean_q KL(softmax(t_q / T) || softmax(s_q / T))`` over each query's valid candidates.

    The temperature ``T`` softens both distributions so the student also learns how the teacher
    orders the non-top candidates (Hinton et al. 2015, "Distilling the Knowledge in a Neural
    Network"); the ``T^2`` factor keeps gradient magnitudes comparable across temperatures. The
    same loss distills the ColBERT student (its MaxSim scores take the place of ``s``).

    Inputs:
        +------------------------------------+---------------------------------+
        | Inputs                             | Labels                          |
        +====================================+=================================+
        | (query, [doc_1, ..., doc_n])       | teacher scores [t_1, ..., t_n]  |
        +------------------------------------+---------------------------------+
    """

    def __init__(self, model: Any, temperature: float = 1.0, mini_batch_size: int = 0, teacher_norm: str = "none") -> None:
        super().__init__(model, mini_batch_size, teacher_norm)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        t = self.temperature
        neg_inf = torch.finfo(student.dtype).min
        log_p_s = torch.log_softmax((student / t).masked_fill(~mask, neg_inf), dim=-1)
        log_p_t = torch.log_softmax((teacher / t).masked_fill(~mask, neg_inf), dim=-1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).masked_fill(~mask, 0.0).sum(-1)
        return kl.mean() * t * t

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
