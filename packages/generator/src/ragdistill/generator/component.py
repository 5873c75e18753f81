"""The generator as an e2e pipeline component: ``(question, contexts) -> answer`` for each variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.generator.prompts import build_messages
from ragdistill.generator.scoring import answer_of


def _artifact(path: Path, verb: str) -> Path:
    """The folder a verb writes, or an error naming that verb (a bare path error does not say how to make it)."""
    if not (path / "config.json").is_file():
        raise RagdistillError(f"{path}: no generator {verb} output; run `ragdistill generator {verb}` first (same paths.work_dir)")
    return path


def component(cfg: Any, variant: str) -> Any:
    """``teacher``, ``student_base``, ``student`` (merged, from train) or ``student_export`` / ``student_onnx``
    (the export directory; a generator has no ONNX export, so this is the vLLM-ready folder)."""
    from ragdistill.generator.evaluate import LocalGenerator
    from ragdistill.generator.teachers import LazyTeacher

    prompt, max_new = cfg.generator.prompt, int(cfg.generator.student_max_new_tokens)
    path: str | None = None
    if variant == "teacher":
        gen: Any = LazyTeacher(cfg.teacher)
        path = resolve_model(cfg.teacher.model) if cfg.teacher.backend == "causal_lm" else None
    elif variant == "student_base":
        gen, path = LocalGenerator(cfg.student.model, max_new), resolve_model(cfg.student.model)
    elif variant == "student":
        path = str(_artifact(stage_dir(cfg, "generator", "train") / "merged", "train"))
        gen = LocalGenerator(path, max_new)
    elif variant in ("student_export", "student_onnx"):
        path = str(_artifact(stage_dir(cfg, "generator", "export") / "model", "export"))
        gen = LocalGenerator(path, max_new)
    else:
        raise RagdistillError(f"generator component: unknown variant {variant!r}; choose teacher, student_base, student, student_export")

    def answer(question: str, contexts: list[str]) -> str:
        docs = [Document(f"c{i}", c) for i, c in enumerate(contexts)]
        return answer_of(gen.generate([build_messages(question, docs, prompt)])[0], prompt)[0]

    if path is not None:  # the harness reports its size on disk (a teacher may be remote: no path)
        answer.model_path = path  # type: ignore[attr-defined]
    return answer
