"""Margin-MSE: match the teacher's (positive - negative) score margins."""

from __future__ import annotations

from torch import Tensor

from ragdistill.reranker.losses.base import ListDistillationLoss


class MarginMSELoss(ListDistillationLoss):
    """``mean over (q, j>1) of ((s_q1 - s_qj) - (t_q1 - t_qj))^2``.

    Only margins are matched, so the student may use any score offset/scale per query; this is
    what makes it work across architectures (Hofstaetter et al. 2020, "Improving Efficient Neural
    Ranking Models with Cross-Architecture Knowledge Distillation", arXiv:2010.02666). With lists
    of length 2 it is exactly ``sentence_transformers.cross_encoder.losses.MarginMSELoss`` on
    (query, pos, neg) triplets.

    Inputs:
        +-----------------------------------------+--------------------------------------+
        | Inputs                                  | Labels                               |
        +=========================================+======================================+
        | (query, [positive, neg_1, ..., neg_n])  | teacher scores [t_pos, t_1, ..., t_n] |
        +-----------------------------------------+--------------------------------------+
    """

    def compute(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        s_margin = student[:, :1] - student[:, 1:]
        t_margin = teacher[:, :1] - teacher[:, 1:]
        valid = mask[:, 1:].float()
        return ((s_margin - t_margin) ** 2 * valid).sum() / valid.sum().clamp_min(1.0)
