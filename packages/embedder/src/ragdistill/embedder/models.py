"""Loading the stage's models: the student (torch or ONNX) and the artifacts of earlier verbs.

The distilled student is ``paths.student_dir`` (``<work_dir>/embedder/train/student``), the ONNX
export ``paths.export_dir`` (``<work_dir>/embedder/export/model``: fp32 ``onnx/model.onnx`` and the
int8 ``onnx/model_qint8.onnx`` beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.paths import export_dir, student_dir

STAGE = "embedder"
FP32_FILE = "onnx/model.onnx"  # in the export folder
INT8_FILE = "onnx/model_qint8.onnx"


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
    get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension  # renamed in sentence-transformers 5.x
    dim = get()
    if not dim:
        raise RagdistillError(f"model {st!r} does not report an embedding dimension; it needs a Pooling module")
    return int(dim)


def trained_student(cfg: Any) -> Path:
    """The student ``train`` kept, or an error naming the verb that makes it."""
    return require_artifact(student_dir(cfg, STAGE), "train", "trained student")


def exported_model(cfg: Any) -> Path:
    """The ONNX export folder, or an error naming the verb that makes it."""
    return require_artifact(export_dir(cfg, STAGE), "export", "ONNX export")


def require_artifact(path: Path, verb: str, what: str) -> Path:
    if not path.exists():
        raise RagdistillError(f"{path}: {what} not found; run `ragdistill embedder {verb}` first (same paths.work_dir)")
    return path
