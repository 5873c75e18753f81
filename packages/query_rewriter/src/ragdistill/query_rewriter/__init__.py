"""ragdistill.query_rewriter: Teacher rewrites/expansions -> seq2seq/decoder student; ONNX export; recall-lift evaluation."""

from ragdistill.common.stage import Stage
from ragdistill.query_rewriter.calibrate import calibrate, routed
from ragdistill.query_rewriter.component import component
from ragdistill.query_rewriter.config import QueryRewriterConfig
from ragdistill.query_rewriter.evaluate import evaluate
from ragdistill.query_rewriter.export import export
from ragdistill.query_rewriter.rounds import compare_rounds, next_round, teach
from ragdistill.query_rewriter.teach import export_labels
from ragdistill.query_rewriter.train import train

stage = Stage(
    name="query_rewriter",
    description="Teacher rewrites/expansions -> seq2seq/decoder student; ONNX export; recall-lift evaluation",
    schema=QueryRewriterConfig,
    teach=teach,
    train=train,
    export=export,
    evaluate=evaluate,
    extra={"calibrate": calibrate, "next-round": next_round, "compare-rounds": compare_rounds, "export_labels": export_labels},
    order=10,
    component=component,
    routed=routed,
)

__all__ = ["stage"]
