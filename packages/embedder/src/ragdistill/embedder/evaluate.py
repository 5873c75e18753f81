"""embedder evaluate: teacher | student before distillation | student | ONNX | ONNX int8, side by side.

On the held-out split (``data.test_split``, never seen by ``train``), every system embeds the same
corpus and queries; retrieval is exact cosine top-100 (faiss) scored by pytrec_eval (NDCG@10,
MRR@10, Recall@100) at full size and at every Matryoshka dim (``embedder.dims``, default the
trained ``embedder.matryoshka`` list; ``metric d=128`` rows). MTEB's own retrieval evaluator
scores the same data as a local custom task (``mteb_*`` rows; JSON in ``evaluate/mteb/<system>/``).
Speed: queries/s at ``encode_batch_size`` and single-query p50/p95 latency, each system
measured in the same process, one after the other. Teacher embeddings come from the label cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.cache import LabelCache
from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.models import resolve_model
from ragdistill.common.report import write_comparison
from ragdistill.common.teachers import EmbeddingTeacher, build_teacher, require
from ragdistill.common.timing import measure
from ragdistill.embedder.config import SYSTEMS
from ragdistill.embedder.export import FP32_FILE, INT8_FILE
from ragdistill.embedder.models import (
    STAGE,
    embedding_dim,
    export_dir,
    load_sentence_transformer,
    require_artifact,
    trained_model_dir,
)
from ragdistill.embedder.retrieve import EncodeFn, search
from ragdistill.embedder.teach import data_source, load_data, open_cache, teacher_embed

log = get_logger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@100")


@dataclass
class System:
    """One column of the comparison: how it embeds for quality (``encode``) and for speed (``raw``)."""

    name: str
    encode: EncodeFn
    raw: EncodeFn
    dim: int
    size_mb: float


def _st_system(name: str, path: str, max_length: int | None, batch_size: int, backend: str = "torch",
               file_name: str | None = None) -> System:
    st = load_sentence_transformer(path, max_length=max_length, backend=backend, file_name=file_name)

    def encode(texts: list[str]) -> np.ndarray:
        return st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=len(texts) > 4 * batch_size).astype(np.float32)

    folder = Path(resolve_model(path))
    size = (folder / file_name).stat().st_size if file_name else sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return System(name, encode, encode, embedding_dim(st), size / 2**20)


def build_system(cfg: Any, name: str, cache: LabelCache | None = None) -> System:
    """The named system, or a RagdistillError saying which verb produces what it needs."""
    ml, bs = cfg.student.max_length, int(cfg.embedder.encode_batch_size)
    if name == "teacher":
        teacher = require(build_teacher(cfg.teacher), EmbeddingTeacher, "embedder evaluate")
        cache = cache or open_cache(cfg, sharded=False)
        tbs = int(cfg.teacher.batch_size)

        def cached(texts: list[str]) -> np.ndarray:
            out, _ = teacher_embed(cache, teacher, list(texts), tbs, "teacher embeddings")
            assert out is not None  # an unsharded cache labels everything
            return out

        folder = Path(resolve_model(cfg.teacher.model))
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20 if folder.exists() else float("nan")
        dim = int(getattr(teacher, "dim", 0) or teacher.embed(["dimension probe"]).shape[1])
        return System(name, cached, lambda t: teacher.embed(list(t)), dim, size)
    if name == "student_base":
        return _st_system(name, cfg.student.model, ml, bs)
    if name == "student":
        return _st_system(name, str(require_artifact(trained_model_dir(cfg), "train", "trained student")), ml, bs)
    if name in ("student_onnx", "student_onnx_int8"):
        d = require_artifact(export_dir(cfg), "export", "ONNX export")
        return _st_system(name, str(d), ml, bs, backend="onnx", file_name=FP32_FILE if name == "student_onnx" else INT8_FILE)
    raise RagdistillError(f"embedder.systems: unknown system {name!r}; choose from {', '.join(SYSTEMS)}")


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


def evaluate(cfg: Any) -> dict[str, Any]:
    s = cfg.embedder
    systems = list(s.systems)
    unknown = [x for x in systems if x not in SYSTEMS]
    if unknown or not systems:
        raise RagdistillError(f"embedder.systems={systems}: unknown {unknown}; choose from {', '.join(SYSTEMS)}")
    data = load_data(cfg)
    queries, qrels = data.split(cfg.data.test_split)
    qids, doc_ids = list(queries), list(data.corpus)
    q_texts, d_texts = [queries[q] for q in qids], [data.corpus[d].full_text for d in doc_ids]
    dims = sorted({int(d) for d in (s.dims if s.dims is not None else s.matryoshka or [])}, reverse=True)
    out = stage_dir(cfg, STAGE, "evaluate")
    speed_texts = (q_texts * (1 + s.speed_texts // max(1, len(q_texts))))[: s.speed_texts]
    task, standard = None, cfg.data.mteb_task
    if s.mteb:
        from ragdistill.embedder.mteb_task import make_task

        # the data's standard MTEB task when it names one (data.mteb_task), else a custom task over it
        task = make_task(f"ragdistill-{Path(str(data_source(cfg))).name}-{cfg.data.test_split}", data.corpus, queries, qrels,
                         cfg.data.test_split, standard=standard)

    results: dict[str, dict[str, float]] = {}
    mteb_files: dict[str, str] = {}
    for name in systems:
        log.info("evaluate: %s", name)
        system = build_system(cfg, name)
        d_emb, q_emb = system.encode(d_texts), system.encode(q_texts)
        r = {"dim": float(system.dim), **retrieval_metrics(d_emb, doc_ids, q_emb, qids, qrels, dims)}
        if task is not None:
            from ragdistill.embedder.mteb_task import PrecomputedEncoder, run_mteb

            memo = dict(zip(d_texts, d_emb, strict=True)) | dict(zip(q_texts, q_emb, strict=True))
            r.update(run_mteb(task, PrecomputedEncoder(name, system.encode, memo, system.dim), out / "mteb" / name))
            mteb_files[name] = str(out / "mteb" / name / f"{task.metadata.name}.json")
        r.update(speed(system.raw, speed_texts, int(s.encode_batch_size), int(s.latency_queries)))
        r["size_mb"] = system.size_mb
        results[name] = r
        del system

    extra = {
        "data": data_source(cfg), "split": cfg.data.test_split, "n_queries": len(qids), "n_docs": len(doc_ids), "dims": dims,
        "teacher": cfg.teacher.model, "student": cfg.student.model, "mteb_results": mteb_files,
        "mteb_task": None if task is None else {"name": task.metadata.name, "standard": bool(standard),
                                                 # a slice scores MTEB's task definition, not the leaderboard's full split
                                                 "full_split": cfg.data.max_docs is None and cfg.data.max_queries is None},
        "speed": {"texts": len(speed_texts), "batch_size": int(s.encode_batch_size), "latency_calls": min(len(speed_texts), int(s.latency_queries))},
    }
    for verb, file in (("train", "train.json"), ("export", "export.json")):
        p = stage_dir(cfg, STAGE, verb) / file
        if p.exists():
            extra[verb] = read_json(p)
    payload = write_comparison(out, STAGE, results, extra)
    if "student" in results and "student_base" in results:
        gain = results["student"]["ndcg@10"] - results["student_base"]["ndcg@10"]
        log.info("distillation gain on held-out NDCG@10: %+.4f (student %.4f vs student_base %.4f)", gain,
                 results["student"]["ndcg@10"], results["student_base"]["ndcg@10"])
    return payload
