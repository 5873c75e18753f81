"""A query's score profile: its cosine to every document of the reference corpus, under one encoder.

What routing, calibrate and the monitor compare (``EmbedderStage.predictor`` returns one per
held-out or logged query): quality is the NDCG@10 of the ranking it induces against the query's
judgments; the student-teacher distance is 1 - the correlation of the two profiles (any widths
compare, and every document counts, which is steadier on a small sample than the top-k overlap);
the confidence signals are the margin between its two best documents and its best score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.metrics import evaluate_run

TOP_K = 10  # the overlap the monitor reports, and the NDCG cut-off


class ScoreProfile(np.ndarray):
    """Scores of one query over the reference corpus (float32, one per document in ``doc_ids`` order),
    carrying the query's embedding (``query``: the teacher's is its cached label, queued as is)."""

    query: np.ndarray | None
    doc_ids: Sequence[str]

    def __new__(cls, scores: Any, query: np.ndarray | None, doc_ids: Sequence[str]) -> ScoreProfile:
        obj = np.asarray(scores, dtype=np.float32).view(cls)
        obj.query, obj.doc_ids = query, doc_ids
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.query = getattr(obj, "query", None)
        self.doc_ids = getattr(obj, "doc_ids", ())


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def profiles(queries: np.ndarray, docs_unit: np.ndarray, doc_ids: Sequence[str]) -> list[ScoreProfile]:
    """One profile per query row (``queries`` as the encoder returned them; scores on unit vectors)."""
    scores = unit_rows(queries) @ docs_unit.T
    return [ScoreProfile(s, q, doc_ids) for s, q in zip(scores, queries, strict=True)]


def ndcg_at_10(records: list[dict[str, Any]], outputs: Sequence[np.ndarray]) -> list[float]:
    """Per record, NDCG@10 (pytrec_eval, as evaluate) of the top-100 ranking of its profile against
    ``record["relevant"]``."""
    qrels, run = {}, {}
    for i, (r, p) in enumerate(zip(records, outputs, strict=True)):
        if not r.get("relevant"):
            raise RagdistillError(f"embedder quality: record {r.get('id', i)!r} has no 'relevant' judgments "
                                  "({doc id: relevance}); only held-out records can be scored")
        key = f"{i}:{r.get('id', i)}"
        top = np.argsort(-np.asarray(p, dtype=np.float32), kind="stable")[:100]
        qrels[key] = {str(d): int(v) for d, v in r["relevant"].items()}
        run[key] = {str(p.doc_ids[j]): float(p[j]) for j in top}
    per_query = evaluate_run(qrels, run, ("ndcg@10",), per_query=True)["per_query"]
    return [float(per_query[k]["ndcg@10"]) for k in qrels]


def profile_correlation(student: np.ndarray, teacher: np.ndarray) -> float:
    """Pearson correlation of two score profiles over the same documents."""
    s = np.asarray(student, dtype=np.float64)
    t = np.asarray(teacher, dtype=np.float64)
    if s.shape != t.shape:
        raise RagdistillError(f"embedder: score profiles over different corpora ({s.shape[0]} vs {t.shape[0]} documents)")
    sc, tc = s - s.mean(), t - t.mean()
    return float((sc * tc).sum() / max(float(np.linalg.norm(sc) * np.linalg.norm(tc)), 1e-12))


def disagreement(student: np.ndarray, teacher: np.ndarray) -> float:
    """1 - the profiles' correlation, in [0, 1] (an anti-correlated profile counts as 1)."""
    return float(min(1.0, max(0.0, 1.0 - profile_correlation(student, teacher))))


def divergence(student: Sequence[np.ndarray], teacher: Sequence[np.ndarray], k: int = TOP_K) -> dict[str, float]:
    """The monitor's figures: ``divergence`` = 1 - the mean profile correlation, the top-``k`` overlap
    of the two rankings and, when both embed in one space (same width), the cosine of the query vectors."""
    if not student:
        return {f"top{k}_overlap": 0.0, "score_profile_corr": 0.0, "divergence": 0.0}
    n_docs = len(student[0])
    if n_docs < k:
        raise RagdistillError(f"embedder monitor: the reference corpus has {n_docs} documents, need at least k={k}")
    corr = np.array([profile_correlation(s, t) for s, t in zip(student, teacher, strict=True)])
    overlap = [len(set(np.argsort(-np.asarray(s), kind="stable")[:k]) & set(np.argsort(-np.asarray(t), kind="stable")[:k])) / k
               for s, t in zip(student, teacher, strict=True)]
    out = {f"top{k}_overlap": float(np.mean(overlap)), "score_profile_corr": float(corr.mean()), "divergence": float(1 - corr.mean())}
    sq = [getattr(s, "query", None) for s in student]
    tq = [getattr(t, "query", None) for t in teacher]
    if all(q is not None for q in sq + tq) and len({np.shape(q) for q in sq + tq}) == 1:
        out["cosine"] = float((unit_rows(np.stack(sq)) * unit_rows(np.stack(tq))).sum(1).mean())
    return out
