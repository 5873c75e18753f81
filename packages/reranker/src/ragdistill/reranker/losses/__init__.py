"""Distillation losses over each query's candidate list (one loss per class, like
sentence-transformers), and the weighted sum the config selects."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.reranker.losses.base import TEACHER_NORMS, ListDistillationLoss, pad_lists, standardize_lists
from ragdistill.reranker.losses.combined import WeightedSumLoss
from ragdistill.reranker.losses.listwise_kl import ListwiseKLLoss
from ragdistill.reranker.losses.margin_mse import MarginMSELoss
from ragdistill.reranker.losses.score_mse import ScoreMSELoss


def build_loss(model: Any, loss_cfg: Any, mini_batch_size: int = 0) -> WeightedSumLoss:
    """The ``reranker.train.loss`` weights -> one loss (any combination; at least one weight > 0)."""
    weights = {"margin_mse": float(loss_cfg.margin_mse), "listwise_kl": float(loss_cfg.listwise_kl), "mse": float(loss_cfg.mse)}
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise RagdistillError(
            f"reranker.train.loss weights {weights}: each must be >= 0 and at least one > 0, "
            "e.g. reranker.train.loss.margin_mse=1 reranker.train.loss.listwise_kl=1"
        )
    if float(loss_cfg.temperature) <= 0:
        raise RagdistillError(f"reranker.train.loss.temperature={loss_cfg.temperature}: must be > 0")
    parts = [
        (MarginMSELoss(model), weights["margin_mse"]),
        (ListwiseKLLoss(model, temperature=float(loss_cfg.temperature)), weights["listwise_kl"]),
        (ScoreMSELoss(model), weights["mse"]),
    ]
    norm = getattr(loss_cfg, "teacher_norm", "none")  # an Enum from the config (checked when composed) or a name
    return WeightedSumLoss(model, parts, mini_batch_size, teacher_norm=str(getattr(norm, "value", norm)))


__all__ = ["TEACHER_NORMS", "ListDistillationLoss", "ListwiseKLLoss", "MarginMSELoss", "ScoreMSELoss", "WeightedSumLoss", "build_loss", "pad_lists",
           "standardize_lists"]
