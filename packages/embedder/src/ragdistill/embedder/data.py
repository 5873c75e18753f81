"""The stage's data: the configured retrieval slice, its held-out queries and the reference corpus.

Every verb reads the same slice (``data.name`` / ``data.path``, ``data.max_queries``,
``data.max_docs``), so the corpus ``teach`` embedded is the corpus ``evaluate`` ranks, and the
reference corpus the routing and monitor score profiles are taken over.
"""

from __future__ import annotations

import random
from typing import Any

from ragdistill.common.data import RetrievalData, load_retrieval
from ragdistill.common.errors import RagdistillError


def data_source(cfg: Any) -> str:
    """``data.path`` when set, else the bundled ``data.name``."""
    return str(cfg.data.path or cfg.data.name)


def load_data(cfg: Any) -> RetrievalData:
    """The configured retrieval data (slice applied), checked for what this stage needs."""
    data = load_retrieval(data_source(cfg), cfg.data.max_queries, cfg.data.max_docs)
    if not data.corpus:
        raise RagdistillError(f"data {data_source(cfg)!r}: the corpus is empty; the embedder needs documents to index")
    # every verb reads the test split; the train split only where the verb trains (teach, train: data.split says so
    # when it is missing), so a BEIR folder with test qrels alone (most public sets) is enough to evaluate
    for key, split in (("train_split", cfg.data.train_split), ("test_split", cfg.data.test_split)):
        if key == "train_split" and split not in data.qrels:
            continue
        queries, _ = data.split(split)
        if not queries:
            raise RagdistillError(f"data {data_source(cfg)!r}: split {split!r} has no judged queries (data.{key})")
    return data


def reference_corpus(data: RetrievalData) -> tuple[list[str], list[str]]:
    """(doc ids, texts) of the corpus evaluate ranks: what a query's score profile is taken over."""
    ids = list(data.corpus)
    return ids, [data.corpus[d].full_text for d in ids]


def held_out_records(data: RetrievalData, split: str, n: int | None = None) -> list[dict[str, Any]]:
    """The first ``n`` judged queries of ``split`` (evaluate's order) as ``{"id", "query", "relevant"}``."""
    queries, qrels = data.split(split)
    return [{"id": q, "query": queries[q], "relevant": dict(qrels[q])} for q in list(queries)[:n]]


def held_out_texts(data: RetrievalData, split: str, n: int) -> list[str]:
    """Test-split queries and their documents, ``n`` texts training never saw (export's parity)."""
    queries, qrels = data.split(split)
    qids = sorted(queries)
    docs = list(dict.fromkeys(d for q in qids for d in qrels[q]))
    texts = [queries[q] for q in qids[: n // 2]] + [data.corpus[d].full_text for d in docs[: n - min(n // 2, len(qids))]]
    return texts[:n]


def corpus_sample(doc_ids: list[str], n: int | None, seed: int, setting: str) -> list[str]:
    """Documents trained by MSE alone: all (None), none (0) or a seeded sample of ``n`` (``setting`` names the key)."""
    if n is None or n >= len(doc_ids):
        return list(doc_ids)
    if n < 0:
        raise RagdistillError(f"{setting}={n}: use 0 (off), a count, or null (the whole corpus)")
    return sorted(random.Random(seed).sample(list(doc_ids), n))


def extra_mse_corpus(source: str, n: int | None, seed: int, setting: str = "embedder.teach.mse_extra",
                     size_setting: str = "embedder.teach.mse_extra_docs") -> list[str]:
    """A seeded sample of ``n`` document texts of another data set (bundled name, BEIR folder, QA file, HF id):
    unlabelled text for feature distillation (or for anchoring the student), which needs no queries and no
    judgements. ``setting`` and ``size_setting`` name the config keys in errors."""
    data = load_retrieval(source)
    if not data.corpus:
        raise RagdistillError(f"{setting}: data {source!r} has no corpus; name a data set with documents")
    ids = corpus_sample(list(data.corpus), n, seed, size_setting)
    return [data.corpus[d].full_text for d in ids]
