"""The embedder as a pipeline component: ``component(cfg, variant)`` -> an :class:`~ragdistill.common.pipeline.Encoder`."""

from __future__ import annotations

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

    return encode
