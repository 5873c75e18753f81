"""ragdistill.generator: Teacher answers over retrieved contexts -> filtered -> LoRA/QLoRA SFT, GKD; merged, vLLM-ready export."""

from ragdistill.generator.stage import GeneratorStage

stage = GeneratorStage()

__all__ = ["GeneratorStage", "stage"]
