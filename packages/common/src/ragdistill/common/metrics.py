"""Ranking metrics through pytrec_eval (the reference trec_eval implementation), never hand-rolled.

``evaluate_run`` takes qrels and a run (query id -> {doc id: score}) and returns the mean of each
metric over the judged queries, with names like ``ndcg@10``, ``mrr@10``, ``recall@100``, ``map@100``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytrec_eval

from ragdistill.common.data import Qrels
from ragdistill.common.errors import RagdistillError

Run = dict[str, dict[str, float]]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")


def _trec_measure(name: str) -> tuple[str, str]:
    """``ndcg@10`` -> (pytrec_eval measure spec, result key)."""
    base, _, k = name.lower().partition("@")
    if base == "ndcg":
        return f"ndcg_cut.{k}", f"ndcg_cut_{k}"
    if base == "recall":
        return f"recall.{k}", f"recall_{k}"
    if base == "map":
        return f"map_cut.{k}", f"map_cut_{k}"
    if base == "precision":
        return f"P.{k}", f"P_{k}"
    if base == "mrr":  # trec_eval's recip_rank has no cut-off: cut the run instead (see evaluate_run)
        return "recip_rank", "recip_rank"
    raise RagdistillError(f"unknown metric {name!r}; use ndcg@k, mrr@k, recall@k, map@k or precision@k")


def _top_k(run: Run, k: int) -> Run:
    return {q: dict(sorted(d.items(), key=lambda x: -x[1])[:k]) for q, d in run.items()}


def evaluate_run(qrels: Qrels, run: Run, metrics: Iterable[str] = DEFAULT_METRICS, per_query: bool = False) -> dict:
    """Mean metrics over the queries in ``qrels`` (a query missing from ``run`` scores 0)."""
    metrics = list(metrics)
    if not qrels:
        raise RagdistillError("no judged queries to evaluate (qrels is empty)")
    # trec_eval breaks score ties by doc id; keep our own ranking order stable instead
    full = {q: {d: float(s) for d, s in run.get(q, {}).items()} or {"__none__": 0.0} for q in qrels}
    results: dict[str, dict[str, float]] = {q: {} for q in qrels}
    for name in metrics:
        spec, key = _trec_measure(name)
        r = _top_k(full, int(name.partition("@")[2])) if name.startswith("mrr@") else full
        ev = pytrec_eval.RelevanceEvaluator(qrels, {spec})
        for q, vals in ev.evaluate(r).items():
            results[q][name] = vals[key]
    mean = {m: float(np.mean([results[q].get(m, 0.0) for q in qrels])) for m in metrics}
    return {"mean": mean, "per_query": results} if per_query else mean


def scores_to_run(query_ids: list[str], doc_ids: list[list[str]], scores: list[list[float]] | np.ndarray) -> Run:
    """Parallel lists (query, its candidate docs, their scores) -> a run dict."""
    return {q: {d: float(s) for d, s in zip(ds, ss, strict=True)} for q, ds, ss in zip(query_ids, doc_ids, scores, strict=True)}
