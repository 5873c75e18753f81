"""The training losses over each query's candidate list (one loss per class, like
sentence-transformers): the teacher losses (distillation), the supervised losses on the judged
labels, and the weighted sum the config selects."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.reranker.losses.base import TEACHER_NORMS, ListDistillationLoss, pad_lists, standardize_lists
from ragdistill.reranker.losses.combined import Part, WeightedSumLoss
from ragdistill.reranker.losses.listwise_kl import ListwiseKLLoss
from ragdistill.reranker.losses.margin_mse import MarginMSELoss
from ragdistill.reranker.losses.score_mse import ScoreMSELoss
from ragdistill.reranker.losses.supervised import SUPERVISED, LibraryListLoss, PositiveCELoss, supervised_loss


def label_column(row: dict[str, Any]) -> list[list[float]]:
    """One row's ``[[teacher score, judged relevance], ...]`` (-1 = not judged): the losses' labels."""
    ys = row["labels"] if row["labels"] is not None else [-1] * len(row["scores"])
    return [[float(t), float(y)] for t, y in zip(row["scores"], ys, strict=True)]


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))  # an Enum from the config (checked when composed) or a name


def build_loss(model: Any, loss_cfg: Any, mini_batch_size: int = 0) -> WeightedSumLoss:
    """``reranker.train.loss`` -> ``kd_weight * (margin_mse * MarginMSE + listwise_kl * KL + mse * MSE)
    + supervised_weight * <supervised>``; parts logged as ``kd_<name>`` / ``sup_<name>``."""
    kd = {"margin_mse": float(loss_cfg.margin_mse), "listwise_kl": float(loss_cfg.listwise_kl), "mse": float(loss_cfg.mse)}
    w_kd, w_sup = float(getattr(loss_cfg, "kd_weight", 1.0)), float(getattr(loss_cfg, "supervised_weight", 0.0))
    if any(w < 0 for w in (*kd.values(), w_kd, w_sup)) or not (w_kd * sum(kd.values()) or w_sup):
        raise RagdistillError(
            f"reranker.train.loss weights {kd}, kd_weight={w_kd}, supervised_weight={w_sup}: each must be >= 0 and some "
            "term > 0, e.g. reranker.train.loss.margin_mse=1 reranker.train.loss.listwise_kl=1 reranker.train.loss.supervised_weight=1"
        )
    if float(loss_cfg.temperature) <= 0:
        raise RagdistillError(f"reranker.train.loss.temperature={loss_cfg.temperature}: must be > 0")
    parts = [
        Part("kd_margin_mse", MarginMSELoss(None), w_kd * kd["margin_mse"]),
        Part("kd_listwise_kl", ListwiseKLLoss(None, temperature=float(loss_cfg.temperature)), w_kd * kd["listwise_kl"]),
        Part("kd_mse", ScoreMSELoss(None), w_kd * kd["mse"]),
    ]
    if w_sup:
        name = _value(getattr(loss_cfg, "supervised", "ce"))
        parts.append(Part(f"sup_{name}", supervised_loss(name), w_sup, target="judged"))
    return WeightedSumLoss(model, parts, mini_batch_size, teacher_norm=_value(getattr(loss_cfg, "teacher_norm", "none")))


__all__ = ["SUPERVISED", "TEACHER_NORMS", "LibraryListLoss", "ListDistillationLoss", "ListwiseKLLoss", "MarginMSELoss", "Part",
           "PositiveCELoss", "ScoreMSELoss", "WeightedSumLoss", "build_loss", "pad_lists", "standardize_lists", "supervised_loss"]
