"""The contracts stages talk through in a RAG pipeline (the e2e harness composes these).

Each stage's ``Stage.component(cfg, variant)`` returns one of these callables, built from the
teacher, the undistilled student, the distilled student or its export. A team's own stage is any
callable with the same signature.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

VARIANTS = ("teacher", "student_base", "student", "student_onnx")


@runtime_checkable
class Rewriter(Protocol):
    """Conversation turns + follow-up question -> one standalone search query."""

    def __call__(self, history: list[str], question: str) -> str: ...


@runtime_checkable
class Encoder(Protocol):
    """Texts -> L2-normalised embeddings (queries and documents alike)."""

    def __call__(self, texts: list[str], is_query: bool) -> np.ndarray: ...


@runtime_checkable
class Reranker(Protocol):
    """(query, candidate texts) -> one relevance score per candidate (higher is better)."""

    def __call__(self, query: str, docs: list[str]) -> list[float]: ...


@runtime_checkable
class Generator(Protocol):
    """(question, context passages) -> an answer."""

    def __call__(self, question: str, contexts: list[str]) -> str: ...
