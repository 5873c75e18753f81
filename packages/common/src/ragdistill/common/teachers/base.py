"""One small teacher interface: what a stage's ``teach`` may ask of any backend.

A teacher has a stable ``teacher_id`` (used in cache keys: change the model or its settings and
no stale label is served) and one or more capabilities: ``embed`` texts, ``score`` (query, doc)
pairs, or ``generate`` replies to chat messages. Stages ask for the capability they need with
:func:`require`, so a misconfigured teacher fails at start, not after an hour of labelling.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragdistill.common.errors import RagdistillError

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}]


@runtime_checkable
class Teacher(Protocol):
    teacher_id: str


@runtime_checkable
class EmbeddingTeacher(Teacher, Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class ScoringTeacher(Teacher, Protocol):
    def score(self, pairs: list[tuple[str, str]]) -> list[float]: ...


@runtime_checkable
class GenerationTeacher(Teacher, Protocol):
    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]: ...


_VERB = {"EmbeddingTeacher": "embed", "ScoringTeacher": "score", "GenerationTeacher": "generate"}


def require(teacher: Teacher, capability: type, stage: str) -> Any:
    """Check a teacher offers what a stage needs, with a message naming both."""
    if not isinstance(teacher, capability):
        raise RagdistillError(
            f"{stage} needs a teacher that can {_VERB.get(capability.__name__, capability.__name__)}, "
            f"but {teacher.teacher_id!r} ({type(teacher).__name__}) cannot; pick another teacher= config"
        )
    return teacher
