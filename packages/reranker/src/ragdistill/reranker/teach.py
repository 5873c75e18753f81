"""reranker teach."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError


def teach(cfg: Any) -> Any:
    raise RagdistillError("ragdistill reranker teach is not implemented yet")
