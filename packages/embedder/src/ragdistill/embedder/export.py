"""embedder export: the distilled student as ONNX (fp32) plus dynamic int8, with a parity check.

Uses sentence-transformers' ONNX backend (optimum underneath) and
``export_dynamic_quantized_onnx_model`` with a per-channel int8 config (per-tensor int8 drops
cosine to torch to 0.89-0.97 on this model; per channel keeps it >= 0.99). The folder
``<work_dir>/embedder/export/onnx_model`` loads as::

    SentenceTransformer(path, backend="onnx")                                               # fp32
    SentenceTransformer(path, backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})  # int8

Parity (cosine of torch vs ONNX embeddings of held-out test queries and documents) is measured
here, written to ``export.json`` and must reach ``embedder.parity_threshold``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, write_json
from ragdistill.common.logging import get_logger
from ragdistill.embedder.config import QUANTIZATIONS
from ragdistill.embedder.models import STAGE, export_dir, load_sentence_transformer, require_artifact, trained_model_dir
from ragdistill.embedder.teach import load_data

log = get_logger(__name__)

FP32_FILE = "onnx/model.onnx"
INT8_FILE = "onnx/model_qint8.onnx"


def quantization_config(preset: str, per_channel: bool) -> Any:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if preset not in QUANTIZATIONS:
        raise RagdistillError(f"embedder.quantization={preset!r}: choose one of {', '.join(QUANTIZATIONS)}")
    return getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)


def parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two embedding matrices: mean and min."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def heldout_texts(cfg: Any, n: int) -> list[str]:
    """Test-split queries and their documents: texts training never saw."""
    data = load_data(cfg)
    queries, qrels = data.split(cfg.data.test_split)
    qids = sorted(queries)
    docs = list(dict.fromkeys(d for q in qids for d in qrels[q]))
    texts = [queries[q] for q in qids[: n // 2]] + [data.corpus[d].full_text for d in docs[: n - min(n // 2, len(qids))]]
    return texts[:n]


def export(cfg: Any) -> dict[str, Any]:
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    s = cfg.embedder
    src = require_artifact(trained_model_dir(cfg), "train", "trained student")
    qconfig = quantization_config(s.quantization, s.per_channel)
    dest = export_dir(cfg)
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

    texts = heldout_texts(cfg, s.parity_texts)
    ml = cfg.student.max_length
    ref = _encode(load_sentence_transformer(str(src), max_length=ml), texts)
    report: dict[str, Any] = {"dir": str(dest), "files": {}, "parity": {}, "threshold": s.parity_threshold,
                              "quantization": {"preset": s.quantization, "per_channel": bool(s.per_channel)}, "n_texts": len(texts)}
    for name, file in (("student_onnx", FP32_FILE), ("student_onnx_int8", INT8_FILE)):
        model = load_sentence_transformer(str(dest), max_length=ml, backend="onnx", file_name=file)
        report["parity"][name] = parity(ref, _encode(model, texts))
        report["files"][name] = {"file": file, "size_mb": round((dest / file).stat().st_size / 2**20, 2)}
    report["files"]["student_torch"] = {"file": "model.safetensors", "size_mb": round(_size_mb(src / "model.safetensors"), 2)}
    failed = {k: v["mean_cosine"] for k, v in report["parity"].items() if v["mean_cosine"] < s.parity_threshold}
    report["passed"] = not failed
    write_json(stage_dir(cfg, STAGE, "export") / "export.json", report)
    for k, v in report["parity"].items():
        log.info("parity %s vs torch on %d held-out texts: mean cosine %.4f (min %.4f), %.1f MB",
                 k, len(texts), v["mean_cosine"], v["min_cosine"], report["files"][k]["size_mb"])
    if failed:
        raise RagdistillError(
            f"ONNX parity below embedder.parity_threshold={s.parity_threshold}: {failed} (see {stage_dir(cfg, STAGE, 'export') / 'export.json'}); "
            "for int8 keep embedder.per_channel=true or pick the embedder.quantization preset of this CPU"
        )
    return report


def _encode(model: Any, texts: list[str]) -> np.ndarray:
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else float("nan")
