"""What a rewrite is worth: retrieval with it vs with the raw question (the recall lift), plus
agreement with the human rewrite. Shared by train (checkpoint choice) and evaluate.

``recall_lift`` = mean over k in {10, 100} of recall@k(rewritten) - recall@k(raw question): the one
number the checkpoint is chosen by, and the headline of the report.
"""

from __future__ import annotations

from ragdistill.common.metrics import evaluate_run
from ragdistill.query_rewriter.filters import clean_output, normalize, parse_expansions
from ragdistill.query_rewriter.retrieval import BM25Retriever

RETRIEVAL_METRICS = ("recall@10", "recall@100", "ndcg@10")


def retrieval_metrics(retriever: BM25Retriever, qrels: dict, queries: dict[str, str]) -> dict[str, float]:
    return evaluate_run(qrels, retriever.search(queries, k=100), RETRIEVAL_METRICS)


def recall_per_query(retriever: BM25Retriever, qrels: dict, queries: dict[str, str]) -> dict[str, float]:
    """Per query, the mean of its BM25 recall@10 and recall@100: a record's share of ``recall_lift``
    (calibrate's quality of one rewrite is this minus the raw question's)."""
    res = evaluate_run(qrels, retriever.search(queries, k=100), ("recall@10", "recall@100"), per_query=True)["per_query"]
    return {q: (res[q]["recall@10"] + res[q]["recall@100"]) / 2 for q in queries}


def with_lift(metrics: dict[str, float], raw: dict[str, float]) -> dict[str, float]:
    """Add ``recall_lift@k`` (vs the raw-question run) and their mean ``recall_lift``."""
    out = dict(metrics)
    for k in (10, 100):
        out[f"recall_lift@{k}"] = metrics[f"recall@{k}"] - raw[f"recall@{k}"]
    out["recall_lift"] = (out["recall_lift@10"] + out["recall_lift@100"]) / 2
    return out


def rewrite_queries(ids: list[str], outputs: list[str], fallback: list[str]) -> dict[str, str]:
    """Rewrites as retrieval queries; an empty output falls back to the raw question (what a
    production pipeline would do), so a system is never scored on an empty query."""
    return {i: (clean_output(o) or f) for i, o, f in zip(ids, outputs, fallback, strict=True)}


def exact_match(outputs: list[str], references: list[str | None]) -> float:
    pairs = [(o, r) for o, r in zip(outputs, references, strict=True) if r]
    return sum(normalize(clean_output(o)) == normalize(r) for o, r in pairs) / max(len(pairs), 1)


def bleu(outputs: list[str], references: list[str | None]) -> float:
    import sacrebleu

    pairs = [(clean_output(o), r) for o, r in zip(outputs, references, strict=True) if r]
    if not pairs:
        return float("nan")
    return float(sacrebleu.corpus_bleu([o for o, _ in pairs], [[r for _, r in pairs]]).score)


def expansion_variants(query: str, output: str) -> list[str]:
    """The original query plus each parsed reformulation (union retrieval keeps the original)."""
    return [query, *[p for p in parse_expansions(output) if p]]
