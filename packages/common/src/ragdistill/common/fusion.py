"""Score fusion: a reranker's scores for a candidate list combined with the first stage's own scores
(``reranker.evaluate.fusion_weight`` in the reranker's evaluation, ``retrieval.rerank_fusion`` in the e2e pipeline).

The first stage hands its scores over with the list (BM25's, or the embedder's cosine), so adding
them back costs nothing at serving time. The default teacher is itself a hybrid (mpnet cosine plus a
BM25 term) while a small student learns mostly the semantic part: fused, it keeps what the first
stage already knew. Scores are z-normalised per list (a cross-encoder's logits, BM25 and cosine live
on different scales), then mixed as ``(1 - weight) * student + weight * first_stage``; ``weight`` 0.5
weighs both alike (CombSUM) and is the untuned default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragdistill.common.errors import RagdistillError


def zscores(scores: Sequence[float]) -> np.ndarray:
    """``(x - mean) / std`` over one list; a list of equal scores (std 0) becomes all zeros."""
    x = np.asarray(scores, dtype=np.float64)
    sd = float(x.std())
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def fuse(student: Sequence[float], first_stage: Sequence[float], weight: float) -> list[float]:
    """One list's fused scores: ``(1 - weight) * z(student) + weight * z(first_stage)``."""
    if not 0.0 <= weight <= 1.0:
        raise RagdistillError(f"fusion weight {weight} (reranker.evaluate.fusion_weight / retrieval.rerank_fusion): must lie "
                              "in [0, 1] (0 = the reranker alone, 1 = the first stage alone), or null to leave fusion out")
    if len(student) != len(first_stage):
        raise RagdistillError(f"score fusion: {len(student)} reranker scores for {len(first_stage)} first-stage scores")
    return ((1.0 - weight) * zscores(student) + weight * zscores(first_stage)).tolist()
