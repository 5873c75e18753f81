"""The contracts stages talk through in a RAG pipeline (the e2e harness composes these).

Each stage's ``Stage.component(cfg, variant)`` returns one of these callables, built from the
teacher, the undistilled student, the distilled student or its export. A team's own stage is any
callable with the same signature.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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


class Passage(str):
    """A context passage as the generator contract passes it: the document's text (a plain ``str``
    to any callable), carrying its document's title. Generators trained on titled passages (the
    generator stage renders ``[n] {title}: {text}``) read ``.title``, so a pipeline's prompts are
    the prompts the student was trained and evaluated on."""

    title: str

    def __new__(cls, text: str, title: str = "") -> Passage:
        obj = super().__new__(cls, text)
        obj.title = title
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray, multiprocessing) with its title
        return (Passage, (str(self), self.title))


@runtime_checkable
class Generator(Protocol):
    """(question, context passages) -> an answer; passages are strings (:class:`Passage` where the
    harness knows the document's title)."""

    def __call__(self, question: str, contexts: list[str]) -> str: ...
