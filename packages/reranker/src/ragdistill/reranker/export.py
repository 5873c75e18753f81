"""reranker export: the cross-encoder student as ONNX (fp32 + dynamic int8), the ColBERT student
with its document index; parity of the ONNX scores against torch is measured and gated.

Layout under ``<work>/reranker/export``: ``model/`` (``paths.export_dir``: a sentence-transformers
CrossEncoder folder with ``onnx/model.onnx`` and ``onnx/model_qint8_<arch>.onnx``; load it with
``CrossEncoder(path, backend="onnx", model_kwargs={"file_name": ...})``) and ``colbert/`` (the
sentence-transformers ColBERT folder plus ``index_*`` files). Parity is the Spearman correlation of
the ONNX and torch scores on real (query, candidate) pairs; fp32 is held to
``reranker.export.min_parity``, int8 to ``min_parity_quantized`` (the one export gate of every stage).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import export_dir, stage_dir, student_dir
from ragdistill.common.results import ExportResult, Variant
from ragdistill.reranker.students import ONNX_FP32, int8_file, load_cross_encoder, predict_raw

log = get_logger(__name__)
METRIC = "spearman"


def parity_pairs(cfg: Any, n: int) -> list[tuple[str, str]]:
    """Real (query, document) pairs from teach's lists: the inputs the student will see."""
    from ragdistill.reranker.lists import load_data, train_lists_file

    f = train_lists_file(cfg)
    if not f.is_file():
        raise RagdistillError(f"{f} not found; run `ragdistill reranker teach` first")
    data = load_data(cfg)
    pairs = []
    for r in read_jsonl(f):
        pairs += [(r["query"], data.corpus[d].full_text) for d in r["doc_ids"] if d in data.corpus]
        if len(pairs) >= n:
            break
    return pairs[:n]


def spearman(a: list[float], b: list[float]) -> float:
    return float(spearmanr(a, b).statistic)


def export(cfg: Any) -> ExportResult:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    ec = cfg.reranker.export
    src, dest = student_dir(cfg, "reranker"), export_dir(cfg, "reranker")
    if not (src / "config.json").is_file():
        raise RagdistillError(f"{src} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
    max_len = cfg.student.max_length
    pairs = parity_pairs(cfg, int(ec.parity_pairs))
    torch_scores = predict_raw(load_cross_encoder(str(src), max_len), pairs)
    arch = ec.quantization.value
    result = ExportResult("reranker", n_items=len(pairs), model=str(dest), details={"pairs": len(pairs)})
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        onnx_model = load_cross_encoder(str(tmp), max_len, backend="onnx", model_kwargs={"export": True})
        onnx_model.save_pretrained(str(tmp))
        files = {"onnx_fp32": (ONNX_FP32, spearman(torch_scores, predict_raw(onnx_model, pairs)), False)}
        if ec.quantize:
            qcfg = getattr(AutoQuantizationConfig, arch)(is_static=False, per_channel=True)
            export_dynamic_quantized_onnx_model(onnx_model, qcfg, str(tmp), file_suffix=f"qint8_{arch}")
            q_model = load_cross_encoder(str(tmp), max_len, backend="onnx", model_kwargs={"file_name": int8_file(arch)})
            files["onnx_int8"] = (int8_file(arch), spearman(torch_scores, predict_raw(q_model, pairs)), True)
            result.details["onnx_int8"] = {"per_channel": True, "arch": arch}
    for name, (f, parity, quantized) in files.items():
        result.variants[name] = Variant(str(dest / f), parity, METRIC, quantized, (dest / f).stat().st_size / 2**20)
        bar = float(ec.min_parity_quantized if quantized else ec.min_parity)
        flag = "OK" if parity >= bar else f"BELOW {bar}"
        print(f"[reranker export] {name}: Spearman vs torch over {len(pairs)} pairs = {parity:.4f} ({flag}) -> {dest / f}", flush=True)
    result.details["sizes_mb"] = {p.name: p.stat().st_size / 2**20 for p in (dest / "onnx").glob("*.onnx")}
    result.gate(float(ec.min_parity), float(ec.min_parity_quantized))
    train_dir = stage_dir(cfg, "reranker", "train")
    if cfg.reranker.train.colbert.enabled and (train_dir / "colbert").is_dir():
        result.details["colbert"] = export_colbert(cfg, train_dir / "colbert", stage_dir(cfg, "reranker", "export") / "colbert")
    return result


def colbert_index_docs(cfg: Any) -> dict[str, str]:
    """The documents the ColBERT index must cover: every candidate evaluate will rerank
    (``reranker.export.colbert_index_scope=candidates``) or the whole corpus (``corpus``)."""
    from ragdistill.reranker.candidates import first_stage
    from ragdistill.reranker.config import IndexScope
    from ragdistill.reranker.lists import load_data

    data = load_data(cfg)
    if cfg.reranker.export.colbert_index_scope == IndexScope.corpus:
        return {d: doc.full_text for d, doc in data.corpus.items()}
    ev = cfg.reranker.evaluate
    k = max(int(cfg.reranker.candidates.eval_k), int(ev.latency_candidates))
    cands = first_stage(data, cfg.data.test_split, k, cfg.reranker.candidates.file)
    ids = dict.fromkeys(d for c in cands.values() for d in c.doc_ids)
    return {d: data.corpus[d].full_text for d in ids}


def export_colbert(cfg: Any, src: Path, dest: Path) -> dict[str, Any]:
    from ragdistill.reranker.colbert import ColbertIndex, ColbertStudent

    student = ColbertStudent.load(src)
    docs = colbert_index_docs(cfg)
    index = ColbertIndex.build(student, docs, batch_size=int(cfg.reranker.evaluate.batch_size))
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        index.save(tmp)
    info = {"docs": len(docs), "vectors": int(index.vectors.shape[0]), "dim": int(index.vectors.shape[1]), "index_mb": index.size_mb,
            "scope": cfg.reranker.export.colbert_index_scope.value}
    print(f"[reranker export] ColBERT: {len(docs)} documents, {info['vectors']} token vectors x {info['dim']} (fp16), "
          f"index {index.size_mb:.1f} MB -> {dest}", flush=True)
    return info
