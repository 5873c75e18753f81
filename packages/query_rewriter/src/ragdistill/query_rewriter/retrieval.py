"""First-stage lexical retrieval (BM25 via bm25s) used to measure what a rewrite is worth.

A rewriter exists to make first-stage retrieval find the right passage, so its quality is measured
as recall/NDCG of BM25 with the rewritten query against the raw question. BM25 is the first stage
that reacts most directly to the words a rewrite adds (the entity a pronoun stood for) and it
indexes a few thousand passages in well under a second. Expansions are scored by union retrieval:
each reformulation (and the original query) retrieves its own list and the lists are fused with
reciprocal-rank fusion, so the union's recall@k is what the expansions add.
"""

from __future__ import annotations

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.metrics import Run

RRF_K = 60


class BM25Retriever(BM25Index):
    """The common BM25 index plus union retrieval over a query's reformulations."""

    def search_union(self, queries: dict[str, list[str]], k: int = 100) -> Run:
        """Reciprocal-rank fusion of one list per query variant (the union of what they retrieve)."""
        flat = [(q, t) for q, variants in queries.items() for t in variants if t.strip()]
        hits = [[(d, s) for d, s in h if s > 0] for h in self.retrieve([t for _, t in flat], k)]
        run: Run = {q: {} for q in queries}
        for (q, _), h in zip(flat, hits, strict=True):
            for rank, (d, _) in enumerate(h):
                run[q][d] = run[q].get(d, 0.0) + 1.0 / (RRF_K + rank + 1)
        return {q: dict(sorted(d.items(), key=lambda x: -x[1])[:k]) for q, d in run.items()}
