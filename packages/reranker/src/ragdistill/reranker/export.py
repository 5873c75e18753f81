"""reranker export: the cross-encoder student as ONNX (fp32 + dynamic int8), the ColBERT student
with its document index; parity of the ONNX scores against torch is measured and gated.

Layout under ``<work>/reranker/export``: ``model/`` (``paths.export_dir``: a sentence-transformers
CrossEncoder folder with ``onnx/model.onnx`` and ``onnx/model_qint8.onnx``, saved with
``activation_fn=Identity`` so ``predict`` returns the trained scores; load it with
``CrossEncoder(path, backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})``; the
int8 file is named for what it is, the optimum quantization preset it was made with is in
``export.json``) and ``colbert/`` (the
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
from ragdistill.reranker.candidates import first_stage
from ragdistill.reranker.students import INT8_SUFFIX, ONNX_FP32, ONNX_INT8, load_cross_encoder, predict_raw

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
    pairs = parity_pairs(cfg, int(ec.parity_pairs))
    torch_scores = predict_raw(load_cross_encoder(str(src)), pairs)
    preset = ec.quantization.value
    result = ExportResult("reranker", n_items=len(pairs), model=str(dest), details={"pairs": len(pairs)})
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        onnx_model = load_cross_encoder(str(tmp), backend="onnx", model_kwargs={"export": True})
        onnx_model.save_pretrained(str(tmp))
        files = {"onnx_fp32": (ONNX_FP32, spearman(torch_scores, predict_raw(onnx_model, pairs)), False)}
        if ec.quantize:
            qcfg = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=True)
            export_dynamic_quantized_onnx_model(onnx_model, qcfg, str(tmp), file_suffix=INT8_SUFFIX)
            q_model = load_cross_encoder(str(tmp), backend="onnx", model_kwargs={"file_name": ONNX_INT8})
            files["onnx_int8"] = (ONNX_INT8, spearman(torch_scores, predict_raw(q_model, pairs)), True)
            result.details["onnx_int8"] = {"file": ONNX_INT8, "quantization_preset": preset, "per_channel": True, "dynamic": True}
    for name, (f, parity, quantized) in files.items():
        result.variants[name] = Variant(str(dest / f), parity, METRIC, quantized, (dest / f).stat().st_size / 2**20)
        bar = float(ec.min_parity_quantized if quantized else ec.min_parity)
        flag = "OK" if parity >= bar else f"BELOW {bar}"
        log.info(f"{name}: Spearman vs torch over {len(pairs)} pairs = {parity:.4f} ({flag}) -> {dest / f}")
    result.details["sizes_mb"] = {p.name: p.stat().st_size / 2**20 for p in (dest / "onnx").glob("*.onnx")}
    result.gate(float(ec.min_parity), float(ec.min_parity_quantized))
    train_dir = stage_dir(cfg, "reranker", "train")
    if cfg.reranker.train.colbert.enabled and (train_dir / "colbert").is_dir():
        result.details["colbert"] = export_colbert(cfg, train_dir / "colbert", stage_dir(cfg, "reranker", "export") / "colbert")
    return result


def colbert_index_docs(cfg: Any) -> dict[str, str]:
    """The documents the ColBERT index must cover: the whole corpus (``reranker.export.colbert_index_scope=corpus``,
    so the index can be a first stage) or every candidate evaluate will rerank (``candidates``)."""
    from ragdistill.reranker.candidates import candidate_sources
    from ragdistill.reranker.config import IndexScope
    from ragdistill.reranker.lists import load_data

    data = load_data(cfg)
    if cfg.reranker.export.colbert_index_scope == IndexScope.corpus:
        return {d: doc.full_text for d, doc in data.corpus.items()}
    split = cfg.data.test_split
    ids = dict.fromkeys(d for cands, _, _ in candidate_sources(cfg, data, split).values() for c in cands.values() for d in c.doc_ids)
    if int(cfg.reranker.evaluate.latency_queries) > 0:
        lat = first_stage(data, split, int(cfg.reranker.evaluate.latency_candidates), cfg.reranker.candidates.file)
        ids.update(dict.fromkeys(d for c in lat.values() for d in c.doc_ids))
    return {d: data.corpus[d].full_text for d in ids}


def export_colbert(cfg: Any, src: Path, dest: Path) -> dict[str, Any]:
    """The trained ColBERT checkpoint plus its colbert-ai PLAID index (``<dest>/index``), built on CPU."""
    from ragdistill.reranker.colbert import INDEX_DIR, ColbertStudent, PlaidIndex

    docs = colbert_index_docs(cfg)
    ec = cfg.reranker.export
    with atomic_path(dest) as tmp:
        student = ColbertStudent.load(src)
        student.save(tmp, final_path=dest)
        index = PlaidIndex.build(tmp, docs, tmp / INDEX_DIR, nbits=int(ec.colbert_nbits), batch_size=int(cfg.reranker.evaluate.batch_size))
        size = index.size_mb
        info = {"docs": len(docs), "scope": ec.colbert_index_scope.value, "nbits": int(ec.colbert_nbits), "index_mb": size,
                "dim": student.dim, "library": "colbert-ai PLAID"}
        card = (src / "README.md").read_text(encoding="utf-8") if (src / "README.md").is_file() else ""
        (tmp / "README.md").write_text(card + f"\n## The index in `{INDEX_DIR}/`\n\nA colbert-ai PLAID index of {len(docs)} documents of "
                                       f"{cfg.data.path or cfg.data.name} ({info['scope']}), {ec.colbert_nbits}-bit residuals, "
                                       f"{size:.1f} MB.\n", encoding="utf-8")
    log.info(f"ColBERT: colbert-ai PLAID index of {len(docs)} documents ({info['scope']}), {student.dim}-d, "
          f"{ec.colbert_nbits}-bit residuals, {size:.1f} MB -> {dest / INDEX_DIR}")
    return info
