"""Candidate lists with teacher scores: what teach writes, train reads and evaluate rebuilds.

One place builds a split's lists (first stage, positive placement) and scores them with the
teacher through the common label cache, so teach and evaluate never disagree on inputs and a
pair the teacher has scored once is never scored again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.cache import LabelCache, Shard
from ragdistill.common.data import RetrievalData, load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.labelling import launch_settings, run_labelling
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import data_dir
from ragdistill.reranker.candidates import CandidateList

log = get_logger(__name__)

PAIR_TEMPLATE = "rerank-pair:v1"  # part of every cached label's key: (query text, document text)


@dataclass
class ScoredList:
    """A query's candidates with the teacher's score for each (positive first when training)."""

    query_id: str
    query: str
    doc_ids: list[str]
    teacher_scores: list[float]
    first_stage_scores: list[float]

    def as_row(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "query": self.query, "doc_ids": self.doc_ids,
                "teacher_scores": self.teacher_scores, "first_stage_scores": self.first_stage_scores}


def load_data(cfg: Any) -> RetrievalData:
    return load_retrieval((cfg.data.path or cfg.data.name), cfg.data.max_queries, cfg.data.max_docs)


def open_cache(cfg: Any) -> LabelCache:
    return LabelCache(cfg.paths.label_cache, shard=Shard.parse(cfg.run.shard))


def default_labels_file(cfg: Any) -> Path:
    """Where the data's shipped teacher labels live: ``<data>/labels/reranker-<data.name>.jsonl.gz``."""
    return data_dir() / "labels" / f"reranker-{cfg.data.name}.jsonl.gz"


def shipped_labels_file(cfg: Any) -> Path | None:
    """``reranker.labels_file``: ``auto`` -> ``<data>/labels/reranker-<data.name>.jsonl.gz`` (or ``.jsonl``) if present."""
    spec = cfg.reranker.labels_file
    if spec in (None, "", "none", "null"):
        return None
    if spec == "auto":
        gz = default_labels_file(cfg)
        plain = gz.with_suffix("")  # an uncompressed export from before labels shipped as gzip
        return gz if gz.is_file() else plain if plain.is_file() else None
    p = Path(spec)
    if not p.is_file():
        raise RagdistillError(f"reranker.labels_file={spec}: no such file; pass a label-cache export (.jsonl or .jsonl.gz), auto or null")
    return p


def import_shipped_labels(cfg: Any, cache: LabelCache) -> int:
    f = shipped_labels_file(cfg)
    if f is None:
        return 0
    n = cache.import_jsonl(f)
    log.info("imported %d teacher labels from %s", n, f)
    return n


def positive_first(cand: CandidateList, positives: dict[str, int], include_missing: bool) -> CandidateList | None:
    """The best-ranked judged positive moved to the front; if the first stage missed every
    positive, the first judged one is prepended (training only) or the list is dropped."""
    ranked = [d for d in cand.doc_ids if positives.get(d, 0) > 0]
    if ranked:
        pos = ranked[0]
        i = cand.doc_ids.index(pos)
        order = [i] + [j for j in range(len(cand.doc_ids)) if j != i]
        return CandidateList(cand.query_id, [cand.doc_ids[j] for j in order], [cand.scores[j] for j in order])
    if not include_missing:
        return None
    pos = sorted(positives)[0]
    return CandidateList(cand.query_id, [pos, *cand.doc_ids[:-1]], [max(cand.scores, default=0.0), *cand.scores[:-1]])


def score_lists(teacher: Any, cache: LabelCache, data: RetrievalData, cands: dict[str, CandidateList], batch_size: int, desc: str,
                cfg: Any = None) -> list[ScoredList]:
    """Teacher scores for every (query, candidate) pair, through the label cache; ``cfg.run.launcher``
    decides where the teacher runs (``local``/``shards`` here, ``ray``: Ray Data workers building
    the teacher from its config, see ``ragdistill.common.labelling``)."""
    qids = list(cands)
    inputs = [[data.queries[q], data.corpus[d].full_text] for q in qids for d in cands[q].doc_ids]
    if cfg is not None and launch_settings(cfg).launcher == "ray":
        if teacher.config is None:
            raise RagdistillError(
                f"run.launcher=ray: the teacher {teacher.model_name!r} exists only on this machine (built by build-teacher); "
                "label it with run.launcher=local or shards, or use a teacher buildable anywhere (teacher=hybrid-mpnet-bm25, a hub id)")
        labels = run_labelling(cache, teacher.config, "score", inputs, cfg, template=PAIR_TEMPLATE, batch_size=batch_size, desc=desc,
                               teacher_id=teacher.teacher_id).labels
    else:
        labels = run_labelling(cache, None, "score", inputs, cfg, template=PAIR_TEMPLATE, batch_size=batch_size, desc=desc,
                               teacher=teacher).labels
    if any(v is None for v in labels):
        raise RagdistillError(
            f"{desc}: some pairs belong to another shard (run.shard={cache.shard}); merge the shard caches "
            "(LabelCache.import_jsonl) before training or evaluating"
        )
    out, i = [], 0
    for q in qids:
        n = len(cands[q].doc_ids)
        out.append(ScoredList(q, data.queries[q], list(cands[q].doc_ids), [float(x) for x in labels[i : i + n]], list(cands[q].scores)))
        i += n
    return out


def export_labels(cfg: Any) -> Path:
    """``ragdistill reranker export-labels``: the teacher's cached pair scores as JSONL, to ship
    with the repo (``data/labels/reranker-<data>.jsonl``) so ``teach``/``evaluate`` on another
    machine read them instead of loading (or building) the teacher."""
    from ragdistill.reranker.teachers import make_teacher

    spec = cfg.reranker.labels_file
    target = default_labels_file(cfg) if spec in (None, "", "auto", "none", "null") else Path(spec)
    teacher = make_teacher(cfg)
    cache = open_cache(cfg)
    try:
        n = cache.export_jsonl(target, teacher.teacher_id)
    finally:
        cache.close()
    if n == 0:
        raise RagdistillError(f"the label cache {cfg.paths.label_cache} holds no labels of {teacher.teacher_id}; run teach/evaluate first")
    print(f"[reranker export-labels] {n} labels of {teacher.teacher_id} -> {target}", flush=True)
    return target
