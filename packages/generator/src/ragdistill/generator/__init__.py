"""ragdistill.generator: Teacher answers over retrieved contexts -> filtered -> LoRA/QLoRA SFT, GKD; merged, vLLM-ready export."""

from ragdistill.common.stage import Stage
from ragdistill.generator.calibrate import calibrate, routed
from ragdistill.generator.component import component
from ragdistill.generator.config import GeneratorConfig
from ragdistill.generator.evaluate import evaluate
from ragdistill.generator.export import export
from ragdistill.generator.rounds import compare_rounds, next_round, teach
from ragdistill.generator.train import train

stage = Stage(
    name="generator",
    description="Teacher answers over retrieved contexts -> filtered -> LoRA/QLoRA SFT, GKD; merged, vLLM-ready export",
    schema=GeneratorConfig,
    teach=teach,
    train=train,
    export=export,
    evaluate=evaluate,
    extra={"calibrate": calibrate, "next-round": next_round, "compare-rounds": compare_rounds},
    order=40,
    component=component,
    routed=routed,
)

__all__ = ["stage"]
