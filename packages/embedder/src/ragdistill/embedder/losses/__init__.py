"""Distillation losses for bi-encoders, organised like sentence-transformers' (one loss per class)."""

from ragdistill.embedder.losses.distillation import DistillationLoss
from ragdistill.embedder.losses.projected_mse import ProjectedMSELoss
from ragdistill.embedder.losses.text_mse import TextMSELoss

__all__ = ["DistillationLoss", "ProjectedMSELoss", "TextMSELoss"]
