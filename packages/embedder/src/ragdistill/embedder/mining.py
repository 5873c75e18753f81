"""Hard negatives mined from the teacher's own index.

For each training query: the teacher's top ``depth`` documents (faiss, exact cosine) minus the
judged positives; a candidate is kept only if the teacher scores it at least ``margin`` below the
query's weakest positive (near-ties are often unjudged positives, and training on them as
negatives teaches the student the wrong thing). Each kept negative becomes one
:class:`~ragdistill.common.data.Triple` carrying both teacher scores, for MarginMSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragdistill.common.data import Qrels, Triple
from ragdistill.common.logging import get_logger
from ragdistill.embedder.retrieve import search

log = get_logger(__name__)


def mine_hard_negatives(
    query_ids: Sequence[str],
    query_emb: np.ndarray,
    doc_ids: Sequence[str],
    doc_emb: np.ndarray,
    qrels: Qrels,
    depth: int = 30,
    negatives_per_query: int = 3,
    margin: float = 0.05,
    skip_top: int = 0,
) -> list[Triple]:
    """Triples (query, positive, teacher-mined negative) with teacher cosine scores."""
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    q_row = {q: i for i, q in enumerate(query_ids)}
    qids = [q for q in query_ids if any(d in doc_row for d in qrels.get(q, {}))]
    if not qids:
        return []
    n_pos_max = max(len(qrels[q]) for q in qids)
    run = search(doc_emb, doc_ids, query_emb[[q_row[q] for q in qids]], qids, top_k=depth + skip_top + n_pos_max)
    triples: list[Triple] = []
    dropped = 0
    for q in qids:
        positives = [d for d in qrels[q] if d in doc_row]
        qv = query_emb[q_row[q]]
        pos_scores = {d: float(doc_emb[doc_row[d]] @ qv) for d in positives}
        ceiling = min(pos_scores.values()) - margin
        candidates = [(d, s) for d, s in sorted(run[q].items(), key=lambda x: -x[1]) if d not in pos_scores][skip_top:depth]
        kept = [(d, s) for d, s in candidates if s < ceiling][:negatives_per_query]
        dropped += sum(1 for _, s in candidates[: negatives_per_query + 1] if s >= ceiling)
        for i, (neg, s) in enumerate(kept):
            pos = positives[i % len(positives)]
            triples.append(Triple(q, pos, neg, pos_scores[pos], s))
    log.info("mined %d triples for %d queries (%d near-positive candidates dropped by the %.2f margin)",
             len(triples), len(qids), dropped, margin)
    return triples
