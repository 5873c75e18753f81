"""The rewriter as a pipeline component (``ragdistill.common.pipeline.Rewriter``) for the e2e harness."""

from __future__ import annotations

from typing import Any

from ragdistill.common.data import RewriteRecord
from ragdistill.common.errors import RagdistillError
from ragdistill.common.pipeline import Rewriter
from ragdistill.query_rewriter.filters import clean_output


def component(cfg: Any, variant: str) -> Rewriter:
    """``(history, question) -> standalone query`` from the teacher, the undistilled student, the
    distilled student or its ONNX export; an empty output falls back to the question."""
    from ragdistill.common.config import stage_dir
    from ragdistill.query_rewriter.prompts import rewrite_example, teacher_messages
    from ragdistill.query_rewriter.student import StudentRewriter

    t = cfg.query_rewriter.teach
    msl = int(cfg.query_rewriter.train.max_source_length)
    if variant == "teacher":
        from ragdistill.query_rewriter.teach import LazyTeacher, max_new_tokens

        teacher = LazyTeacher(cfg.teacher)

        def gen(ex: Any) -> str:
            return teacher.get().generate([teacher_messages(ex)], max_new_tokens=max_new_tokens(cfg, "rewrite"))[0]
    else:
        if variant == "student_base":
            model = StudentRewriter.from_pretrained(cfg.student.model, msl)
        elif variant == "student":
            model = StudentRewriter.from_pretrained(str(stage_dir(cfg, "query_rewriter", "train") / "model"), msl)
        elif variant == "student_onnx":
            model = StudentRewriter.from_onnx(stage_dir(cfg, "query_rewriter", "export") / "onnx", max_source_length=msl)
        else:
            raise RagdistillError(f"query_rewriter has no variant {variant!r}; use teacher, student_base, student or student_onnx")

        def gen(ex: Any) -> str:
            return model.generate([ex])[0]

    def rewrite(history: list[str], question: str) -> str:
        ex = rewrite_example(RewriteRecord("e2e", list(history), question), int(t.max_turns), int(t.max_answer_chars))
        return clean_output(gen(ex)) or question

    return rewrite
