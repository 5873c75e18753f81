"""query_rewriter train."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError


def train(cfg: Any) -> Any:
    raise RagdistillError("ragdistill query_rewriter train is not implemented yet")
