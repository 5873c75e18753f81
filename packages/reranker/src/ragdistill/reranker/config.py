"""The reranker stage's config schema: ``conf/reranker.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class RerankerSettings:
    """Stage-specific settings (the ``reranker`` group, ``conf/reranker/*.yaml``)."""


@dataclass
class RerankerConfig(StageConfig):
    reranker: RerankerSettings = field(default_factory=RerankerSettings)


register_schema("reranker_schema", RerankerConfig)
