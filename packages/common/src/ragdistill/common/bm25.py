"""BM25 over a corpus (``bm25s``): the lexical first stage every stage measures against.

One index serves three needs: top-k search (reranker candidates, generator contexts, rewriter
lift), and the BM25 score of given (query, document) pairs, which the reranker's hybrid teacher
adds to a bi-encoder's cosine. Documents are indexed as ``Document.full_text`` (title + text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.common.metrics import Run


class BM25Index:
    """BM25 (``bm25s`` defaults, English stopwords) over ``corpus``."""

    def __init__(self, corpus: dict[str, Document]) -> None:
        import bm25s

        if not corpus:
            raise RagdistillError("BM25 needs a non-empty corpus")
        self._bm25s = bm25s
        self.doc_ids = list(corpus)
        self._row = {d: i for i, d in enumerate(self.doc_ids)}
        tokens = bm25s.tokenize([corpus[d].full_text for d in self.doc_ids], stopwords="en", show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)

    def retrieve(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (doc id, score) per text, best first (fewer when the corpus is smaller)."""
        if not texts:
            return []
        k = min(k, len(self.doc_ids))
        # bm25s cannot tokenize an empty query; "_" matches nothing and scores every document 0
        tokens = self._bm25s.tokenize([t if t.strip() else "_" for t in texts], stopwords="en", show_progress=False)
        idx, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(self.doc_ids[int(i)], float(s)) for i, s in zip(irow, srow, strict=True)] for irow, srow in zip(idx, scores, strict=True)]

    def search(self, queries: dict[str, str], k: int) -> Run:
        """A run (query id -> {doc id: score}) of the top ``k`` documents with a non-zero score."""
        qids = list(queries)
        hits = self.retrieve([queries[q] for q in qids], k)
        return {q: {d: s for d, s in h if s > 0} for q, h in zip(qids, hits, strict=True)}

    def scores(self, query: str, doc_ids: Sequence[str]) -> list[float]:
        """The BM25 score of each of ``doc_ids`` for ``query`` (0 where no query term occurs)."""
        unknown = [d for d in doc_ids if d not in self._row]
        if unknown:
            raise RagdistillError(f"BM25: document ids {unknown[:3]} are not in the indexed corpus")
        terms = self._bm25s.tokenize([query or "_"], stopwords="en", show_progress=False, return_ids=False)[0]
        all_scores = np.asarray(self.index.get_scores(terms)) if terms else np.zeros(len(self.doc_ids))
        return [float(all_scores[self._row[d]]) for d in doc_ids]
