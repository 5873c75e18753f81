"""ragdistill.reranker: Cross-encoder teacher scores -> margin-MSE / listwise-KL into a small cross-encoder and a ColBERT student; ONNX export."""

from ragdistill.common.stage import Stage
from ragdistill.reranker.calibrate import calibrate, routed
from ragdistill.reranker.component import component
from ragdistill.reranker.config import RerankerConfig
from ragdistill.reranker.evaluate import evaluate
from ragdistill.reranker.export import export
from ragdistill.reranker.lists import export_labels
from ragdistill.reranker.rounds import compare_rounds, next_round, teach
from ragdistill.reranker.teachers import build_teacher
from ragdistill.reranker.train import train

stage = Stage(
    name="reranker",
    description="Cross-encoder teacher scores -> margin-MSE / listwise-KL into a small cross-encoder and a ColBERT student; ONNX export",
    schema=RerankerConfig,
    teach=teach,
    train=train,
    export=export,
    evaluate=evaluate,
    extra={"calibrate": calibrate, "next-round": next_round, "compare-rounds": compare_rounds, "build-teacher": build_teacher,
           "export-labels": export_labels},
    order=30,
    component=component,
    routed=routed,
)

__all__ = ["stage"]
