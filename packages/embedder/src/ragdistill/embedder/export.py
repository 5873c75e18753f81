"""embedder export: the distilled student as ONNX (fp32) plus dynamic int8, with a parity check.

Uses sentence-transformers' ONNX backend (optimum underneath) and
``export_dynamic_quantized_onnx_model`` with a per-channel int8 config (per-tensor int8 drops
cosine to torch to 0.89-0.97 on this model; per channel keeps it >= 0.99). The folder
``<work_dir>/embedder/export/model`` loads as::

    SentenceTransformer(path, backend="onnx")                                               # fp32
    SentenceTransformer(path, backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})  # int8

Parity (mean cosine of torch vs ONNX embeddings of held-out test queries and documents) is measured
per variant and gated by the one export rule: fp32 reaches ``embedder.export.min_parity``, int8
``embedder.export.min_parity_quantized`` (both 0.99), else the export fails naming the variant.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import export_dir
from ragdistill.common.results import ExportResult, Variant
from ragdistill.embedder.data import held_out_texts, load_data
from ragdistill.embedder.models import FP32_FILE, INT8_FILE, STAGE, load_sentence_transformer, trained_student

log = get_logger(__name__)

VARIANTS = (("student_onnx", FP32_FILE, False), ("student_onnx_int8", INT8_FILE, True))  # name, file, quantized


def quantization_config(preset: str, per_channel: bool) -> Any:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    return getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)


def parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two embedding matrices: mean and min."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def export(cfg: Any) -> ExportResult:
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    s = cfg.embedder.export
    src = trained_student(cfg)
    preset = s.quantization.name
    qconfig = quantization_config(preset, s.per_channel)
    dest = export_dir(cfg, STAGE)
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        onnx = load_sentence_transformer(str(tmp), backend="onnx", export=True)  # optimum converts the torch weights
        onnx.save_pretrained(str(tmp))
        export_dynamic_quantized_onnx_model(onnx, qconfig, str(tmp), file_suffix="qint8")
        for f in (FP32_FILE, INT8_FILE):
            if not (tmp / f).exists():
                raise RagdistillError(f"ONNX export did not write {tmp / f}; check the optimum/onnxruntime install")
        # the torch weights are not needed to serve the ONNX model
        for f in tmp.glob("model.safetensors"):
            f.unlink()

    texts = held_out_texts(load_data(cfg), cfg.data.test_split, s.parity_texts)
    ml = cfg.student.max_length
    ref = _encode(load_sentence_transformer(str(src), max_length=ml), texts)
    result = ExportResult(STAGE, n_items=len(texts), model=str(dest))
    cosines: dict[str, dict[str, float]] = {}
    for name, file, quantized in VARIANTS:
        model = load_sentence_transformer(str(dest), max_length=ml, backend="onnx", file_name=file)
        cosines[name] = parity(ref, _encode(model, texts))
        result.variants[name] = Variant(str(dest / file), cosines[name]["mean_cosine"], "mean cosine to torch", quantized,
                                        round((dest / file).stat().st_size / 2**20, 2))
        log.info("parity %s vs torch on %d held-out texts: mean cosine %.4f (min %.4f), %.1f MB",
                 name, len(texts), cosines[name]["mean_cosine"], cosines[name]["min_cosine"], result.variants[name].size_mb)
    result.details = {"parity": cosines, "n_texts": len(texts), "quantization": {"preset": preset, "per_channel": bool(s.per_channel)},
                      "student_torch_mb": round(_size_mb(src / "model.safetensors"), 2)}
    try:
        result.gate(float(s.min_parity), float(s.min_parity_quantized))
    except RagdistillError as e:
        raise RagdistillError(f"{e}. For int8 keep embedder.export.per_channel=true or pick the embedder.export.quantization "
                              "preset of this CPU") from None
    return result


def _encode(model: Any, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else float("nan")
