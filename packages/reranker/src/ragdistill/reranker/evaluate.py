"""reranker evaluate: teacher and students rerank the same first-stage candidates, side by side.

On the held-out split (``data.test_split``; training never saw it): NDCG@10, MRR@10, MAP@100 via
the common metrics, pairs/s and p50/p95 latency per query of ``evaluate.latency_candidates``
candidates. Systems: ``teacher`` (scores through the label cache), ``student_base`` (the student
cross-encoder before distillation: its encoder with a freshly initialised head), ``student``, its
ONNX fp32/int8 exports, ``colbert_base``/``colbert`` (the late-interaction student; the exported
one searched through its colbert-ai PLAID index), and reference rows that do not rerank with a
cross-encoder: the first stage itself (``ref_first_stage_<bm25|file|embedder>``) and bi-encoder
cosine over the same candidates (``ref_biencoder_<model>``), so a reader sees what reranking adds
and that the teacher beats its own starting point. With ``evaluate.fusion_weight`` set, every student
system also gets a ``<system>+fusion`` row: its scores fused with the list's first-stage scores
(:mod:`ragdistill.common.fusion`), what a pipeline that keeps the first stage's signal serves.

``reranker.evaluate.candidate_sources`` picks the candidate lists: ``first_stage`` (BM25 or the
candidates file; rows unsuffixed) and ``embedder`` (a bi-encoder's top-k, the lists the e2e
pipeline reranks; rows ``<system>@embedder``). Each system scores a (query, document) pair once
whatever the number of sources, and its scores are kept under ``evaluate/scores/`` keyed by the
model files and the lists, so a rerun after a crash recomputes only what is missing. One table per
source is printed and kept as ``results.txt``; the figures go into the evaluate result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.fusion import fuse
from ragdistill.common.io import read_json, write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.paths import export_dir, stage_dir
from ragdistill.common.report import comparison_table
from ragdistill.common.results import EvaluateResult
from ragdistill.common.timing import measure
from ragdistill.reranker.candidates import CandidateList, candidate_sources, first_stage
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


def _dir_mb(path: Path, pattern: str = "*") -> float:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file()) / 2**20


def _fingerprint(paths: list[Path]) -> str:
    """Which model files produced a score file: their names, sizes and modification times."""
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return hashlib.sha256(json.dumps([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]).encode()).hexdigest()[:16]


class ScoreStore:
    """Each system's scores per (query id, doc id), computed once across candidate sources and kept
    on disk (``evaluate/scores/<system>.json``, with the fingerprint of the model files that made
    them): an evaluation of 1,339 queries x two sources runs for hours on 2 CPU cores, and a rerun
    after a crash recomputes only the pairs it lacks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def scores(self, system: str, fingerprint: str, score: Scorer, data: Any, cands: dict[str, CandidateList]) -> dict[str, list[float]]:
        f = self.folder / f"{system}.json"
        saved = read_json(f) if f.is_file() else {}
        memo: dict[str, dict[str, float]] = saved.get("scores", {}) if saved.get("fingerprint") == fingerprint else {}
        todo = [(q, [d for d in c.doc_ids if d not in memo.get(q, {})]) for q, c in cands.items()]
        todo = [(q, ids) for q, ids in todo if ids]
        if todo:
            from tqdm.auto import tqdm

            for i, (q, ids) in enumerate(tqdm(todo, desc=f"evaluate {system}", unit="query")):
                memo.setdefault(q, {}).update(zip(ids, (float(x) for x in score(data.queries[q], ids)), strict=True))
                if (i + 1) % 200 == 0:  # checkpoint: a crash loses at most 200 queries' scores
                    write_json(f, {"fingerprint": fingerprint, "scores": memo})
            write_json(f, {"fingerprint": fingerprint, "scores": memo})
        return {q: [memo[q][d] for d in c.doc_ids] for q, c in cands.items()}


