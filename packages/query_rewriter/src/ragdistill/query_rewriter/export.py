"""query_rewriter export."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError


def export(cfg: Any) -> Any:
    raise RagdistillError("ragdistill query_rewriter export is not implemented yet")
