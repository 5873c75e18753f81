"""MSE to teacher embeddings, through a learned projection when the widths differ."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
from torch import Tensor


class ProjectedMSELoss(EmbedDistillLoss):
    """Squared L2 distance between the (projected) student embedding and the teacher's.

    ``loss = mean_batch || P(s) - t ||^2`` per text column, averaged over columns, where ``P`` is a
    learned ``Linear(student_dim, teacher_dim)`` when ``projection_dim`` is set, else identity.
    The distance is summed over dimensions (not averaged as in ``MSELoss``), so its scale does not
    shrink with the teacher's width and its weight against ranking losses stays meaningful.

    Matryoshka-aware: a student embedding truncated to its first ``d`` coordinates (inside
    ``MatryoshkaLoss``) is projected with the first ``d`` input columns of ``P``; without a
    projection the teacher target is truncated to ``d`` and re-normalised the same way as the
    student (this is the PCA path, where the target's coordinates are ordered by variance).
    Call :meth:`init_projection` to start ``P`` at the ridge least-squares fit of teacher on
    student embeddings instead of at random, so the first steps do not push the student toward noise.

    Inputs:
        +-----------------------------------+-----------------------------------------------------+
        | Texts                             | Labels                                              |
        +===================================+=====================================================+
        | text_1, ..., text_N               | teacher embeddings ``(batch, N, teacher_dim)``      |
        |                                   | or ``(batch, teacher_dim)`` (broadcast)             |
        +-----------------------------------+-----------------------------------------------------+
    """

    def __init__(self, model, projection_dim: int | None = None) -> None:
        super().__init__(model, distance_metric="mse", projection_dim=projection_dim)

    def project(self, student_emb: Tensor) -> Tensor:
        if self.projection is None:
            return student_emb
        d = student_emb.shape[-1]
        return F.linear(student_emb, self.projection.weight[:, :d], self.projection.bias)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], teacher_embeddings: list[Tensor]) -> Tensor:
        losses = []
        for student_emb, teacher_emb in zip(embeddings, teacher_embeddings, strict=True):
            teacher_emb = teacher_emb.to(device=student_emb.device, dtype=student_emb.dtype)
            d = student_emb.shape[-1]
            if self.projection is None and d < teacher_emb.shape[-1]:
                teacher_emb = F.normalize(teacher_emb[..., :d], p=2, dim=-1)
            losses.append((self.project(student_emb) - teacher_emb).pow(2).sum(-1).mean())
        return torch.stack(losses).mean()

    @torch.no_grad()
    def init_projection(self, student_emb: np.ndarray, teacher_emb: np.ndarray, ridge: float = 0.1) -> float:
        """Set ``P`` to the ridge least-squares map student -> teacher; returns the fitted loss."""
        if self.projection is None:
            raise ValueError("no projection to initialise: construct with projection_dim")
        s = np.concatenate([student_emb, np.ones((len(student_emb), 1))], axis=1).astype(np.float64)
        t = np.asarray(teacher_emb, dtype=np.float64)
        reg = ridge * np.eye(s.shape[1])
        reg[-1, -1] = 0.0  # the bias is not shrunk
        w = np.linalg.solve(s.T @ s + reg, s.T @ t)  # (student_dim + 1, teacher_dim)
        self.projection.weight.copy_(torch.from_numpy(w[:-1].T).to(self.projection.weight))
        self.projection.bias.copy_(torch.from_numpy(w[-1]).to(self.projection.bias))
        return float(((s @ w - t) ** 2).sum(-1).mean())
