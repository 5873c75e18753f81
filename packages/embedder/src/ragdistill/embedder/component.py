"""The embedder as a pipeline component: ``component(cfg, variant)`` -> an :class:`~ragdistill.common.pipeline.Encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.pipeline import VARIANTS


def component(cfg: Any, variant: str) -> Any:
    """Texts -> L2-normalised embeddings from the teacher, the undistilled student, the distilled
    student or its ONNX export (queries and documents embed alike: symmetric bi-encoders)."""
    from ragdistill.embedder.evaluate import build_system

    if variant not in VARIANTS:
        raise RagdistillError(f"embedder component: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    system = build_system(cfg, variant)

    def encode(texts: list[str], is_query: bool = False) -> np.ndarray:
        return system.encode(list(texts))

    path = _model_path(cfg, variant)
    if path is not None:  # the harness reports its size on disk
        encode.model_path = str(path)  # type: ignore[attr-defined]
    return encode


def _model_path(cfg: Any, variant: str) -> Path | None:
    """The files the variant loads (the ONNX export: its fp32 graph), so the harness can measure them;
    None for a teacher that is not one local model (an ensemble, an endpoint)."""
    from ragdistill.common.models import resolve_model
    from ragdistill.embedder.export import FP32_FILE
    from ragdistill.embedder.models import export_dir, trained_model_dir

    if variant == "teacher":
        return Path(resolve_model(cfg.teacher.model)) if cfg.teacher.backend == "sentence_transformer" and cfg.teacher.model else None
    if variant == "student_base":
        return Path(resolve_model(cfg.student.model))
    return trained_model_dir(cfg) if variant == "student" else export_dir(cfg) / FP32_FILE
