"""reranker evaluate: teacher and students rerank the same first-stage candidates, side by side.

On the held-out split (``data.test_split``; training never saw it): NDCG@10, MRR@10, MAP@100 via
the common metrics, pairs/s and p50/p95 latency per query of ``evaluate.latency_candidates``
candidates. Systems: ``teacher`` (scores through the label cache), ``student_base`` (the student
cross-encoder before distillation: its encoder with a freshly initialised head), ``student``, its
ONNX fp32/int8 exports, ``colbert_base``/``colbert`` (late interaction over the exported index),
and reference rows that do not rerank with a cross-encoder: the first stage itself
(``ref_first_stage_bm25``) and bi-encoder cosine over the same candidates
(``ref_biencoder_<model>``), so a reader sees what reranking adds and that the teacher beats its
own starting point. The table is printed and kept as ``results.txt``; the figures go into the
evaluate result (``results.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.paths import export_dir, stage_dir
from ragdistill.common.report import comparison_table
from ragdistill.common.results import EvaluateResult
from ragdistill.common.timing import measure
from ragdistill.reranker.candidates import CandidateList, first_stage
from ragdistill.reranker.lists import load_data, score_lists
from ragdistill.reranker.students import ONNX_FP32, int8_file, load_cross_encoder, predict_raw

log = get_logger(__name__)
METRICS = ("ndcg@10", "mrr@10", "map@100")
Scorer = Callable[[str, list[str]], list[float]]  # (query text, doc ids) -> scores


def _quality(qrels: dict, cands: dict[str, CandidateList], scores: dict[str, list[float]]) -> dict[str, float]:
    run = {q: {d: float(s) for d, s in zip(cands[q].doc_ids, scores[q], strict=True)} for q in cands}
    return evaluate_run({q: qrels[q] for q in cands}, run, METRICS)


def _speed(score: Scorer, lat_lists: list[tuple[str, list[str]]]) -> dict[str, float]:
    st = measure(lambda batch: score(*batch[0]), lat_lists, batch_size=1, warmup=1)
    n = len(lat_lists[0][1])
    return {"pairs_per_s": st.items_per_s * n, "p50_ms": st.p50_ms, "p95_ms": st.p95_ms}


def _cross_encoder_scorer(ce: Any, texts: dict[str, str], batch_size: int) -> Scorer:
    return lambda q, ids: predict_raw(ce, [(q, texts[d]) for d in ids], batch_size)


def _system(name: str, score: Scorer, data: Any, qrels: dict, cands: dict[str, CandidateList], lat: list, size_mb: float | None = None) -> dict[str, float]:
    log.info("evaluate: %s", name)
    scores = {q: score(data.queries[q], c.doc_ids) for q, c in cands.items()}
    row = {**_quality(qrels, cands, scores), **(_speed(score, lat) if lat else {})}
    if size_mb is not None:
        row["size_mb"] = size_mb
    return row


def _dir_mb(path: Path, pattern: str = "*") -> float:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file()) / 2**20


def evaluate(cfg: Any, teacher: Any) -> EvaluateResult:
    """Every system on the held-out lists; ``teacher`` is the stage's ``CachedTeacher``."""
    from ragdistill.reranker.teachers import teacher_available

    rc, ev = cfg.reranker, cfg.reranker.evaluate
    data = load_data(cfg)
    split = cfg.data.test_split
    _, qrels = data.split(split)
    cands = first_stage(data, split, int(rc.candidates.eval_k), rc.candidates.file)
    if not cands:
        raise RagdistillError(f"no candidates for the {split!r} split of {(cfg.data.path or cfg.data.name)!r}")
    texts = {d: data.corpus[d].full_text for c in cands.values() for d in c.doc_ids}
    lat_lists: list[tuple[str, list[str]]] = []
    if int(ev.latency_queries) > 0:
        lat_q = sorted(cands)[: int(ev.latency_queries)]
        lat_c = first_stage(data, split, int(ev.latency_candidates), rc.candidates.file)
        lat_lists = [(data.queries[q], lat_c[q].doc_ids) for q in lat_q if q in lat_c]
        texts.update({d: data.corpus[d].full_text for _, ids in lat_lists for d in ids})
    bs = int(ev.batch_size)
    results: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    res = EvaluateResult("reranker", n_items=len(cands), split=split)

    # the teacher: quality from the label cache (shared with teach), speed only if the model is here
    scored, run = score_lists(teacher, data, cands, "reranker teacher scores (test)")
    res.count_labels(run)
    teacher_id = run.teacher_id or teacher.teacher_id
    results["teacher"] = _quality(qrels, cands, {s.query_id: s.teacher_scores for s in scored})
    if teacher_available(cfg) and lat_lists:
        def cold_teacher(q: str, ids: list[str]) -> list[float]:  # a memoising bi-encoder teacher re-encodes each list
            backend = teacher.backend
            if hasattr(backend, "forget"):
                backend.forget()
            return backend.score([(q, texts[d]) for d in ids])

        results["teacher"].update(_speed(cold_teacher, lat_lists))
    elif lat_lists:
        notes["teacher"] = "speed not measured: the teacher model is not built here (scores came from the label cache)"

    train_dir, onnx_dir = stage_dir(cfg, "reranker", "train"), export_dir(cfg, "reranker")
    max_len = cfg.student.max_length
    for name in ("student_base", "student"):
        p = train_dir / name
        if not (p / "config.json").is_file():
            raise RagdistillError(f"{p} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(p), max_len)
        results[name] = _system(name, _cross_encoder_scorer(ce, texts, bs), data, qrels, cands, lat_lists, _dir_mb(p, "*.safetensors"))
    if onnx_dir.is_dir():
        for name, f in (("student_onnx", ONNX_FP32), ("student_onnx_int8", int8_file(rc.export.quantization.value))):
            if (onnx_dir / f).is_file():
                ce = load_cross_encoder(str(onnx_dir), max_len, backend="onnx", model_kwargs={"file_name": f})
                results[name] = _system(name, _cross_encoder_scorer(ce, texts, bs), data, qrels, cands, lat_lists, (onnx_dir / f).stat().st_size / 2**20)
    else:
        notes["student_onnx"] = "not exported yet (ragdistill reranker export)"

    if rc.train.colbert.enabled:
        results.update(_colbert_rows(train_dir, stage_dir(cfg, "reranker", "export"), texts, data, qrels, cands, lat_lists))
    results["ref_first_stage_bm25"] = _quality(qrels, cands, {q: c.scores for q, c in cands.items()})
    for m in ev.biencoders:
        results[f"ref_biencoder_{m}"] = _system(f"biencoder {m}", _biencoder_scorer(m, texts, bs), data, qrels, cands, [])

    res.results = results
    res.details = {"queries": len(cands), "candidates_per_query": int(rc.candidates.eval_k),
                   "latency_candidates": len(lat_lists[0][1]) if lat_lists else 0, "teacher": teacher_id,
                   "student_base_is": "the student encoder with a freshly initialised 1-logit head (no ranking training)",
                   "notes": notes}
    table = comparison_table(results, title="[reranker] teacher vs student, before and after distillation")
    print(table, flush=True)
    write_text_atomic(stage_dir(cfg, "reranker", "evaluate") / "results.txt", table + "\n")
    for k, v in notes.items():
        print(f"  note: {k}: {v}")
    return res


def _colbert_rows(train_dir: Path, export_dir: Path, texts: dict[str, str], data: Any, qrels: dict, cands: dict, lat: list) -> dict[str, dict[str, float]]:
    from ragdistill.reranker.colbert import ColbertIndex, ColbertStudent

    rows = {}
    exported = export_dir / "colbert"
    if (exported / "index_vectors.npy").is_file():
        student = ColbertStudent.load(exported)
        index = ColbertIndex.load(exported)
        missing = [d for d in texts if d not in set(index.doc_ids)]
        if missing:
            raise RagdistillError(f"{exported}: the ColBERT index lacks {len(missing)} candidate documents (e.g. {missing[0]!r}); "
                                  "rerun `ragdistill reranker export` with the same data settings")
        row = _system("colbert", index.scorer(student), data, qrels, cands, lat, _dir_mb(exported, "*.safetensors"))
        row["index_mb"] = index.size_mb
        rows["colbert"] = row
    if (train_dir / "colbert_base").is_dir():
        base = ColbertStudent.load(train_dir / "colbert_base")
        rows["colbert_base"] = _system("colbert_base", lambda q, ids: base.score_pairs(q, [texts[d] for d in ids]), data, qrels, cands, [])
    return rows


def _biencoder_scorer(model: str, texts: dict[str, str], batch_size: int) -> Scorer:
    from sentence_transformers import SentenceTransformer

    from ragdistill.common.models import resolve_model

    st = SentenceTransformer(resolve_model(model), device="cpu")
    st.max_seq_length = min(int(st.max_seq_length or 256), 256)
    ids = list(texts)
    emb = st.encode([texts[d] for d in ids], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True)
    pos = {d: i for i, d in enumerate(ids)}

    def score(q: str, doc_ids: list[str]) -> list[float]:
        qv = st.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
        return [float(np.dot(emb[pos[d]], qv)) for d in doc_ids]

    return score
