"""Loading the stage's models: the student (torch or ONNX) and the artifacts of earlier verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model

STAGE = "embedder"


def load_sentence_transformer(model: str, max_length: int | None = None, backend: str = "torch",
                              file_name: str | None = None, export: bool = False) -> Any:
    """A ``SentenceTransformer`` on CPU; ``backend="onnx"`` loads ``file_name`` (default
    ``onnx/model.onnx``), or converts the torch weights when ``export``."""
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {}
    if backend == "onnx":
        where = {"export": True} if export else {"file_name": file_name or "onnx/model.onnx"}
        kwargs["model_kwargs"] = {**where, "provider": "CPUExecutionProvider"}
    st = SentenceTransformer(resolve_model(model), device="cpu", backend=backend, **kwargs)
    if max_length:
        st.max_seq_length = max_length
    return st


def embedding_dim(st: Any) -> int:
    dim = st.get_sentence_embedding_dimension()
    if not dim:
        raise RagdistillError(f"model {st!r} does not report an embedding dimension; it needs a Pooling module")
    return int(dim)


def trained_model_dir(cfg: Any) -> Path:
    """Where ``train`` keeps the best checkpoint (``<work_dir>/embedder/train/model``)."""
    return stage_dir(cfg, STAGE, "train") / "model"


def export_dir(cfg: Any) -> Path:
    """Where ``export`` writes the ONNX model (fp32 ``onnx/model.onnx`` + int8 beside it)."""
    return stage_dir(cfg, STAGE, "export") / "onnx_model"


def require_artifact(path: Path, verb: str, what: str) -> Path:
    if not path.exists():
        raise RagdistillError(f"{path}: {what} not found; run `ragdistill embedder {verb}` first (same paths.work_dir)")
    return path
