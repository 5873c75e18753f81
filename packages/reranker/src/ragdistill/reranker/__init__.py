"""ragdistill.reranker: Cross-encoder teacher scores -> margin-MSE / listwise-KL into a small cross-encoder and a ColBERT student; ONNX export."""

from ragdistill.reranker.stage import RerankerStage

stage = RerankerStage()

__all__ = ["RerankerStage", "stage"]
