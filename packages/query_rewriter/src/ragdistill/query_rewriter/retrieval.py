"""First-stage lexical retrieval (BM25 via bm25s) used to measure what a rewrite is worth.

A rewriter exists to make first-stage retrieval find the right passage, so its quality is measured
as recall/NDCG of BM25 with the rewritten query against the raw question. BM25 is the first stage
that reacts most directly to the words a rewrite adds (the entity a pronoun stood for) and it
indexes a few thousand passages in well under a second. Expansions are scored by union retrieval:
each reformulation (and the original query) retrieves its own list and the lists are fused with
reciprocal-rank fusion, so the union's recall@k is what the expansions add.

(A general BM25 first stage: candidates for the lead to move into ``ragdistill.common``.)
"""

from __future__ import annotations

from ragdistill.common.data import Document
from ragdistill.common.metrics import Run

RRF_K = 60


class BM25Retriever:
    """BM25 over a corpus; ``search`` returns a run (query id -> {doc id: score}) of the top ``k``."""

    def __init__(self, corpus: dict[str, Document]) -> None:
        import bm25s

        self._bm25s = bm25s
        self.ids = list(corpus)
        tokens = bm25s.tokenize([corpus[i].full_text for i in self.ids], stopwords="en", show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(tokens, show_progress=False)

    def _search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.ids))
        tokens = self._bm25s.tokenize([t if t.strip() else "_" for t in texts], stopwords="en", show_progress=False)
        docs, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(self.ids[int(d)], float(s)) for d, s in zip(drow, srow, strict=True) if s > 0] for drow, srow in zip(docs, scores, strict=True)]

    def search(self, queries: dict[str, str], k: int = 100) -> Run:
        qids = list(queries)
        hits = self._search([queries[q] for q in qids], k) if qids else []
        return {q: dict(h) for q, h in zip(qids, hits, strict=True)}

    def search_union(self, queries: dict[str, list[str]], k: int = 100) -> Run:
        """Reciprocal-rank fusion of one list per query variant (the union of what they retrieve)."""
        flat = [(q, t) for q, variants in queries.items() for t in variants if t.strip()]
        hits = self._search([t for _, t in flat], k) if flat else []
        run: Run = {q: {} for q in queries}
        for (q, _), h in zip(flat, hits, strict=True):
            for rank, (d, _) in enumerate(h):
                run[q][d] = run[q].get(d, 0.0) + 1.0 / (RRF_K + rank + 1)
        return {q: dict(sorted(d.items(), key=lambda x: -x[1])[:k]) for q, d in run.items()}
