"""BM25 as a scoring teacher: the lexical half of a hybrid (bi-encoder + BM25) teacher.

BM25 needs corpus statistics (IDF, average length), so the teacher is bound to one corpus
(``teacher.model`` = a bundled dataset name or a BEIR folder) and scores only that corpus's
documents, recognised by their ``Document.full_text``. Lexical overlap is what a bi-encoder
misses most on extractive QA data, and adding it lifts reranking quality: see docs/reranker.md.
"""

from __future__ import annotations

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.errors import RagdistillError


class BM25Teacher:
    """``score`` = the BM25 score of the document for the query within ``source``'s corpus."""

    def __init__(self, source: str) -> None:
        from ragdistill.common.data import load_retrieval

        data = load_retrieval(source)
        self.index = BM25Index(data.corpus)
        self._doc_of = {doc.full_text: doc_id for doc_id, doc in data.corpus.items()}
        self.teacher_id = f"bm25:{source}"
        self.source = source

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        by_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(pairs):
            by_query.setdefault(q, []).append(i)
        out = [0.0] * len(pairs)
        for q, rows in by_query.items():
            ids = []
            for i in rows:
                doc_id = self._doc_of.get(pairs[i][1])
                if doc_id is None:
                    raise RagdistillError(
                        f"teacher backend bm25 (corpus {self.source!r}) was asked to score a document that is not in that corpus "
                        f"({pairs[i][1][:60]!r}...); set its model to the data being scored (in the reranker, leave it empty: it follows data.path/data.name)")
                ids.append(doc_id)
            for i, s in zip(rows, self.index.scores(q, ids), strict=True):
                out[i] = s
        return out
