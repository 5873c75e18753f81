"""ragdistill.embedder: Bi-encoder distillation: MSE on teacher embeddings, contrastive with teacher-mined hard negatives, Matryoshka; ONNX (+int8) export.

``ragdistill.embedder.retrieve`` holds a reusable first-stage retriever (encode corpus -> faiss
``IndexFlatIP`` -> top-k run) for the stages that need candidates.
"""

from ragdistill.common.stage import Stage
from ragdistill.embedder.component import component
from ragdistill.embedder.config import EmbedderConfig
from ragdistill.embedder.evaluate import evaluate
from ragdistill.embedder.export import export
from ragdistill.embedder.teach import teach
from ragdistill.embedder.train import train

stage = Stage(
    name="embedder",
    description="Bi-encoder distillation: MSE on teacher embeddings, contrastive with teacher-mined hard negatives, Matryoshka; ONNX (+int8) export",
    schema=EmbedderConfig,
    teach=teach,
    train=train,
    export=export,
    evaluate=evaluate,
    order=20,
    component=component,
)

__all__ = ["stage"]
