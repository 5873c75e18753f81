"""Student cross-encoders: built from a packaged encoder (fresh 1-logit head) or any CrossEncoder,
and where their ONNX exports sit inside an export folder.

Students are trained on raw logits, so they are built and saved with ``activation_fn=Identity``:
``CrossEncoder(path).predict`` then returns the trained scores (the library's default for one
label is a sigmoid, which saturates large logits into ties and changes the ranking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model

ONNX_FP32 = "onnx/model.onnx"  # inside the export folder (a sentence-transformers CrossEncoder folder)
ONNX_INT8 = "onnx/model_qint8.onnx"  # dynamic int8; the quantization preset used is recorded in export.json
INT8_SUFFIX = "qint8"  # ``file_suffix`` of sentence-transformers' export_dynamic_quantized_onnx_model


def int8_file(folder: str | Path) -> str | None:
    """The int8 ONNX file inside an export folder, relative to it: ``onnx/model_qint8.onnx``, or an
    older export's ``onnx/model_qint8_<preset>.onnx`` (named for the CPU preset); None if neither."""
    folder = Path(folder)
    if (folder / ONNX_INT8).is_file():
        return ONNX_INT8
    older = sorted((folder / "onnx").glob("model_qint8_*.onnx"))
    return str(older[0].relative_to(folder)) if older else None


def new_cross_encoder(model: str, max_length: int | None, layers: int | None = None, seed: int = 42) -> Any:
    """A ``CrossEncoder`` on ``model``'s weights. An encoder without a ranking head (the packaged
    all-MiniLM-L6-v2) gets a freshly initialised one (seeded: the undistilled baseline is
    reproducible); ``layers`` keeps only the first N transformer layers, a cheaper student."""
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(resolve_model(model), num_labels=1, max_length=max_length, activation_fn=torch.nn.Identity())
    if layers:
        truncate_layers(ce, int(layers))
    return ce


def has_ranking_head(model: str) -> bool:
    """Whether ``model`` already is a cross-encoder (a trained sequence-classification head), as a
    student of a previous round is; a bi-encoder checkpoint gets a fresh head."""
    import json

    cfg = Path(resolve_model(model)) / "config.json"
    archs = json.loads(cfg.read_text()).get("architectures") or [] if cfg.is_file() else []
    return any(a.endswith("ForSequenceClassification") for a in archs)


@torch.no_grad()
def standardize_pooler(ce: Any, pairs: list[tuple[str, str]], batch_size: int = 16) -> dict[str, float]:
    """Set the pooler to ``tanh((h_cls - mean) / std)``, the [CLS] features standardised over ``pairs``.

    Why: a bi-encoder trained with mean pooling (all-MiniLM-L6-v2) leaves its [CLS] vector nearly
    constant: over different (query, passage) pairs it moves by ~1% of its size (measured: mean
    absolute difference 0.0008 vs magnitude 0.059). The sequence-classification head reads only
    the pooled [CLS], so a fresh head sees a constant and the student stalls for the first ~70
    steps (loss at log(list size)). Standardised, the same features span tanh's linear range: the
    head sees the inputs from the first step and its gradients reach the encoder unsaturated
    (measured: held-out top-1 of 8 after 40 steps 0.25 -> 0.425). Same architecture, so ONNX export
    is unchanged."""
    bert = ce.model.base_model
    if getattr(bert, "pooler", None) is None:
        return {}
    was_training = ce.model.training
    ce.model.eval()
    cls = []
    for i in range(0, len(pairs), batch_size):
        feats = ce.preprocess([list(p) for p in pairs[i : i + batch_size]])
        kw = {k: feats[k].to(ce.device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats}
        cls.append(bert(**kw).last_hidden_state[:, 0])
    h = torch.cat(cls)
    mu, sd = h.mean(0), h.std(0).clamp_min(1e-6)
    dense = bert.pooler.dense
    dense.weight.copy_(torch.diag(1.0 / sd).to(dense.weight.dtype))
    dense.bias.copy_((-mu / sd).to(dense.bias.dtype))
    ce.model.train(was_training)
    return {"pairs": len(pairs), "cls_std_mean": float(sd.mean()), "cls_abs_mean": float(h.abs().mean())}


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
    """A saved cross-encoder; ``max_length=None`` serves it at the length it was trained and saved with
    (its tokenizer's ``model_max_length``), so a change of ``student.max_length`` does not silently
    re-window a student trained at another length."""
    from sentence_transformers.cross_encoder import CrossEncoder

    return CrossEncoder(path, max_length=max_length, **kw)


def predict_raw(ce: Any, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
    """Raw logits (no sigmoid), the scale the distillation losses train."""
    import numpy as np

    if not pairs:
        return []
    s = ce.predict([list(p) for p in pairs], batch_size=batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False)
    return [float(x) for x in np.asarray(s).reshape(-1)]
