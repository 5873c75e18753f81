#!/usr/bin/env python
"""Which reranker teacher? BM25, the packaged bi-encoders' cosine, and bi-encoder + w * BM25
hybrids, all reranking the same BM25 top-k of held-out SQuAD questions, side by side in one run.

    python bench/reranker_teachers.py [--queries 0] [--k 30] [--weights 0.02 0.05 0.1]

A teacher only counts if it beats what a student gets without it (BM25, the student's own
encoder as a bi-encoder); this prints the NDCG@10 / MRR@10 that chose ``teacher=hybrid-mpnet-bm25``
and checks that the default (mpnet cosine + 0.05 x BM25) beats BM25 and every bi-encoder on the
held-out questions (``--queries 0``: all of them). The judged-label bonus of
``reranker.teach.positive_bonus`` is not a held-out teacher: it needs the judgments, which only
training lists have.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="squad", help="bundled dataset name or BEIR folder (default squad)")
    ap.add_argument("--queries", type=int, default=0, help="held-out (test split) queries, the first N by id (0 = all)")
    ap.add_argument("--k", type=int, default=30, help="BM25 candidates per query to rerank")
    ap.add_argument("--encoders", nargs="+", default=["mpnet", "minilm-l6"])
    ap.add_argument("--weights", nargs="+", type=float, default=[0.02, 0.05, 0.1], help="BM25 weights of the hybrids")
    args = ap.parse_args()

    from ragdistill.common.bm25 import BM25Index
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.metrics import evaluate_run
    from ragdistill.common.teachers.local import SentenceTransformerTeacher

    data = load_retrieval(args.data)
    queries, qrels = data.split("test")
    qids = sorted(queries)[: args.queries or None]
    qrels = {q: qrels[q] for q in qids}
    index = BM25Index(data.corpus)
    hits = dict(zip(qids, index.retrieve([queries[q] for q in qids], args.k), strict=True))
    bm25 = {q: dict(h) for q, h in hits.items()}

    ndcg: dict[str, float] = {}

    def show(name: str, run: dict[str, dict[str, float]]) -> None:
        m = evaluate_run(qrels, run, ("ndcg@10", "mrr@10"))
        ndcg[name] = m["ndcg@10"]
        print(f"{name:<28} ndcg@10 {m['ndcg@10']:.4f}  mrr@10 {m['mrr@10']:.4f}", flush=True)

    print(f"{args.data} test, {len(qids)} queries x BM25 top-{args.k}")
    show("bm25", bm25)
    for enc in args.encoders:
        teacher = SentenceTransformerTeacher(enc)
        t0 = time.perf_counter()
        pairs = [(queries[q], data.corpus[d].full_text) for q in qids for d, _ in hits[q]]
        cos = iter(teacher.score(pairs))
        cosine = {q: {d: next(cos) for d, _ in hits[q]} for q in qids}
        print(f"  ({enc}: {len(pairs)} pairs scored in {time.perf_counter() - t0:.0f} s)")
        show(f"{enc} cosine", cosine)
        for w in args.weights:
            show(f"{enc} + {w:g} * bm25", {q: {d: cosine[q][d] + w * bm25[q][d] for d in cosine[q]} for q in qids})
    default = "mpnet + 0.05 * bm25"  # conf/teacher/hybrid-mpnet-bm25.yaml (weights 1 : 0.05)
    if default in ndcg:
        others = {k: v for k, v in ndcg.items() if k == "bm25" or k.endswith(" cosine")}
        ok = all(ndcg[default] > v for v in others.values())
        print(f"default teacher ({default}) {ndcg[default]:.4f} vs " + ", ".join(f"{k} {v:.4f}" for k, v in others.items())
              + f": {'beats them all' if ok else 'does NOT beat them all'}")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    raise SystemExit(run_script(main))
