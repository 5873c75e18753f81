"""generator evaluate."""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError


def evaluate(cfg: Any) -> Any:
    raise RagdistillError("ragdistill generator evaluate is not implemented yet")
