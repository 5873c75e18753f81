"""The generator as an e2e pipeline component: ``(question, contexts) -> answer`` for each variant."""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.generator.prompts import build_messages
from ragdistill.generator.scoring import answer_of


def component(cfg: Any, variant: str) -> Any:
    """``teacher``, ``student_base``, ``student`` (merged, from train) or ``student_export`` / ``student_onnx``
    (the export directory; a generator has no ONNX export, so this is the vLLM-ready folder)."""
    from ragdistill.generator.evaluate import LocalGenerator
    from ragdistill.generator.teachers import LazyTeacher

    prompt, max_new = cfg.generator.prompt, int(cfg.generator.student_max_new_tokens)
    if variant == "teacher":
        gen: Any = LazyTeacher(cfg.teacher)
    elif variant == "student_base":
        gen = LocalGenerator(cfg.student.model, max_new)
    elif variant == "student":
        gen = LocalGenerator(str(stage_dir(cfg, "generator", "train") / "merged"), max_new)
    elif variant in ("student_export", "student_onnx"):
        gen = LocalGenerator(str(stage_dir(cfg, "generator", "export") / "model"), max_new)
    else:
        raise RagdistillError(f"generator component: unknown variant {variant!r}; choose teacher, student_base, student, student_export")

    def answer(question: str, contexts: list[str]) -> str:
        docs = [Document(f"c{i}", c) for i, c in enumerate(contexts)]
        return answer_of(gen.generate([build_messages(question, docs, prompt)])[0], prompt)[0]

    return answer
