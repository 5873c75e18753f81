"""Run one pipeline configuration over the held-out split and measure every stage.

rewrite (optional) -> retrieve (faiss, cached index) -> rerank top-k (optional) -> generate.
Each slot is filled by the installed stage that declares it (``Stage.slot``, through
:func:`~ragdistill.common.stage.load_stages`), loaded through ``Stage.component(cfg, variant)``;
``routed`` is :func:`ragdistill.common.ops.routed` of the stage (the first stage: two indexes, see
:class:`~ragdistill.e2e.retrieval.RoutedRetriever`). A user's own callable passed in ``custom``
plugs into any slot.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from ragdistill.common.config import compose
from ragdistill.common.data import QARecord, load_rag
from ragdistill.common.errors import RagdistillError
from ragdistill.common.fusion import fuse
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.ops.cost import slot_stages
from ragdistill.common.paths import conf_dir, stage_dir
from ragdistill.common.pipeline import Passage
from ragdistill.common.stage import Stage
from ragdistill.common.timing import stats_from_latencies
from ragdistill.e2e.retrieval import SCORE_SIGNALS, FaissRetriever, RoutedEncoders, RoutedRetriever

log = get_logger(__name__)

FIRST_SLOT = "embedder"  # the slot whose component encodes the corpus and the queries (an Encoder): the retriever


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def _dir_size_mb(path: str | None) -> float | None:
    if not path or not Path(path).exists():
        return None
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def _callable_name(obj: Any) -> str:
    """Names a component without a model path (a user's callable), so cached indexes never mix."""
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{target.__module__}.{target.__qualname__}"


def compose_stage(stage: Stage, overrides: list[str]) -> DictConfig:
    """The stage's config: ``conf/<stage>.yaml`` where the project has one, else its schema alone (a
    user's own stage package)."""
    name = stage.name if (conf_dir() / f"{stage.name}.yaml").is_file() else f"{stage.name}_schema"
    return compose(name, overrides)


def routed_encoders(stage: Stage, cfg: DictConfig) -> RoutedEncoders:
    """``pipeline.embedder=routed``: the stage's student and teacher encoders and the threshold its
    ``calibrate`` chose, on a signal the harness can compute from the student's retrieval scores."""
    from ragdistill.common.ops.routing import load_calibration

    where = stage_dir(cfg, stage.name, "calibrate")
    cal = load_calibration(where, stage.name)  # before loading any model
    if cal.signal not in stage.signals or cal.signal not in SCORE_SIGNALS:
        raise RagdistillError(f"{where}: calibrated on signal {cal.signal!r}; a routed first stage routes on a signal of its "
                              f"retrieval scores ({', '.join(s for s in SCORE_SIGNALS if s in stage.signals) or 'none offered'}): "
                              f"rerun `ragdistill {stage.name} calibrate routing.signal=...`")
    return RoutedEncoders(stage.component(cfg, "student"), stage.component(cfg, "teacher"), cal.signal, cal.threshold)


def load_components(cfg: DictConfig, custom: dict[str, Callable] | None = None,
                    loaded: dict[tuple[str, str], tuple[Any, dict]] | None = None) -> tuple[dict[str, Any], dict[str, dict]]:
    """Build each slot's callable; returns the components and per-slot facts (variant, size, memory, load time).
    ``loaded`` (slot, variant) -> (component, facts) keeps components across runs of one process (the
    swap matrix loads each teacher and student once)."""
    comps: dict[str, Any] = {}
    facts: dict[str, dict] = {}
    stages = slot_stages()
    for slot in cfg.pipeline:
        variant = cfg.pipeline[slot]
        if loaded is not None and (slot, variant) in loaded:
            comps[slot], facts[slot] = loaded[(slot, variant)]
            continue
        rss0, t0 = _rss_mb(), time.perf_counter()
        if custom and slot in custom:
            comp, variant = custom[slot], "custom"
        elif variant == "off":
            if slot == FIRST_SLOT:
                raise RagdistillError(f"pipeline.{slot}=off: the pipeline needs a retriever; choose teacher, student_base, student, "
                                      "student_onnx or routed")
            continue
        else:
            stage = stages.get(slot)
            if stage is None:
                raise RagdistillError(f"pipeline.{slot}={variant}: no installed stage fills the {slot} slot (a stage declares it "
                                      f"with Stage.slot); install one, set pipeline.{slot}=off, or pass your own component "
                                      f"(run_e2e(cfg, custom={{'{slot}': ...}}))")
            # the run's data reaches every stage (a reranker teacher's BM25 member scores within that corpus)
            data = [f"data.name={cfg.data.name}", *([f"data.path={cfg.data.path}"] if cfg.data.path else [])]
            overrides = [f"paths.work_dir={cfg.paths.work_dir}", f"paths.label_cache={cfg.paths.label_cache}", "run.report_to=[]", *data,
                         *cfg.stage_overrides.get(slot, [])]  # one label cache for the run and its stages
            try:
                if variant == "routed":  # the student, the teacher below the calibrated confidence threshold
                    if not stage.signals:
                        raise RagdistillError(f"stage {stage.name!r} offers no routed variant; choose teacher, student or student_onnx")
                    if slot == FIRST_SLOT:
                        comp = routed_encoders(stage, compose_stage(stage, overrides))
                    else:
                        from ragdistill.common.ops import routed

                        comp = routed(stage, compose_stage(stage, overrides))
                else:
                    comp = stage.component(compose_stage(stage, overrides), variant)
            except RagdistillError as e:  # name the swap whose artifact is missing, not only the path
                raise RagdistillError(f"pipeline.{slot}={variant}: {e}") from e
        facts[slot] = {
            "variant": variant,
            "load_s": time.perf_counter() - t0,
            "memory_mb": max(0.0, _rss_mb() - rss0),
            "size_mb": _dir_size_mb(getattr(comp, "model_path", None)),
            "model": str(getattr(comp, "model_path", "") or _callable_name(comp)),
        }
        comps[slot] = comp
        if loaded is not None and variant != "custom":
            loaded[(slot, variant)] = (comp, facts[slot])
    return comps, facts


def _qa_records(records: dict[str, list[QARecord]], qids: list[str]) -> dict[str, QARecord]:
    """The QA records (references, conversation history) of the held-out queries, where the data has them."""
    by_id = {r.id: r for split in records.values() for r in split}
    return {q: by_id[q] for q in qids if q in by_id}


AUTO = "auto"


def resolve_auto(cfg: DictConfig, conversational: bool) -> DictConfig:
    """``pipeline.<slot>=auto`` (the rewriter's default): the student where the held-out questions
    carry a conversation history (CANARD, QA records with ``history``), off where they do not."""
    auto = {slot: ("student" if conversational else "off") for slot, v in cfg.pipeline.items() if v == AUTO}
    return OmegaConf.merge(cfg, {"pipeline": auto}) if auto else cfg


def is_conversational(cfg: DictConfig) -> bool:
    """Whether the configured held-out questions carry a conversation history."""
    data, records = load_rag(cfg.data.path or cfg.data.name, cfg.data.max_queries, cfg.data.max_docs, require_answers=False)
    qids = set(data.qrels.get(cfg.data.test_split, {}))
    return any(r.history for r in records.get(cfg.data.test_split, []) if r.id in qids)


def _warm_up(comps: dict[str, Callable], retriever: Callable, question: str, texts: list[str], history: list[str],
             facts: dict[str, dict] | None = None) -> None:
    """One untimed call through every stage before timing starts. Lazily loaded models (the
    generator's and rewriter's teachers load on first use) would otherwise charge their load time
    to the first query, inflating that system's mean latency and cost. Routing stats are reset.
    The process memory each slot's first call adds counts in its ``memory_mb`` (``warm_up_mb``):
    a lazily loaded model is only in memory after it."""
    def call(slot: str, comp: Callable, *args: Any) -> None:  # a routed slot warms its student and teacher, queues nothing
        rss0 = _rss_mb()
        getattr(comp, "warm_up", comp)(*args)
        f = (facts or {}).get(slot)
        if f is not None and "warm_up_mb" not in f:  # once: the swap matrix reuses a slot's component and facts
            f["warm_up_mb"] = max(0.0, _rss_mb() - rss0)
            f["memory_mb"] += f["warm_up_mb"]

    if "rewriter" in comps:
        call("rewriter", comps["rewriter"], history, question)  # the first query's own turns: a cached teacher rewrite stays a cache hit
    call(FIRST_SLOT, retriever, [question], 1)
    if "reranker" in comps:
        call("reranker", comps["reranker"], question, texts)
    if "generator" in comps:
        call("generator", comps["generator"], question, texts[:1])
    for comp in [*comps.values(), retriever]:
        if hasattr(comp, "reset"):
            comp.reset()


def _index_id(cfg: DictConfig, variant: str, model: str) -> str:
    """What a cached faiss index was built with: the encoder (variant, model, the stage overrides)."""
    emb_id = json.dumps([variant, model, OmegaConf.to_container(cfg.stage_overrides)], sort_keys=True)
    emb_model = Path(model)
    if emb_model.is_absolute() and emb_model.exists():  # a retrained / re-exported model gets a fresh index
        emb_id += f"@{emb_model.stat().st_mtime_ns}"
    return hashlib.sha256(emb_id.encode()).hexdigest()


def first_stage(cfg: DictConfig, comp: Any, facts: dict[str, Any], corpus: dict[str, Any], cache_dir: Path) -> Any:
    """The retriever over ``corpus``: one cached index of the slot's encoder, or for a routed first
    stage one of its student and one of its teacher (each the index a plain student / teacher run uses)."""
    if isinstance(comp, RoutedEncoders):
        sides = {}
        for side, enc in (("student", comp.student), ("teacher", comp.teacher)):
            sides[side] = FaissRetriever(enc, corpus, cache_dir, _index_id(cfg, side, str(getattr(enc, "model_path", "") or _callable_name(enc))))
        return RoutedRetriever(sides["student"], sides["teacher"], comp.signal, comp.threshold)
    return FaissRetriever(comp, corpus, cache_dir, _index_id(cfg, facts.get("variant", ""), facts.get("model", "")))


def run_pipeline(cfg: DictConfig, custom: dict[str, Callable] | None = None,
                 loaded: dict[tuple[str, str], tuple[Any, dict]] | None = None) -> dict[str, Any]:
    """Run the configured pipeline; returns every measured figure (see report.py for the layout).

    A query's conversation history (CANARD, a QA record's ``history``) reaches the rewriter; with
    the rewriter on, retrieval also runs on the raw question, so the report shows what the rewrite
    is worth in the pipeline, and a conversational question reaches the generator as its rewrite."""
    data, records = load_rag(cfg.data.path or cfg.data.name, cfg.data.max_queries, cfg.data.max_docs, require_answers=False)
    queries, qrels = data.split(cfg.data.test_split)
    qids = list(queries)
    qa = _qa_records(records, qids)
    cfg = resolve_auto(cfg, any(r.history for r in qa.values()))
    comps, facts = load_components(cfg, custom, loaded)
    work = Path(cfg.paths.work_dir).resolve()
    t0 = time.perf_counter()
    retriever = first_stage(cfg, comps[FIRST_SLOT], facts[FIRST_SLOT], data.corpus, work / "e2e" / "index")
    index_s = time.perf_counter() - t0
    lat: dict[str, list[float]] = {s: [] for s in ("rewriter", "retrieve", "reranker", "generator", "end_to_end")}
    run_retrieve: dict[str, dict[str, float]] = {}
    run_rerank: dict[str, dict[str, float]] = {}
    run_raw: dict[str, dict[str, float]] = {}  # retrieval with the raw question, when the rewriter is on
    rewrites: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}
    r = cfg.retrieval
    if qids and cfg.warmup:
        _warm_up(comps, retriever, queries[qids[0]], [d.full_text for d in list(data.corpus.values())[:2]],  # as the reranker sees them
                 list(qa[qids[0]].history) if qids[0] in qa else [], facts)
    for i, qid in enumerate(tqdm(qids, desc="e2e queries", unit="q")):
        t_start = time.perf_counter()
        question = queries[qid]
        history = list(qa[qid].history) if qid in qa else []
        query = question
        if "rewriter" in comps:
            t = time.perf_counter()
            query = comps["rewriter"](history, question) or question
            lat["rewriter"].append(time.perf_counter() - t)
            rewrites[qid] = {"question": question, "query": query, "history_turns": len(history)}
        t = time.perf_counter()
        hits = retriever([query], r.top_k)[0]
        lat["retrieve"].append(time.perf_counter() - t)
        run_retrieve[qid] = dict(hits)
        if "rewriter" in comps:  # untimed: what the raw question would have retrieved
            run_raw[qid] = dict(hits) if query == question else dict(retriever([question], r.top_k)[0])
        ranked = hits
        if "reranker" in comps:
            head = hits[: r.rerank_k]
            t = time.perf_counter()
            scores = comps["reranker"](query, [data.corpus[d].full_text for d, _ in head])
            lat["reranker"].append(time.perf_counter() - t)
            if r.get("rerank_fusion") is not None:  # the first stage's scores come with its list: fusing them is free
                scores = fuse(scores, [s for _, s in head], float(r.rerank_fusion))
            order = sorted(zip([d for d, _ in head], scores, strict=True), key=lambda x: -x[1])
            # reranked head first, the rest of the first-stage list after it (so Recall@100 still counts)
            ranked = [(d, 1e6 - j) for j, (d, _) in enumerate(order)] + [(d, -1.0 - j) for j, (d, _) in enumerate(hits[r.rerank_k :])]
        run_rerank[qid] = dict(ranked)
        if "generator" in comps and i < cfg.max_generate:
            contexts = [Passage(data.corpus[d].text, data.corpus[d].title) for d, _ in ranked[: r.n_contexts]]
            asked = query if history else question  # a follow-up alone is not a question: its standalone rewrite is
            t = time.perf_counter()
            answer = comps["generator"](asked, contexts)
            lat["generator"].append(time.perf_counter() - t)
            rec = qa.get(qid)
            answers[qid] = {"question": question, "query": query, "answer": answer, "contexts": contexts,
                            "references": rec.answers if rec else [], "gold_in_contexts": any(d in qrels[qid] for d, _ in ranked[: r.n_contexts])}
        if "generator" not in comps or i < cfg.max_generate:  # end to end = queries that went through every stage
            lat["end_to_end"].append(time.perf_counter() - t_start)
    for slot, comp in {**comps, FIRST_SLOT: retriever}.items():  # a routed slot: teacher calls, fraction, time on each path
        if facts.get(slot, {}).get("variant") == "routed" and hasattr(comp, "stats"):
            facts[slot]["routing"] = comp.stats()
    metrics = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
    result: dict[str, Any] = {
        "pipeline": {slot: facts.get(slot, {}).get("variant", "off") for slot in cfg.pipeline},
        "n_queries": len(qids),
        "n_docs": len(data.corpus),
        "dataset": data.name,
        "conversational": sum(bool(qa[q].history) for q in qids if q in qa),  # queries with a history
        "stages": facts,
        "index_build_s": index_s,
        "retrieval": evaluate_run(qrels, run_retrieve, metrics),
        "after_rerank": evaluate_run(qrels, run_rerank, metrics) if "reranker" in comps else None,
        "rerank_fusion": r.get("rerank_fusion") if "reranker" in comps else None,
        "retrieval_raw_question": evaluate_run(qrels, run_raw, metrics) if run_raw else None,
        "rewrites": rewrites,
        "latency": {k: stats_from_latencies(v, len(v)).as_dict() for k, v in lat.items() if v},
        "answers": answers,
    }
    if answers:
        from ragdistill.e2e.generation_metrics import score_answers

        result["generation"] = score_answers(list(answers.values()))
    if cfg.mteb:
        from ragdistill.e2e.external_metrics import mteb_scores

        # MTEB scores one encoder over its own index: a routed first stage's deployed one, the student
        encoder, index = ((comps[FIRST_SLOT].student, retriever.student) if isinstance(retriever, RoutedRetriever)
                          else (comps[FIRST_SLOT], retriever))
        result["mteb"] = mteb_scores(encoder, index, data.corpus, queries, qrels, f"ragdistill-e2e-{data.name}",
                                     cfg.data.test_split, work / "e2e" / "mteb" / index.index_path.stem, standard=cfg.data.mteb_task)
    if cfg.ragas.enabled and answers:
        from ragdistill.e2e.external_metrics import ragas_scores

        result["ragas"] = ragas_scores(cfg, list(answers.values()))
    e2e = result["latency"]["end_to_end"]
    # generation runs on max_generate queries only: cost uses the measured mean of each stage
    per_query_s = sum(v["mean_ms"] for k, v in result["latency"].items() if k != "end_to_end") / 1000
    result["cost"] = {
        "per_query_s": per_query_s,
        "queries_per_s": 1 / per_query_s if per_query_s else float("inf"),
        "usd_per_1k_queries": per_query_s * 1000 / 3600 * cfg.cost.hourly_price_usd,
        "hourly_price_usd": cfg.cost.hourly_price_usd,
        "end_to_end_p50_ms": e2e["p50_ms"],
    }
    result["total_size_mb"] = float(np.nansum([f.get("size_mb") or np.nan for f in facts.values()])) if facts else None
    return result
