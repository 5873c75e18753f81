"""Candidate lists with teacher scores: what teach writes, train reads and evaluate rebuilds.

One place builds a split's lists (first stage, positive placement) and scores them with the
teacher through the label cache (:func:`ragdistill.reranker.teachers.cached_teacher`), so teach,
evaluate, calibrate and the monitor never disagree on inputs and a pair the teacher has scored
once is never scored again. Queued pairs (the failure queue) come back here as new training lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragdistill.common.data import RetrievalData, load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir
from ragdistill.reranker.candidates import CandidateList, first_stage

log = get_logger(__name__)
PAIR_TEMPLATE = "rerank-pair:v1"  # part of every cached label's key: (query text, document text)


@dataclass
class ScoredList:
    """A query's candidates with the teacher's score for each (positive first when training) and,
    for training lists, each candidate's judged relevance (the qrels; 0 = not judged relevant)."""

    query_id: str
    query: str
    doc_ids: list[str]
    teacher_scores: list[float]
    first_stage_scores: list[float]
    labels: list[int] | None = None

    def as_row(self) -> dict[str, Any]:
        row = {"query_id": self.query_id, "query": self.query, "doc_ids": self.doc_ids,
               "teacher_scores": self.teacher_scores, "first_stage_scores": self.first_stage_scores}
        return row if self.labels is None else {**row, "labels": self.labels}


def load_data(cfg: Any) -> RetrievalData:
    return load_retrieval((cfg.data.path or cfg.data.name), cfg.data.max_queries, cfg.data.max_docs)


def train_lists_file(cfg: Any) -> Any:
    """``<work>/reranker/teach/train.jsonl``: teach's kept lists, which train reads."""
    return stage_dir(cfg, "reranker", "teach") / "train.jsonl"


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


def pairs_of(data: RetrievalData, cands: dict[str, CandidateList]) -> list[list[str]]:
    """Every (query, candidate) pair as the teacher labels it: ``[query text, document text]``."""
    return [[data.queries[q], data.corpus[d].full_text] for q in cands for d in cands[q].doc_ids]


def score_lists(teacher: Any, data: RetrievalData, cands: dict[str, CandidateList], desc: str) -> tuple[list[ScoredList], Any]:
    """Teacher scores for every (query, candidate) pair, through the label cache of ``teacher`` (a
    ``CachedTeacher``; ``run.launcher`` decides where the teacher runs); also the label run (its counts)."""
    run = teacher.label(pairs_of(data, cands), PAIR_TEMPLATE, desc=desc, complete=True)
    out, i = [], 0
    for q, c in cands.items():
        n = len(c.doc_ids)
        out.append(ScoredList(q, data.queries[q], list(c.doc_ids), [float(x) for x in run.labels[i : i + n]], list(c.scores)))
        i += n
    return out, run


def held_out_lists(cfg: Any, data: RetrievalData | None = None) -> tuple[RetrievalData, dict, dict[str, CandidateList]]:
    """The data, qrels and candidate lists ``evaluate`` reranks on the held-out split (two candidates at least)."""
    data = data or load_data(cfg)
    split = cfg.data.test_split
    _, qrels = data.split(split)
    cands = first_stage(data, split, int(cfg.reranker.candidates.eval_k), cfg.reranker.candidates.file)
    cands = {q: c for q, c in cands.items() if q in qrels and len(c.doc_ids) >= 2}
    if not cands:
        raise RagdistillError(f"no held-out candidate lists (split {split!r} of {(cfg.data.path or cfg.data.name)!r})")
    return data, qrels, cands


def held_out_records(cfg: Any, n: int | None = None) -> list[dict[str, Any]]:
    """The first ``n`` held-out lists as records: the component's arguments (``query``, ``docs``) plus
    what quality needs (``id``, ``doc_ids``, ``qrels``)."""
    data, qrels, cands = held_out_lists(cfg)
    return [{"id": q, "query": data.queries[q], "docs": [data.corpus[d].full_text for d in c.doc_ids], "doc_ids": list(c.doc_ids),
             "qrels": dict(qrels[q])} for q, c in list(cands.items())[:n]]


def append_queued_lists(cfg: Any, items: list[tuple[Any, Any, str]]) -> dict[str, Any]:
    """Fold queued ``([query, document text], teacher score, template)`` items into ``teach/train.jsonl``.

    Pairs are grouped by query (queries teach already has are skipped, a document once per query),
    each list is ordered by the teacher (its best first, where teach puts the judged positive: a
    queued list has no judgement) and kept when at least two of its documents are in the corpus."""
    out = train_lists_file(cfg)
    if not out.is_file():
        raise RagdistillError(f"{out} not found; the failure queue is folded into teach's lists: run `ragdistill reranker teach` "
                              "with the same paths.work_dir")
    pairs = [(p, float(y)) for p, y, t in items if t == PAIR_TEMPLATE and isinstance(p, list) and len(p) == 2]
    rows = read_jsonl(out)
    taught = {r["query"] for r in rows}
    by_query: dict[str, list[str]] = {}
    score: dict[tuple[str, str], float] = {}
    for (q, d), s in pairs:
        if q not in taught and d not in by_query.setdefault(q, []):
            by_query[q].append(d)
            score[(q, d)] = s
    data = load_data(cfg)
    doc_id = {doc.full_text: i for i, doc in data.corpus.items()}
    new, outside = [], 0
    for n, (q, docs) in enumerate(by_query.items()):
        kept = [d for d in docs if d in doc_id]
        outside += len(docs) - len(kept)
        if len(kept) < 2:
            continue
        kept.sort(key=lambda d: -score[(q, d)])
        new.append({"query_id": f"queue:{n}", "query": q, "doc_ids": [doc_id[d] for d in kept],
                    "teacher_scores": [score[(q, d)] for d in kept], "first_stage_scores": [0.0] * len(kept), "from_queue": True})
    write_jsonl(out, rows + new)
    info = {"queries": len(by_query), "already_taught": len({q for (q, _), _ in pairs} & taught), "lists_kept": len(new),
            "docs_outside_corpus": outside}
    log.info("data.extra: %d queued pairs, %d new lists kept (%d queries already taught, %d documents not in this corpus) -> %s",
             len(pairs), len(new), info["already_taught"], outside, out)
    return info
