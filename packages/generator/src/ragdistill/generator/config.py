"""The generator stage's config schema: ``conf/generator.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class GeneratorSettings:
    """Stage-specific settings (the ``generator`` group, ``conf/generator/*.yaml``)."""


@dataclass
class GeneratorConfig(StageConfig):
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)


register_schema("generator_schema", GeneratorConfig)
