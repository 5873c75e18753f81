"""reranker teach: first-stage candidates for the training queries, scored by the cross-encoder teacher.

Writes ``<work>/reranker/teach/train.jsonl`` (one candidate list per kept query, judged positive
first, teacher score per candidate) and ``stats.json``. Scores go through the common label cache
(resumable; shipped labels are imported first), so rerunning costs nothing. Queries on which the
teacher is ambiguous (its positive does not beat the negatives by ``reranker.filter.min_margin``)
are dropped and counted: distilling a teacher's confusion only teaches confusion.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_json, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.reranker.candidates import first_stage
from ragdistill.reranker.lists import ScoredList, import_shipped_labels, load_data, open_cache, positive_first, score_lists
from ragdistill.reranker.teachers import make_teacher

log = get_logger(__name__)


def teacher_margin(lst: ScoredList, positives: dict[str, int], against_rank: int) -> float | None:
    """Teacher score of the positive (index 0) minus its ``against_rank``-th best negative."""
    negs = sorted((s for d, s in zip(lst.doc_ids[1:], lst.teacher_scores[1:], strict=True) if positives.get(d, 0) <= 0), reverse=True)
    if not negs:
        return None
    return lst.teacher_scores[0] - negs[min(against_rank, len(negs)) - 1]


def teach(cfg: Any) -> dict[str, Any]:
    rc = cfg.reranker
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
    teacher = make_teacher(cfg)
    cache = open_cache(cfg)
    try:
        imported = import_shipped_labels(cfg, cache)
        scored = score_lists(teacher, cache, data, lists, int(cfg.teacher.batch_size), "reranker teacher scores (train)", cfg)
    finally:
        cache.close()
    kept, dropped = [], []
    for lst in scored:
        m = teacher_margin(lst, qrels[lst.query_id], int(rc.filter.against_rank))
        if rc.filter.enabled and (m is None or m < float(rc.filter.min_margin)):
            dropped.append({"query_id": lst.query_id, "margin": m})
        else:
            kept.append(lst)
    if not kept:
        raise RagdistillError(
            f"the ambiguity filter dropped all {len(scored)} training queries (reranker.filter.min_margin="
            f"{rc.filter.min_margin}); lower it or set reranker.filter.enabled=false"
        )
    out = stage_dir(cfg, "reranker", "teach")
    write_jsonl(out / "train.jsonl", [lst.as_row() for lst in kept])
    stats = {
        "teacher": teacher.teacher_id, "data": (cfg.data.path or cfg.data.name), "split": split, "queries": len(scored),
        "kept": len(kept), "dropped_ambiguous": len(dropped), "pairs_scored": sum(len(x.doc_ids) for x in scored),
        "labels_imported": imported, "filter": {"min_margin": float(rc.filter.min_margin), "against_rank": int(rc.filter.against_rank),
                                               "enabled": bool(rc.filter.enabled)},
        "dropped": dropped,
    }
    write_json(out / "stats.json", stats)
    print(f"[reranker teach] {len(scored)} training queries scored by {teacher.teacher_id}: kept {len(kept)}, "
          f"dropped {len(dropped)} ambiguous (positive not above the #{rc.filter.against_rank} negative by "
          f">= {rc.filter.min_margin}); lists in {out / 'train.jsonl'}", flush=True)
    return stats
