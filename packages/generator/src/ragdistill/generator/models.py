"""Student and teacher checkpoints for this stage: the tokenizer check GKD needs.

Tokenizers come from :func:`ragdistill.common.models.load_tokenizer`, which aligns EOS with the
model's end-of-turn token (training with the wrong EOS teaches the student never to stop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.models import load_tokenizer

log = get_logger(__name__)


def describe_tokenizer(tok: Any, name: str) -> str:
    return f"{name} ({type(tok).__name__}, vocab {len(tok)})"


def check_same_tokenizer(teacher: str, student: str) -> None:
    """GKD compares the teacher's and the student's next-token distributions position by position,
    so both must share one vocabulary; raise a :class:`RagdistillError` naming both when they do not."""
    t, s = load_tokenizer(teacher), load_tokenizer(student)
    if t.get_vocab() != s.get_vocab():
        only_t = len(set(t.get_vocab()) - set(s.get_vocab()))
        raise RagdistillError(
            f"generator.train.method=gkd needs teacher and student to share a tokenizer, but the teacher "
            f"{describe_tokenizer(t, teacher)} and the student {describe_tokenizer(s, student)} differ "
            f"({only_t} teacher tokens are unknown to the student). Use generator.train.method=sft (sequence-level "
            f"distillation on the teacher's answers works across tokenizers), or pick a teacher from the student's "
            f"family (e.g. a larger SmolLM2 for a SmolLM2 student)."
        )


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()
