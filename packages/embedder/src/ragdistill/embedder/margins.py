"""MarginMSE targets from a scoring teacher: cross-architecture distillation into the bi-encoder.

The sentence-transformers MS MARCO recipe trains a bi-encoder on a cross-encoder's margins
``s(q, pos) - s(q, neg)``: the scorer reads query and document together, so its margins carry
what an embedding teacher's cosines cannot. ``embedder.train.margin_teacher`` is any scoring
teacher config of ``ragdistill.common.teachers`` (the reranker's default ``hybrid-mpnet-bm25``, a
cross-encoder, ``bm25``). Its scores go through the label cache keyed exactly as the reranker keys
its own (the teacher's id, :data:`~ragdistill.common.teachers.cached.PAIR_TEMPLATE`, the
``[query text, document text]`` pair), so pairs either stage scored are read, not scored again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from omegaconf import OmegaConf, open_dict

from ragdistill.common.data import RetrievalData, Triple
from ragdistill.common.errors import RagdistillError
from ragdistill.common.teachers.cached import PAIR_TEMPLATE, CachedTeacher, TemplateCall
from ragdistill.embedder.data import data_source

SCORING_BACKENDS = ("cross_encoder", "bm25", "ensemble", "sentence_transformer")


def margin_teacher_config(cfg: Any) -> dict[str, Any]:
    """``embedder.train.margin_teacher`` as a dict, a ``bm25`` teacher or member with an empty ``model``
    bound to the data being trained on (as the reranker binds it: its id then names that corpus)."""
    node = cfg.embedder.train.margin_teacher
    if node is None:
        raise RagdistillError("embedder.train.margin_teacher is not set")
    t: dict[str, Any] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)  # type: ignore[assignment]
    if t.get("backend") not in SCORING_BACKENDS:
        raise RagdistillError(
            f"embedder.train.margin_teacher.backend={t.get('backend')!r} does not score (query, document) pairs; give a scoring "
            f"teacher ({', '.join(SCORING_BACKENDS)}), e.g. teacher@embedder.train.margin_teacher=hybrid-mpnet-bm25")
    source = data_source(cfg)
    for m in [t, *(t.get("members") or [])]:
        if m.get("backend") == "bm25" and not m.get("model"):
            m["model"] = source
    if t.get("backend") == "cross_encoder":
        if not t.get("model"):
            raise RagdistillError("embedder.train.margin_teacher.model is not set; name a cross-encoder (folder or hub id)")
        t["max_length"] = int(t.get("max_length") or 256)
    return t


def margin_teacher(cfg: Any) -> CachedTeacher:
    """The margin teacher behind the stage's label cache (capability ``score``, pairs under ``PAIR_TEMPLATE``)."""
    t = margin_teacher_config(cfg)
    bound = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(bound):
        bound.teacher = t  # Ray workers build the scorer from this (a bm25 member bound to the data)
    # a cross-encoder's id is known without loading it (the reranker keys it alike)
    key_id = f"ce:{t['model']}:len={t['max_length']}" if t.get("backend") == "cross_encoder" else None
    return CachedTeacher(bound, "score", key_id=key_id, calls={PAIR_TEMPLATE: TemplateCall()})


def teacher_margins(teacher: CachedTeacher, triples: Sequence[Triple], data: RetrievalData) -> tuple[np.ndarray, Any]:
    """Per triple, the scorer's ``s(query, positive) - s(query, negative)`` (each distinct pair scored
    once, through the cache), and the label run (its counts)."""
    pairs: dict[tuple[str, str], int] = {}
    for t in triples:
        for d in (t.pos_id, t.neg_id):
            pairs.setdefault((t.query_id, d), len(pairs))
    inputs = [[data.queries[q], data.corpus[d].full_text] for q, d in pairs]
    run = teacher.label(inputs, PAIR_TEMPLATE, desc="margin teacher: (query, document) scores", complete=True)
    scores = np.asarray(run.labels, dtype=np.float64).reshape(-1)
    margins = np.array([scores[pairs[(t.query_id, t.pos_id)]] - scores[pairs[(t.query_id, t.neg_id)]] for t in triples],
                       dtype=np.float32)
    return margins, run
