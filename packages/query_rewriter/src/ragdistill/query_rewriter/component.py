"""The rewriter as a pipeline component (``ragdistill.common.pipeline.Rewriter``) for the e2e harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.data import RewriteRecord
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.pipeline import Rewriter
from ragdistill.query_rewriter.filters import clean_output


def _artifact(path: Path, verb: str) -> Path:
    """The folder a verb writes, or an error naming that verb (a bare path error does not say how to make it)."""
    if not (path / "config.json").is_file():
        raise RagdistillError(f"{path}: no query_rewriter {verb} output; run `ragdistill query_rewriter {verb}` first (same paths.work_dir)")
    return path


def component(cfg: Any, variant: str) -> Rewriter:
    """``(history, question) -> standalone query`` from the teacher, the undistilled student, the
    distilled student or its ONNX export; an empty output falls back to the question."""
    from ragdistill.common.config import stage_dir
    from ragdistill.query_rewriter.examples import teacher_prompt
    from ragdistill.query_rewriter.prompts import rewrite_example
    from ragdistill.query_rewriter.student import load_student, load_student_onnx

    t = cfg.query_rewriter.teach
    msl = int(cfg.query_rewriter.train.max_source_length)
    path: str | None = None
    if variant == "teacher":
        from ragdistill.query_rewriter.teach import LazyTeacher, max_new_tokens

        teacher, prompt = LazyTeacher(cfg.teacher), teacher_prompt(cfg)
        path = resolve_model(cfg.teacher.model) if cfg.teacher.backend == "causal_lm" else None

        def gen(ex: Any) -> str:
            return teacher.get().generate([prompt.messages(ex)], max_new_tokens=max_new_tokens(cfg, "rewrite"))[0]
    else:
        if variant == "student_base":
            model, path = load_student(cfg.student.model, msl, int(cfg.run.seed)), resolve_model(cfg.student.model)
        elif variant == "student":
            path = str(_artifact(stage_dir(cfg, "query_rewriter", "train") / "model", "train"))
            model = load_student(path, msl)
        elif variant == "student_onnx":
            path = str(_artifact(stage_dir(cfg, "query_rewriter", "export") / "onnx", "export"))
            model = load_student_onnx(path, msl)
        else:
            raise RagdistillError(f"query_rewriter has no variant {variant!r}; use teacher, student_base, student or student_onnx")

        def gen(ex: Any) -> str:
            return model.generate([ex])[0]

    def rewrite(history: list[str], question: str) -> str:
        ex = rewrite_example(RewriteRecord("e2e", list(history), question), int(t.max_turns), int(t.max_answer_chars))
        return clean_output(gen(ex)) or question

    if path is not None:  # the harness reports its size on disk (a teacher may be remote: no path)
        rewrite.model_path = path  # type: ignore[attr-defined]
    return rewrite
