"""The query_rewriter stage's config schema: ``conf/query_rewriter.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class QueryRewriterSettings:
    """Stage-specific settings (the ``query_rewriter`` group, ``conf/query_rewriter/*.yaml``)."""


@dataclass
class QueryRewriterConfig(StageConfig):
    query_rewriter: QueryRewriterSettings = field(default_factory=QueryRewriterSettings)


register_schema("query_rewriter_schema", QueryRewriterConfig)
