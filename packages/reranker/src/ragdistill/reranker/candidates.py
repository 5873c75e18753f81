"""First-stage candidates: what the reranker reorders.

A reranker never sees the whole corpus, only the top-k of a first-stage retriever, so teacher,
students and the evaluation must all rerank the *same* candidate lists. They come from BM25
(``bm25s``; no model, fast on CPU) or from a user's JSONL file (``{"query_id", "doc_ids"}`` per
line, e.g. the embedder's retrieval output), validated against the corpus and the qrels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragdistill.common.data import Document, RetrievalData
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


class BM25Retriever:
    """BM25 over a corpus (title + text), via ``bm25s``.

    A generally useful first stage; kept here until common grows a retriever helper.
    """

    def __init__(self, corpus: dict[str, Document]) -> None:
        import bm25s

        if not corpus:
            raise RagdistillError("BM25 needs a non-empty corpus")
        self._bm25s = bm25s
        self.doc_ids = list(corpus)
        tokens = bm25s.tokenize([corpus[d].full_text for d in self.doc_ids], stopwords="en", show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)

    def search(self, queries: dict[str, str], k: int) -> dict[str, CandidateList]:
        """Top-``k`` documents per query (fewer when the corpus is smaller)."""
        if not queries:
            return {}
        k = min(k, len(self.doc_ids))
        qids = list(queries)
        tokens = self._bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
        idx, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        out = {}
        for row, qid in enumerate(qids):
            out[qid] = CandidateList(qid, [self.doc_ids[i] for i in idx[row]], [float(s) for s in np.asarray(scores[row])])
        return out


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
    return BM25Retriever(data.corpus).search(queries, k)
