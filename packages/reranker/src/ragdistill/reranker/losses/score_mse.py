"""Pointwise MSE on the teacher's raw scores."""

from __future__ import annotations

from torch import Tensor

from ragdistill.reranker.losses.base import ListDistillationLoss


class ScoreMSELoss(ListDistillationLoss):
    """``mean over valid (q, j) of (s_qj - t_qj)^2``: the student copies the teacher's scale too.

    Simplest target; stricter than margins (a constant offset is penalised), useful mixed in with a
    small weight so scores stay calibrated like the teacher's (e.g. for score thresholds).

    Inputs:
        +------------------------------------+---------------------------------+
        | Inputs                             | Labels                          |
        +====================================+=================================+
        | (query, [doc_1, ..., doc_n])       | teacher scores [t_1, ..., t_n]  |
        +------------------------------------+---------------------------------+
    """

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        valid = mask.float()
        return ((student - teacher) ** 2 * valid).sum() / valid.sum().clamp_min(1.0)
