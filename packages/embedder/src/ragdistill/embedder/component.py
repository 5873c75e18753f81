"""The embedder as a pipeline component: ``component(cfg, variant)`` -> an :class:`~ragdistill.common.pipeline.Encoder`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ragdistill.embedder.systems import build_system


def component(cfg: Any, variant: str) -> Any:
    """Texts -> L2-normalised embeddings from the teacher, the undistilled student, the distilled
    student or its ONNX exports (queries and documents embed alike: symmetric bi-encoders)."""
    system = build_system(cfg, variant)

    def encode(texts: list[str], is_query: bool = False) -> np.ndarray:
        return system.encode(list(texts))

    if system.path is not None:  # the harness reports its size on disk
        encode.model_path = str(system.path)  # type: ignore[attr-defined]
    return encode
