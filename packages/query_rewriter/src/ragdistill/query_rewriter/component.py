"""The rewriter as a pipeline component (``ragdistill.common.pipeline.Rewriter``) and its batched
predictor, for the e2e harness and the shared operations (calibrate, routing, the monitor).

A predictor maps records (``{"history", "question", ...}``) to raw outputs: the teacher's through
the label cache (the keys ``teach`` makes, so a conversation it labelled is never labelled again),
a student's greedily generated in batches. :func:`as_rewrite` is what the pipeline returns for a raw
output: the cleaned rewrite, or the question when nothing is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragdistill.common.models import resolve_model
from ragdistill.common.pipeline import Rewriter
from ragdistill.query_rewriter.examples import pipeline_example
from ragdistill.query_rewriter.filters import clean_output
from ragdistill.query_rewriter.prompts import Example

Record = dict[str, Any]


def record_example(cfg: Any, record: Record) -> Example:
    """A record's rewrite example (the same source text teach and evaluate build from the record)."""
    return pipeline_example(cfg, record.get("history") or [], record["question"], str(record.get("id", "e2e")))


def as_rewrite(output: str | None, record: Record) -> str:
    """The query the pipeline passes on: the cleaned rewrite, or the question when it is empty."""
    return clean_output(output or "") or record["question"]


def predictor(cfg: Any, variant: str) -> Callable[[list[Record]], list[str]]:
    """Raw outputs of ``variant`` (teacher, student_base, student, student_onnx, student_onnx_int8) for
    records, in batches of ``evaluate.batch_size``; ``model_path`` names what it loaded (the harness
    reports its size; a remote teacher has none)."""
    if variant == "teacher":
        from ragdistill.query_rewriter.labels import cached_teacher, task_template

        teacher = cached_teacher(cfg)
        template = task_template(cfg, "rewrite")

        def predict(records: list[Record]) -> list[str]:
            sources = [record_example(cfg, r).source for r in records]
            return teacher.labels(sources, template, desc="query_rewriter teacher") if sources else []

        predict.model_path = resolve_model(cfg.teacher.model) if cfg.teacher.backend == "causal_lm" else None  # type: ignore[attr-defined]
        return predict

    from ragdistill.query_rewriter.student import load_system

    rewriter, path = load_system(cfg, variant)
    bs = int(cfg.query_rewriter.evaluate.batch_size)

    def predict(records: list[Record]) -> list[str]:
        return rewriter.generate([record_example(cfg, r) for r in records], batch_size=bs)

    predict.model_path = path  # type: ignore[attr-defined]
    return predict


def component(cfg: Any, variant: str) -> Rewriter:
    """``(history, question) -> standalone query`` from the teacher (through the label cache), the
    undistilled student, the distilled student or its ONNX export; an empty output falls back to the question."""
    predict = predictor(cfg, variant)

    def rewrite(history: list[str], question: str) -> str:
        rec = {"history": list(history or []), "question": question}
        return as_rewrite(predict([rec])[0], rec)

    if getattr(predict, "model_path", None) is not None:  # the harness reports its size on disk (a teacher may be remote: no path)
        rewrite.model_path = predict.model_path  # type: ignore[attr-defined]
    return rewrite
