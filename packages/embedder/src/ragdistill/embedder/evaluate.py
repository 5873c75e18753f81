"""embedder evaluate: teacher | student before distillation | student | ONNX | ONNX int8, side by side.

On the held-out split (``data.test_split``, never seen by ``train``), every system embeds the same
corpus and queries; retrieval is exact cosine top-100 (faiss) scored by pytrec_eval (NDCG@10,
MRR@10, Recall@100) at full size and at every Matryoshka dim (``embedder.evaluate.dims``, default
the trained ``embedder.train.matryoshka`` list; ``metric d=128`` rows). MTEB's own retrieval
evaluator scores the same data as a local task (``mteb_*`` rows; JSON in ``evaluate/mteb/<system>/``).
Speed: queries/s at ``embedder.evaluate.batch_size`` and single-query p50/p95 latency, each system
measured in the same process, one after the other. Teacher embeddings come from the label cache.
The table is printed and kept as ``results.txt``; the figures go to the evaluate result (``results.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.paths import stage_dir
from ragdistill.common.report import comparison_table
from ragdistill.common.results import EvaluateResult
from ragdistill.common.timing import measure
from ragdistill.embedder.data import data_source, load_data
from ragdistill.embedder.models import STAGE
from ragdistill.embedder.retrieve import search
from ragdistill.embedder.systems import NAMES, build_system, models_cfg

log = get_logger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@100")


def retrieval_metrics(doc_emb: np.ndarray, doc_ids: list[str], query_emb: np.ndarray, query_ids: list[str],
                      qrels: dict, dims: list[int]) -> dict[str, float]:
    """Full-size metrics, then the same per Matryoshka dim (``<metric> d=<dim>``)."""
    out = dict(evaluate_run(qrels, search(doc_emb, doc_ids, query_emb, query_ids, 100), METRICS))
    for d in dims:
        if d <= doc_emb.shape[1]:
            m = evaluate_run(qrels, search(doc_emb, doc_ids, query_emb, query_ids, 100, dim=d), METRICS)
            out.update({f"{k} d={d}": v for k, v in m.items()})
    return out


def speed(raw: Callable[[list[str]], Any], texts: list[str], batch_size: int, n_latency: int) -> dict[str, float]:
    thr = measure(raw, texts, batch_size=batch_size)
    lat = measure(raw, texts[:n_latency], batch_size=1)
    return {"queries_per_s": thr.items_per_s, "query_p50_ms": lat.p50_ms, "query_p95_ms": lat.p95_ms}


def evaluate(cfg: Any) -> EvaluateResult:
    s = cfg.embedder.evaluate
    systems = list(dict.fromkeys(x.name for x in s.systems))
    if not systems:
        raise RagdistillError(f"embedder.evaluate.systems is empty; choose some of {', '.join(NAMES)}")
    models_cfg(cfg)  # a wrong embedder.evaluate.models_from fails before any system is built
    data = load_data(cfg)
    queries, qrels = data.split(cfg.data.test_split)
    qids, doc_ids = list(queries), list(data.corpus)
    q_texts, d_texts = [queries[q] for q in qids], [data.corpus[d].full_text for d in doc_ids]
    dims = sorted({int(d) for d in (s.dims if s.dims is not None else cfg.embedder.train.matryoshka or [])}, reverse=True)
    out = stage_dir(cfg, STAGE, "evaluate")
    speed_texts = (q_texts * (1 + s.speed_texts // max(1, len(q_texts))))[: s.speed_texts]
    task, standard = None, cfg.data.mteb_task
    if s.mteb:
        from ragdistill.embedder.mteb_task import make_task

        # the data's standard MTEB task when it names one (data.mteb_task), else a custom task over it
        task = make_task(f"ragdistill-{Path(str(data_source(cfg))).name}-{cfg.data.test_split}", data.corpus, queries, qrels,
                         cfg.data.test_split, standard=standard)

    result = EvaluateResult(STAGE, n_items=len(qids), split=cfg.data.test_split)
    results: dict[str, dict[str, float]] = {}
    mteb_files: dict[str, str] = {}
    for name in systems:
        log.info("evaluate: %s", name)
        system = build_system(cfg, name)
        try:
            d_emb, q_emb = system.encode(d_texts), system.encode(q_texts)
            r = {"dim": float(system.dim), **retrieval_metrics(d_emb, doc_ids, q_emb, qids, qrels, dims)}
            if task is not None:
                from ragdistill.embedder.mteb_task import PrecomputedEncoder, run_mteb

                memo = dict(zip(d_texts, d_emb, strict=True)) | dict(zip(q_texts, q_emb, strict=True))
                r.update(run_mteb(task, PrecomputedEncoder(name, system.encode, memo, system.dim), out / "mteb" / name))
                mteb_files[name] = str(out / "mteb" / name / f"{task.metadata.name}.json")
            r.update(speed(system.raw, speed_texts, int(s.batch_size), int(s.latency_queries)))
            r["size_mb"] = system.size_mb
            results[name] = r
        finally:
            for run in system.label_runs:
                result.count_labels(run)
            if system.close is not None:
                system.close()
        del system

    details: dict[str, Any] = {
        "data": data_source(cfg), "n_queries": len(qids), "n_docs": len(doc_ids), "dims": dims,
        "teacher": cfg.teacher.model, "student": cfg.student.model, "mteb_results": mteb_files,
        "mteb_task": None if task is None else {"name": task.metadata.name, "standard": bool(standard) and task.metadata.name == standard,
                                                 # a slice scores MTEB's task definition, not the leaderboard's full split
                                                 "full_split": cfg.data.max_docs is None and cfg.data.max_queries is None},
        "speed": {"texts": len(speed_texts), "batch_size": int(s.batch_size), "latency_calls": min(len(speed_texts), int(s.latency_queries))},
    }
    if s.get("models_from"):
        details["models_from"] = str(s.models_from)
    for verb, file in (("train", "train.json"), ("export", "export.json")):
        p = stage_dir(models_cfg(cfg), STAGE, verb) / file
        if p.exists():
            details[verb] = read_json(p).get("details", {})
    table = comparison_table(results, title=f"[{STAGE}] teacher vs student, before and after distillation")
    print(table, flush=True)
    write_text_atomic(out / "results.txt", table + "\n")
    if "student" in results and "student_base" in results:
        gain = results["student"]["ndcg@10"] - results["student_base"]["ndcg@10"]
        log.info("distillation gain on held-out NDCG@10: %+.4f (student %.4f vs student_base %.4f)", gain,
                 results["student"]["ndcg@10"], results["student_base"]["ndcg@10"])
    result.results, result.details = results, details
    return result
