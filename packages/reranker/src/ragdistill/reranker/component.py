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
        int8 = int8_file(cfg.reranker.export.quantization.value)
        f = int8 if (path / int8).is_file() else ONNX_FP32
        if not (path / f).is_file():
            raise RagdistillError(f"{path / f} not found; run `ragdistill reranker export` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(path), cfg.student.max_length, backend="onnx", model_kwargs={"file_name": f})
        path = path / f
    else:
        path = stage_dir(cfg, "reranker", "train") / variant  # student_base, student (= paths.student_dir)
        if not (path / "config.json").is_file():
            raise RagdistillError(f"{path} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(path), cfg.student.max_length)

    def rerank(query: str, docs: list[str]) -> list[float]:
        return predict_raw(ce, [(query, d) for d in docs], bs)

    rerank.model_path = str(path)  # type: ignore[attr-defined]
    return rerank


def _colbert(cfg: Any, variant: str) -> Any:
    """The ColBERT student scoring the harness's candidates on the fly (MaxSim over freshly encoded
    documents: the harness's candidates come from its own first stage, not the export's index)."""
    from ragdistill.reranker.colbert import ColbertStudent

    path = stage_dir(cfg, "reranker", "train") / variant
    if not (path / "colbert_config.json").is_file():
        raise RagdistillError(f"{path} not found; run `ragdistill reranker train` first "
                              "(with reranker.train.colbert.enabled=true and the same paths.work_dir)")
    student = ColbertStudent.load(path)

    def rerank(query: str, docs: list[str]) -> list[float]:
        return student.score_pairs(query, docs)

    rerank.model_path = str(path)  # type: ignore[attr-defined]
    return rerank
