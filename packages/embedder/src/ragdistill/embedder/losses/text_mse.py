"""MSE to the teacher's embedding for single texts (no judged positive), sharing the triples' projection."""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn

from ragdistill.embedder.losses.projected_mse import ProjectedMSELoss


class TextMSELoss(nn.Module):
    """``weight * ProjectedMSELoss`` over one text column: feature distillation of texts that cannot
    form a (query, positive, negative) triple, e.g. failure-queue queries.

    ``mse`` is the :class:`ProjectedMSELoss` of the triples' :class:`DistillationLoss` (one learned
    projection for both datasets). Without a projection the target is renormalised, so a Matryoshka
    truncation of it (``MatryoshkaLoss`` cuts labels as wide as the student) is compared exactly as
    the triples' truncated targets are.

    Inputs:
        +--------+-------------------------------------------------+
        | Texts  | Labels                                          |
        +========+=================================================+
        | text   | the teacher embedding ``(batch, teacher_dim)``  |
        +--------+-------------------------------------------------+
    """

    def __init__(self, model, mse: ProjectedMSELoss, weight: float = 1.0) -> None:
        super().__init__()
        self.model, self.mse, self.weight = model, mse, float(weight)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if len(embeddings) != 1:
            raise ValueError(f"TextMSELoss needs one text column, got {len(embeddings)}")
        target = labels if self.mse.projection is not None else F.normalize(labels, p=2, dim=-1)
        return self.weight * self.mse.compute_loss_from_embeddings(embeddings, [target])

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict:
        return {"weight": self.weight, "projection_dim": self.mse.projection_dim}