def evaluate(cfg: Any, teacher: Any) -> EvaluateResult:
    """Every system on the held-out lists of every candidate source; ``teacher`` is the stage's ``CachedTeacher``."""
    from ragdistill.reranker.teachers import teacher_available

    rc, ev = cfg.reranker, cfg.reranker.evaluate
    data = load_data(cfg)
    split = cfg.data.test_split
    _, qrels = data.split(split)
    sources = candidate_sources(cfg, data, split)
    texts = {d: data.corpus[d].full_text for cands, _, _ in sources.values() for c in cands.values() for d in c.doc_ids}
    lat_lists: list[tuple[str, list[str]]] = []
    primary = sources[""][0]
    if int(ev.latency_queries) > 0:
        lat_q = sorted(primary)[: int(ev.latency_queries)]
        lat_c = first_stage(data, split, int(ev.latency_candidates), rc.candidates.file)
        lat_lists = [(data.queries[q], lat_c[q].doc_ids) for q in lat_q if q in lat_c]
        texts.update({d: data.corpus[d].full_text for _, ids in lat_lists for d in ids})
    bs = int(ev.batch_size)
    skip = set(ev.skip)
    results: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    res = EvaluateResult("reranker", n_items=len(primary), split=split)
    eval_dir = stage_dir(cfg, "reranker", "evaluate")
    store = ScoreStore(eval_dir / "scores")
    fusion = None if ev.get("fusion_weight") is None else float(ev.fusion_weight)

    def add(name: str, score: Scorer, fingerprint: str, timed: bool = True, size_mb: float | None = None) -> None:
        """One system's rows on every source (scores memoised), its speed on the latency lists."""
        if name in skip:
            notes[name] = "skipped (reranker.evaluate.skip)"
            return
        log.info("evaluate: %s", name)
        for suffix, (cands, _, _) in sources.items():
            scores = store.scores(name, fingerprint, score, data, cands)
            results[name + suffix] = _quality(qrels, cands, scores)
            if fusion is not None and not name.startswith("ref_"):
                fused = {q: fuse(scores[q], cands[q].scores, fusion) for q in cands}
                results[f"{name}+fusion{suffix}"] = _quality(qrels, cands, fused)
        if timed and lat_lists:
            results[name].update(_speed(score, lat_lists))
        if size_mb is not None:
            results[name]["size_mb"] = size_mb

    # the teacher: quality from the label cache (shared with teach), speed only if the model is here
    teacher_id = teacher.teacher_id
    for suffix, (cands, _, _) in sources.items():
        scored, run = score_lists(teacher, data, cands, f"reranker teacher scores (test{suffix})")
        res.count_labels(run)
        teacher_id = run.teacher_id or teacher_id
        results["teacher" + suffix] = _quality(qrels, cands, {s.query_id: s.teacher_scores for s in scored})
    if teacher_available(cfg) and lat_lists and "teacher_speed" not in skip:
        def cold_teacher(q: str, ids: list[str]) -> list[float]:  # a memoising bi-encoder teacher re-encodes each list
            backend = teacher.backend
            if hasattr(backend, "forget"):
                backend.forget()
            return backend.score([(q, texts[d]) for d in ids])

        results["teacher"].update(_speed(cold_teacher, lat_lists))
    elif lat_lists:
        notes["teacher"] = "speed not measured: the teacher model is not built here (scores came from the label cache)"

    train_dir, onnx_dir = stage_dir(cfg, "reranker", "train"), export_dir(cfg, "reranker")
    for name in ("student_base", "student"):  # each served at the length it was trained with (saved in its tokenizer)
        p = train_dir / name
        if name in skip:
            notes[name] = "skipped (reranker.evaluate.skip)"
            continue
        if not (p / "config.json").is_file():
            raise RagdistillError(f"{p} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(p))
        add(name, _cross_encoder_scorer(ce, texts, bs), f"{_fingerprint([p])}:len={ce.max_seq_length}", size_mb=_dir_mb(p, "*.safetensors"))
    if onnx_dir.is_dir():
        for name, f in (("student_onnx", ONNX_FP32), ("student_onnx_int8", int8_file(onnx_dir))):
            if f and (onnx_dir / f).is_file() and name not in skip:
                ce = load_cross_encoder(str(onnx_dir), backend="onnx", model_kwargs={"file_name": f})
                add(name, _cross_encoder_scorer(ce, texts, bs), f"{_fingerprint([onnx_dir / f, onnx_dir / 'config.json'])}:len={ce.max_seq_length}",
                    size_mb=(onnx_dir / f).stat().st_size / 2**20)
    else:
        notes["student_onnx"] = "not exported yet (ragdistill reranker export)"

    if rc.train.colbert.enabled:
        for name, score, fingerprint, extra in _colbert_systems(cfg, train_dir, stage_dir(cfg, "reranker", "export"), texts, notes):
            add(name, score, fingerprint, timed=name == "colbert")
            if name in results:
                results[name].update(extra)
    for cands, kind, _ in sources.values():
        results[f"ref_first_stage_{kind}"] = _quality(qrels, cands, {q: c.scores for q, c in cands.items()})
    if rc.train.colbert.enabled and "colbert_retrieval" not in skip:
        plaid = colbert_retrieval(cfg, data, qrels, list(primary), int(rc.candidates.eval_k))
        if plaid is not None:  # a first stage of its own: its top-k over the corpus, not a reranking of the lists above
            results["ref_colbert_plaid_retrieval"] = plaid
    for m in ev.biencoders:
        add(f"ref_biencoder_{m}", _biencoder_scorer(m, texts, bs), f"biencoder:{m}", timed=False)

    res.results = results
    res.details = {"queries": len(primary), "candidates_per_query": int(rc.candidates.eval_k),
                   "candidate_sources": {(s or "first_stage"): info for s, (_, _, info) in sources.items()},
                   "latency_candidates": len(lat_lists[0][1]) if lat_lists else 0, "teacher": teacher_id, "fusion_weight": fusion,
                   "student_base_is": "the student encoder with a freshly initialised 1-logit head (no ranking training)",
                   "notes": notes}
    tables = []
    for suffix, (cands, kind, info) in sources.items():
        rows = {k[: len(k) - len(suffix)] if suffix else k: v for k, v in results.items()
                if (k.endswith(suffix) if suffix else "@" not in k) and (not k.startswith("ref_first_stage_") or k.endswith(kind))}
        title = (f"[reranker] teacher vs student, before and after distillation: {len(cands)} {split} queries x "
                 f"{info['source']} top-{info['k']} ({kind}{': ' + str(info.get('is')) if info.get('is') else ''})")
        tables.append(comparison_table(rows, title=title))
    text = "\n\n".join(tables)
    print(text, flush=True)
    write_text_atomic(eval_dir / "results.txt", text + "\n")
    for k, v in notes.items():
        print(f"  note: {k}: {v}")
    return res


def _colbert_systems(cfg: Any, train_dir: Path, exported_dir: Path, texts: dict[str, str], notes: dict[str, str]) -> list[tuple[str, Scorer, str, dict]]:
    """The ColBERT student's systems: ``colbert``, the exported checkpoint reranking through its
    colbert-ai PLAID index (``Searcher.search(query, pids=candidates)``), and ``colbert_base`` (the
    undistilled student, scored with colbert-ai's encoders and MaxSim, each document encoded once)."""
    from ragdistill.reranker.colbert import DOC_IDS_FILE, INDEX_DIR, ColbertStudent, PlaidIndex

    out = []
    exported = exported_dir / "colbert"
    if (exported / INDEX_DIR / DOC_IDS_FILE).is_file():
        index = PlaidIndex.load(exported / INDEX_DIR, exported)
        missing = [d for d in texts if d not in set(index.doc_ids)]
        if missing:
            raise RagdistillError(f"{exported}: the ColBERT index lacks {len(missing)} candidate documents (e.g. {missing[0]!r}); "
                                  "rerun `ragdistill reranker export` with the same data settings")
        out.append(("colbert", index.rerank, _fingerprint([exported]),
                    {"size_mb": _dir_mb(exported, "model.safetensors"), "index_mb": index.size_mb}))
    else:
        notes["colbert"] = "not exported yet (ragdistill reranker export builds its PLAID index)"
    if (train_dir / "colbert_base" / "artifact.metadata").is_file():
        base = ColbertStudent.load(train_dir / "colbert_base")
        out.append(("colbert_base", base.memo_scorer(texts, int(cfg.reranker.evaluate.batch_size)), _fingerprint([train_dir / "colbert_base"]), {}))
    return out


def colbert_retrieval(cfg: Any, data: Any, qrels: dict, queries: list[str], k: int) -> dict[str, float] | None:
    """The exported ColBERT index as a first stage: colbert-ai's PLAID search over the whole index,
    top-``k`` per held-out query (only when the index covers the corpus)."""
    from ragdistill.reranker.colbert import DOC_IDS_FILE, INDEX_DIR, PlaidIndex
    from ragdistill.reranker.config import IndexScope

    exported = stage_dir(cfg, "reranker", "export") / "colbert"
    if cfg.reranker.export.colbert_index_scope != IndexScope.corpus or not (exported / INDEX_DIR / DOC_IDS_FILE).is_file():
        return None
    index = PlaidIndex.load(exported / INDEX_DIR, exported)
    if len(index.doc_ids) != len(data.corpus):
        return None
    run = {q: dict(index.search(data.queries[q], k)) for q in queries}
    return evaluate_run({q: qrels[q] for q in queries}, run, METRICS)


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
