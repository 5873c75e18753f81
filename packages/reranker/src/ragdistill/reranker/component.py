"""The reranker as a pipeline component: ``component(cfg, variant)`` -> a
:class:`~ragdistill.common.pipeline.Reranker` scoring (query, candidate texts)."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.paths import export_dir, stage_dir
from ragdistill.common.pipeline import VARIANTS
from ragdistill.reranker.students import ONNX_FP32, int8_file, load_cross_encoder, predict_raw

EXTRA_VARIANTS = ("colbert_base", "colbert")  # the late-interaction student, before / after distillation


def component(cfg: Any, variant: str, teacher: Any = None) -> Any:
    """The teacher (any scoring teacher; ``teacher`` is the stage's ``CachedTeacher``), the undistilled
    student, the distilled student or its ONNX (int8 when exported, else fp32) export, or the ColBERT
    student (``colbert_base``/``colbert``), as ``score(query, docs) -> list[float]``.

    The teacher variant calls the model itself (not the label cache), so the e2e harness times a
    serving teacher; verbs that only need its scores read them from the cache (``Stage.predictor``)."""
    if variant not in (*VARIANTS, *EXTRA_VARIANTS):
        raise RagdistillError(f"reranker component: unknown variant {variant!r}; choose from {', '.join((*VARIANTS, *EXTRA_VARIANTS))}")
    bs = int(cfg.reranker.evaluate.batch_size)
    if variant in EXTRA_VARIANTS:
        return _colbert(cfg, variant)
    if variant == "teacher":
        from ragdistill.reranker.teachers import cached_teacher, teacher_model_path

        scorer = teacher if teacher is not None else cached_teacher(cfg)
        if cfg.teacher.backend != "cross_encoder":
            scorer.backend  # noqa: B018  (loaded now, as ever: the harness counts it in the slot's load time and memory)

        def rerank_teacher(query: str, docs: list[str]) -> list[float]:
            return scorer.score([(query, d) for d in docs])

        rerank_teacher.model_path = teacher_model_path(cfg)  # type: ignore[attr-defined]
        return rerank_teacher
    if variant == "student_onnx":
        path = export_dir(cfg, "reranker")
        f = int8_file(path) or ONNX_FP32
        if not (path / f).is_file():
            raise RagdistillError(f"{path / f} not found; run `ragdistill reranker export` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(path), backend="onnx", model_kwargs={"file_name": f})
        path = path / f
    else:
        path = stage_dir(cfg, "reranker", "train") / variant  # student_base, student (= paths.student_dir)
        if not (path / "config.json").is_file():
            raise RagdistillError(f"{path} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(path))

    def rerank(query: str, docs: list[str]) -> list[float]:
        return predict_raw(ce, [(query, d) for d in docs], bs)

    rerank.model_path = str(path)  # type: ignore[attr-defined]
    return rerank


def _colbert(cfg: Any, variant: str) -> Any:
    """The ColBERT student as the harness's reranker. ``colbert`` with an export: its colbert-ai PLAID
    index reranks the candidates (``Searcher.search(query, pids=...)``) when every candidate text is
    a document the index holds (same id, same text), else the exported checkpoint scores them on the fly with
    colbert-ai's encoders and MaxSim (one path per call, so a list is never scored half one way);
    ``colbert`` before export and ``colbert_base``: the trained / undistilled checkpoint on the fly."""
    from ragdistill.common.paths import stage_dir as _stage_dir
    from ragdistill.reranker.colbert import DOC_IDS_FILE, INDEX_DIR, ColbertStudent, PlaidIndex

    exported = _stage_dir(cfg, "reranker", "export") / "colbert"
    path = exported if variant == "colbert" and (exported / "artifact.metadata").is_file() else stage_dir(cfg, "reranker", "train") / variant
    if not (path / "artifact.metadata").is_file():
        raise RagdistillError(f"{path} not found; run `ragdistill reranker train` first "
                              "(with reranker.train.colbert.enabled=true and the same paths.work_dir)")
    student = ColbertStudent.load(path)
    index = None
    if path == exported and (exported / INDEX_DIR / DOC_IDS_FILE).is_file():
        from ragdistill.reranker.lists import load_data

        index = PlaidIndex.load(exported / INDEX_DIR, exported)
        doc_id = index.ids_of_texts({d: doc.full_text for d, doc in load_data(cfg).corpus.items()})
    stats = {"index_calls": 0, "on_the_fly_calls": 0}

    def rerank(query: str, docs: list[str]) -> list[float]:
        ids = [doc_id.get(t) for t in docs] if index is not None else [None]
        if all(i is not None for i in ids):
            stats["index_calls"] += 1
            return index.rerank(query, ids)
        stats["on_the_fly_calls"] += 1
        return student.score_pairs(query, docs)

    rerank.model_path = str(path)  # type: ignore[attr-defined]
    rerank.stats = lambda: dict(stats)  # type: ignore[attr-defined]
    return rerank
