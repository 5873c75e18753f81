"""Student cross-encoders: built from a packaged encoder (fresh 1-logit head) or any CrossEncoder,
and where their ONNX exports sit inside an export folder."""

from __future__ import annotations

from typing import Any

import torch

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model

ONNX_FP32 = "onnx/model.onnx"  # inside the export folder (a sentence-transformers CrossEncoder folder)


def int8_file(arch: str) -> str:
    """The dynamic int8 export for one instruction set (``reranker.export.quantization``)."""
    return f"onnx/model_qint8_{arch}.onnx"


def new_cross_encoder(model: str, max_length: int | None, layers: int | None = None, seed: int = 42) -> Any:
    """A ``CrossEncoder`` on ``model``'s weights. An encoder without a ranking head (the packaged
    all-MiniLM-L6-v2) gets a freshly initialised one (seeded: the undistilled baseline is
    reproducible); ``layers`` keeps only the first N transformer layers, a cheaper student."""
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(resolve_model(model), num_labels=1, max_length=max_length)
    if layers:
        truncate_layers(ce, int(layers))
    return ce


def truncate_layers(ce: Any, n: int) -> None:
    """Keep the first ``n`` layers of the encoder (the lower layers carry most of what a
    small reranker can use; each dropped layer saves 1/L of the latency)."""
    base = ce.model.base_model
    total = len(base.encoder.layer)
    if not 0 < n <= total:
        raise RagdistillError(f"reranker.train.student_layers={n}: the student has {total} layers; choose 1..{total}")
    base.encoder.layer = base.encoder.layer[:n]
    ce.model.config.num_hidden_layers = n


def load_cross_encoder(path: str, max_length: int | None = None, **kw: Any) -> Any:
    from sentence_transformers.cross_encoder import CrossEncoder

    return CrossEncoder(path, max_length=max_length, **kw)


def predict_raw(ce: Any, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
    """Raw logits (no sigmoid), the scale the distillation losses train."""
    import numpy as np

    if not pairs:
        return []
    s = ce.predict([list(p) for p in pairs], batch_size=batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    return [float(x) for x in np.asarray(s).reshape(-1)]
