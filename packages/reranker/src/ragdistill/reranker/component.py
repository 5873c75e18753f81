"""The reranker as a pipeline component: ``component(cfg, variant)`` -> a
:class:`~ragdistill.common.pipeline.Reranker` scoring (query, candidate texts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.pipeline import VARIANTS
from ragdistill.reranker.students import load_cross_encoder, predict_raw
from ragdistill.reranker.teachers import make_teacher

EXTRA_VARIANTS = ("colbert_base", "colbert")  # the late-interaction student, before / after distillation


def component(cfg: Any, variant: str) -> Any:
    """The teacher (any scoring teacher), the undistilled student, the distilled student or its ONNX
    (int8 when exported, else fp32) export, or the ColBERT student (``colbert_base``/``colbert``), as
    ``score(query, docs) -> list[float]``."""
    if variant not in (*VARIANTS, *EXTRA_VARIANTS):
        raise RagdistillError(f"reranker component: unknown variant {variant!r}; choose from {', '.join((*VARIANTS, *EXTRA_VARIANTS))}")
    bs = int(cfg.reranker.eval.batch_size)
    if variant in EXTRA_VARIANTS:
        return _colbert(cfg, variant)
    if variant == "teacher":
        teacher = make_teacher(cfg)

        def rerank_teacher(query: str, docs: list[str]) -> list[float]:
            return teacher.score([(query, d) for d in docs])

        rerank_teacher.model_path = str(teacher.path or teacher.model_name)  # type: ignore[attr-defined]
        return rerank_teacher
    elif variant == "student_onnx":
        from ragdistill.reranker.export import ONNX_FP32, int8_file

        path = stage_dir(cfg, "reranker", "export") / "cross_encoder"
        int8 = int8_file(str(cfg.reranker.export.quantization))
        f = int8 if (path / int8).is_file() else ONNX_FP32
        if not (path / f).is_file():
            raise RagdistillError(f"{path / f} not found; run `ragdistill reranker export` first (with the same paths.work_dir)")
        ce = load_cross_encoder(str(path), cfg.student.max_length, backend="onnx", model_kwargs={"file_name": f})
        path = path / f
    else:
        path = stage_dir(cfg, "reranker", "train") / variant
        if not (Path(path) / "config.json").is_file():
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
                              "(with reranker.colbert.enabled=true and the same paths.work_dir)")
    student = ColbertStudent.load(path)

    def rerank(query: str, docs: list[str]) -> list[float]:
        return student.score_pairs(query, docs)

    rerank.model_path = str(path)  # type: ignore[attr-defined]
    return rerank
