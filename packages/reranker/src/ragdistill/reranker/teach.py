"""reranker teach: first-stage candidates for the training queries, scored by the teacher.

Writes ``<work>/reranker/teach/train.jsonl`` (one candidate list per kept query, judged positive
first, teacher score and judged relevance per candidate; with ``reranker.teach.positive_bonus`` the
judgments are folded into the teacher's scores, a teacher that knows the answer); the counts and the filter's report go into the teach result
(``teach.json``). Scores go through the label cache (resumable; the shipped labels of
``reranker.teach.shipped_labels`` are imported once), so rerunning costs nothing. Queries on which
the teacher is ambiguous (its positive does not beat the negatives by
``reranker.teach.filter.min_margin``) are dropped and counted: distilling a teacher's confusion
only teaches confusion (with a positive bonus the filter sees the corrected teacher).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.results import TeachResult
from ragdistill.reranker.candidates import first_stage
from ragdistill.reranker.lists import ScoredList, load_data, positive_first, score_lists, train_lists_file

log = get_logger(__name__)


def teacher_margin(lst: ScoredList, positives: dict[str, int], against_rank: int) -> float | None:
    """Teacher score of the positive (index 0) minus its ``against_rank``-th best negative."""
    negs = sorted((s for d, s in zip(lst.doc_ids[1:], lst.teacher_scores[1:], strict=True) if positives.get(d, 0) <= 0), reverse=True)
    if not negs:
        return None
    return lst.teacher_scores[0] - negs[min(against_rank, len(negs)) - 1]


def fold_labels(scores: list[float], labels: list[int], bonus: float) -> list[float]:
    """The teacher's list scores with the judged labels folded in: every judged positive
    (``label > 0``) raised by ``bonus`` standard deviations of the list's scores. In std units the
    bonus means the same for a narrow hybrid teacher (cosine + BM25) and a wide cross-encoder, and a
    teacher that ranks the positive low is corrected by how much, not overruled to a fixed score."""
    std = float(np.std(scores)) if len(scores) > 1 else 0.0
    return [s + bonus * std * (y > 0) for s, y in zip(scores, labels, strict=True)]


def teach(cfg: Any, teacher: Any) -> TeachResult:
    """Score the training lists with ``teacher`` (the stage's ``CachedTeacher``), filter, write them."""
    rc = cfg.reranker
    fc = rc.teach.filter
    data = load_data(cfg)
    split = cfg.data.train_split
    queries, qrels = data.split(split)
    if not queries:
        raise RagdistillError(f"data {(cfg.data.path or cfg.data.name)!r} split {split!r} has no judged queries to teach on")
    cands = first_stage(data, split, int(rc.candidates.train_k), rc.candidates.file, require_positive=True)
    lists = {}
    for q, c in cands.items():
        pc = positive_first(c, qrels[q], bool(rc.candidates.always_include_positive))
        if pc is not None and len(pc.doc_ids) >= 2:
            lists[q] = pc
    if not lists:
        raise RagdistillError(f"no training query has a candidate list with a positive and a negative (split {split!r})")
    scored, run = score_lists(teacher, data, lists, "reranker teacher scores (train)")
    teacher_id = run.teacher_id or teacher.teacher_id
    bonus = float(rc.teach.positive_bonus)
    for lst in scored:  # the judgments travel with the list: train's supervised loss reads them
        lst.labels = [int(qrels[lst.query_id].get(d, 0)) for d in lst.doc_ids]
        if bonus:
            lst.teacher_scores = fold_labels(lst.teacher_scores, lst.labels, bonus)
    kept, dropped = [], []
    for lst in scored:
        m = teacher_margin(lst, qrels[lst.query_id], int(fc.against_rank))
        if fc.enabled and (m is None or m < float(fc.min_margin)):
            dropped.append({"query_id": lst.query_id, "margin": m})
        else:
            kept.append(lst)
    if not kept:
        raise RagdistillError(
            f"the ambiguity filter dropped all {len(scored)} training queries (reranker.teach.filter.min_margin="
            f"{fc.min_margin}); lower it or set reranker.teach.filter.enabled=false"
        )
    out = train_lists_file(cfg)
    write_jsonl(out, [lst.as_row() for lst in kept])
    result = TeachResult("reranker", n_items=len(scored), kept=len(kept), details={
        "teacher": teacher_id, "data": (cfg.data.path or cfg.data.name), "split": split, "queries": len(scored),
        "kept": len(kept), "dropped_ambiguous": len(dropped), "pairs_scored": sum(len(x.doc_ids) for x in scored),
        "filter": {"min_margin": float(fc.min_margin), "against_rank": int(fc.against_rank), "enabled": bool(fc.enabled)},
        "positive_bonus": bonus,
        "dropped": dropped,
    })
    result.count_labels(run)
    log.info("%d training queries scored by %s: kept %d, dropped %d ambiguous (positive not above the #%d negative by >= %s); "
             "%d labels from the cache, %d from the teacher; lists in %s", len(scored), teacher_id, len(kept), len(dropped),
             fc.against_rank, fc.min_margin, result.cached, result.teacher_calls, out)
    return result
