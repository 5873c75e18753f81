"""First-stage candidates: what the reranker reorders.

A reranker never sees the whole corpus, only the top-k of a first-stage retriever, so teacher,
students and the evaluation must all rerank the *same* candidate lists. They come from BM25
(``bm25s``; no model, fast on CPU) or from a user's JSONL file (``{"query_id", "doc_ids"}`` per
line, e.g. the embedder's retrieval output), validated against the corpus and the qrels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.data import RetrievalData
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl
from ragdistill.common.logging import get_logger

log = get_logger(__name__)


@dataclass
class CandidateList:
    """One query's first-stage candidates, best first, with the first-stage scores."""

    query_id: str
    doc_ids: list[str]
    scores: list[float]


def bm25_candidates(index: BM25Index, queries: dict[str, str], k: int) -> dict[str, CandidateList]:
    """BM25 top-``k`` per query as candidate lists (zero-score tail kept: every list has ``k``)."""
    qids = list(queries)
    hits = index.retrieve([queries[q] for q in qids], k)
    return {q: CandidateList(q, [d for d, _ in h], [s for _, s in h]) for q, h in zip(qids, hits, strict=True)}


def read_candidates_file(path: str | Path, data: RetrievalData, split: str, require_positive: bool) -> dict[str, CandidateList]:
    """Candidates from JSONL lines ``{"query_id": str, "doc_ids": [str, ...], "scores": [float, ...]?}``.

    Every id must exist in the dataset; lines of queries judged only in another split are
    skipped. With ``require_positive`` (training), a query with no judged positive is an error:
    a list without one teaches nothing about what should rank first.
    """
    path = Path(path)
    split_qrels = data.qrels.get(split, {})
    judged_elsewhere = {q for s, qr in data.qrels.items() if s != split for q in qr}
    if not path.is_file():
        raise RagdistillError(f"reranker.candidates.file={path}: no such file; pass a JSONL file of {{query_id, doc_ids}} lines")
    out: dict[str, CandidateList] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict) or "query_id" not in obj or not isinstance(obj.get("doc_ids"), list):
            raise RagdistillError(f"{where}: each line needs \"query_id\" and a \"doc_ids\" list")
        qid = str(obj["query_id"])
        if qid not in data.queries:
            raise RagdistillError(f"{where}: query id {qid!r} is not in the dataset's queries; fix the id or drop the line")
        doc_ids = [str(d) for d in obj["doc_ids"]]
        unknown = [d for d in doc_ids if d not in data.corpus]
        if unknown:
            raise RagdistillError(
                f"{where}: query {qid!r} names {len(unknown)} document id(s) not in the corpus "
                f"(first: {unknown[0]!r}); candidates must come from the same corpus (data.name/data.path)"
            )
        if not doc_ids:
            raise RagdistillError(f"{where}: query {qid!r} has an empty \"doc_ids\" list")
        if qid not in split_qrels:
            if qid in judged_elsewhere or not require_positive:
                continue
            raise RagdistillError(
                f"{where}: query {qid!r} has no positive document in the qrels; add a judgment "
                f"(qrels/{split}.tsv, score > 0) or drop the line"
            )
        scores = obj.get("scores") or [float(-i) for i in range(len(doc_ids))]
        if len(scores) != len(doc_ids):
            raise RagdistillError(f"{where}: \"scores\" has {len(scores)} values for {len(doc_ids)} doc_ids")
        out[qid] = CandidateList(qid, doc_ids, [float(x) for x in scores])
    if not out:
        raise RagdistillError(f"{path}: no candidate line names a query of the {split!r} split")
    return out


def first_stage(data: RetrievalData, split: str, k: int, file: str | None = None, require_positive: bool = False) -> dict[str, CandidateList]:
    """Candidates for the judged queries of ``split``: from ``file`` when given, else BM25 top-``k``."""
    queries, _ = data.split(split)
    if file:
        cands = read_candidates_file(file, data, split, require_positive)
        return {q: CandidateList(q, c.doc_ids[:k], c.scores[:k]) for q, c in cands.items()}
    log.info("BM25 first stage: %d %s queries over %d documents, top-%d", len(queries), split, len(data.corpus), k)
    return bm25_candidates(BM25Index(data.corpus), queries, k)
