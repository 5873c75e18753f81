"""The embedder stage's config schema: ``conf/embedder.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class EmbedderSettings:
    """Stage-specific settings (the ``embedder`` group, ``conf/embedder/*.yaml``)."""


@dataclass
class EmbedderConfig(StageConfig):
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)


register_schema("embedder_schema", EmbedderConfig)
