"""One weighted sum of distillation losses over (query, positive, negative) triples, one forward pass."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss
from torch import Tensor, nn

from ragdistill.embedder.losses.projected_mse import ProjectedMSELoss


class DistillationLoss(nn.Module):
    """``sum_k w_k * loss_k`` over the same embeddings, so the student encodes each text once.

    Components (any subset, by weight):

    - ``mse``: :class:`ProjectedMSELoss` of query, positive and negative to their teacher embeddings;
    - ``mnrl``: ``MultipleNegativesRankingLoss`` (in-batch negatives + the teacher-mined negative);
    - ``margin_mse``: ``MarginMSELoss`` to the teacher's ``cos(q, pos) - cos(q, neg)``.

    Wrap it in ``MatryoshkaLoss`` to train every truncation (the forward pass is still shared).

    Inputs:
        +-----------------------------+---------------------------------------------------------------+
        | Texts                       | Labels (see :meth:`pack_labels`)                              |
        +=============================+===============================================================+
        | (anchor, positive, negative)| ``(batch, 3 * teacher_dim + 1)``: teacher embeddings of the   |
        |                             | three texts, then the teacher margin                          |
        +-----------------------------+---------------------------------------------------------------+
    """

    def __init__(self, model, weights: Mapping[str, float], teacher_dim: int, projection_dim: int | None = None,
                 mnrl_scale: float = 20.0) -> None:
        super().__init__()
        unknown = set(weights) - {"mse", "mnrl", "margin_mse"}
        if unknown or not weights:
            raise ValueError(f"weights must name some of mse, mnrl, margin_mse; got {dict(weights)}")
        self.model, self.teacher_dim = model, teacher_dim
        self.weights = {k: float(v) for k, v in weights.items()}
        self.mse = ProjectedMSELoss(model, projection_dim) if "mse" in weights else None
        self.mnrl = MultipleNegativesRankingLoss(model, scale=mnrl_scale) if "mnrl" in weights else None
        self.margin_mse = MarginMSELoss(model) if "margin_mse" in weights else None
        self.last: dict[str, float] = {}

    @staticmethod
    def pack_labels(t_query: np.ndarray, t_pos: np.ndarray, t_neg: np.ndarray, margin: np.ndarray) -> np.ndarray:
        """Rows of ``[t_query | t_pos | t_neg | margin]`` (float32)."""
        return np.concatenate([t_query, t_pos, t_neg, np.asarray(margin).reshape(-1, 1)], axis=1).astype(np.float32)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if len(embeddings) != 3:
            raise ValueError(f"DistillationLoss needs (anchor, positive, negative) columns, got {len(embeddings)}")
        t = self.teacher_dim
        if labels.shape[-1] != 3 * t + 1:
            raise ValueError(f"labels must be (batch, {3 * t + 1}) = 3 teacher embeddings + margin; got {tuple(labels.shape)}")
        parts: dict[str, Tensor] = {}
        if self.mse is not None:
            parts["mse"] = self.mse.compute_loss_from_embeddings(embeddings, [labels[:, i * t:(i + 1) * t] for i in range(3)])
        if self.mnrl is not None:
            parts["mnrl"] = self.mnrl.compute_loss_from_embeddings(embeddings, None)
        if self.margin_mse is not None:
            parts["margin_mse"] = self.margin_mse.compute_loss_from_embeddings(embeddings, labels[:, 3 * t])
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        return torch.stack([self.weights[k] * v for k, v in parts.items()]).sum()

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict:
        return {"weights": self.weights, "teacher_dim": self.teacher_dim,
                "projection_dim": self.mse.projection_dim if self.mse is not None else None}
