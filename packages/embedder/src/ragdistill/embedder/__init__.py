"""ragdistill.embedder: Bi-encoder distillation: MSE on teacher embeddings, contrastive with teacher-mined hard negatives, Matryoshka; ONNX (+int8) export.

``ragdistill.embedder.retrieve`` holds a reusable first-stage retriever (encode corpus -> faiss
``IndexFlatIP`` -> top-k run) for the stages that need candidates.
"""

from ragdistill.embedder.stage import EmbedderStage

stage = EmbedderStage()

__all__ = ["EmbedderStage", "stage"]
