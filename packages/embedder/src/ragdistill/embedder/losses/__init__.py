"""Distillation losses for bi-encoders, organised like sentence-transformers' (one loss per class)."""

from ragdistill.embedder.losses.distillation import DistillationLoss
from ragdistill.embedder.losses.projected_mse import ProjectedMSELoss

__all__ = ["DistillationLoss", "ProjectedMSELoss"]
