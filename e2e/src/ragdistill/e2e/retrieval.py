"""First-stage retrieval for the harness: a faiss inner-product index over an encoder's vectors,
built once per (encoder, corpus) and cached on disk; routed, two of them (student and teacher)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ragdistill.common.data import Document
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.pipeline import Encoder

log = get_logger(__name__)


class FaissRetriever:
    """Exact inner-product search (vectors are normalised, so cosine) over ``corpus``."""

    def __init__(self, encoder: Encoder, corpus: dict[str, Document], cache_dir: Path, encoder_id: str, batch_size: int = 64) -> None:
        self.encoder, self.doc_ids = encoder, list(corpus)
        key = hashlib.sha256((encoder_id + "\n" + "\n".join(self.doc_ids)).encode()).hexdigest()[:16]
        path = cache_dir / f"{key}.faiss"
        self.built_now = not path.exists()
        if self.built_now:
            texts = [corpus[d].full_text for d in self.doc_ids]
            vecs = np.concatenate([encoder(texts[i : i + batch_size], is_query=False) for i in range(0, len(texts), batch_size)])
            index = faiss.IndexFlatIP(vecs.shape[1])
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            with atomic_path(path) as tmp:
                faiss.write_index(index, str(tmp))
            log.info("built faiss index %s (%d docs, dim %d)", path, len(texts), vecs.shape[1])
        self.index = faiss.read_index(str(path))
        self.index_path = path

    def __call__(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        q = np.ascontiguousarray(self.encoder(queries, is_query=True), dtype=np.float32)
        scores, idx = self.index.search(q, min(k, len(self.doc_ids)))
        return [[(self.doc_ids[j], float(s)) for j, s in zip(row_i, row_s, strict=True) if j >= 0] for row_i, row_s in zip(idx, scores, strict=True)]


# signals of a ranking's scores: what a routed first stage can compute from the hits it returned
SCORE_SIGNALS = ("margin", "top_score", "neg_entropy")


@dataclass
class RoutedEncoders:
    """``pipeline.embedder=routed`` as loaded: the stage's student and teacher encoders and the
    threshold ``ragdistill <stage> calibrate`` chose on ``signal`` (a signal of retrieval scores)."""

    student: Encoder
    teacher: Encoder
    signal: str
    threshold: float

    @property
    def model_path(self) -> str | None:  # the deployed (student) model, as the report sizes it
        return getattr(self.student, "model_path", None)


class RoutedRetriever:
    """A routed first stage: two faiss indexes (student and teacher encoders); every query is answered
    from the student's index, and when the calibrated signal of the student's returned scores (the
    margin between its two best hits, or its best score) is below the threshold, from the teacher's
    instead. :meth:`stats` (teacher calls, fraction, time on each path) goes to the report, as for
    the other routed slots."""

    def __init__(self, student: FaissRetriever, teacher: FaissRetriever, signal: str, threshold: float) -> None:
        from ragdistill.common.ops.router import RoutedComponent
        from ragdistill.common.signals import get_signal

        confidence = get_signal(signal)
        self.student, self.teacher, self.doc_ids = student, teacher, student.doc_ids
        self.routed = RoutedComponent(lambda query, k: student([query], k)[0], lambda query, k: teacher([query], k)[0],
                                      lambda hits, query, k: confidence([s for _, s in hits]), threshold, signal)

    def __call__(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        return [self.routed(q, k) for q in queries]

    def warm_up(self, queries: list[str], k: int) -> None:
        """One untimed query through each index (not counted in the stats)."""
        for q in queries:
            self.routed.warm_up(q, k)

    def stats(self) -> dict[str, Any]:
        return self.routed.stats()

    def reset(self) -> None:
        self.routed.reset()
