"""reranker export: the cross-encoder student as ONNX (fp32 + dynamic int8), the ColBERT student
with its document index; parity of the ONNX scores against torch is measured and enforced.

Layout under ``<work>/reranker/export``: ``cross_encoder/`` (a sentence-transformers CrossEncoder
folder with ``onnx/model.onnx`` and ``onnx/model_qint8_<arch>.onnx``; load it with
``CrossEncoder(path, backend="onnx", model_kwargs={"file_name": ...})``), ``colbert/`` (the
sentence-transformers ColBERT folder plus ``index_*`` files), ``export_summary.json`` and
``monitor_baseline.json`` (held-out student-vs-teacher divergence, what ``ragdistill monitor`` compares
live inputs with; ``monitor.baseline_inputs=0`` skips it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_jsonl, write_json
from ragdistill.common.logging import get_logger
from ragdistill.reranker.students import load_cross_encoder, predict_raw

log = get_logger(__name__)
ONNX_FP32 = "onnx/model.onnx"


def int8_file(arch: str) -> str:
    return f"onnx/model_qint8_{arch}.onnx"


def parity_pairs(cfg: Any, n: int) -> list[tuple[str, str]]:
    """Real (query, document) pairs from teach's lists: the inputs the student will see."""
    from ragdistill.reranker.lists import load_data

    f = stage_dir(cfg, "reranker", "teach") / "train.jsonl"
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


def export(cfg: Any) -> dict[str, Any]:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    ec = cfg.reranker.export
    train_dir, out = stage_dir(cfg, "reranker", "train"), stage_dir(cfg, "reranker", "export")
    src = train_dir / "student"
    if not (src / "config.json").is_file():
        raise RagdistillError(f"{src} not found; run `ragdistill reranker train` first (with the same paths.work_dir)")
    max_len = cfg.student.max_length
    pairs = parity_pairs(cfg, int(ec.parity_pairs))
    torch_scores = predict_raw(load_cross_encoder(str(src), max_len), pairs)
    summary: dict[str, Any] = {"pairs": len(pairs)}
    arch = str(ec.quantization)
    if arch not in ("arm64", "avx2", "avx512", "avx512_vnni"):
        raise RagdistillError(f"reranker.export.quantization={arch!r}: choose arm64, avx2, avx512 or avx512_vnni")
    with atomic_path(out / "cross_encoder") as tmp:
        shutil.copytree(src, tmp)
        onnx_model = load_cross_encoder(str(tmp), max_len, backend="onnx", model_kwargs={"export": True})
        onnx_model.save_pretrained(str(tmp))
        s_fp32 = predict_raw(onnx_model, pairs)
        summary["onnx_fp32"] = {"file": ONNX_FP32, "spearman": spearman(torch_scores, s_fp32)}
        if ec.quantize:
            qcfg = getattr(AutoQuantizationConfig, arch)(is_static=False, per_channel=True)
            export_dynamic_quantized_onnx_model(onnx_model, qcfg, str(tmp), file_suffix=f"qint8_{arch}")
            q_model = load_cross_encoder(str(tmp), max_len, backend="onnx", model_kwargs={"file_name": int8_file(arch)})
            summary["onnx_int8"] = {"file": int8_file(arch), "spearman": spearman(torch_scores, predict_raw(q_model, pairs)),
                                    "per_channel": True, "arch": arch}
        bad = {k: v["spearman"] for k, v in summary.items() if isinstance(v, dict) and v["spearman"] < float(ec.min_spearman)}
        if "onnx_fp32" in bad:
            raise RagdistillError(f"ONNX fp32 export disagrees with torch: Spearman {bad['onnx_fp32']:.4f} < "
                                  f"reranker.export.min_spearman={ec.min_spearman}; the export is not kept")
    for name, info in summary.items():
        if isinstance(info, dict):
            flag = "OK" if info["spearman"] >= float(ec.min_spearman) else f"BELOW {ec.min_spearman}"
            print(f"[reranker export] {name}: Spearman vs torch over {len(pairs)} pairs = {info['spearman']:.4f} ({flag}) "
                  f"-> {out / 'cross_encoder' / info['file']}", flush=True)
    if cfg.reranker.colbert.enabled and (train_dir / "colbert").is_dir():
        summary["colbert"] = export_colbert(cfg, train_dir / "colbert", out / "colbert")
    summary["sizes_mb"] = {p.name: p.stat().st_size / 2**20 for p in (out / "cross_encoder" / "onnx").glob("*.onnx")}
    summary["monitor_baseline"] = write_monitor_baseline(cfg)
    write_json(out / "export_summary.json", summary)
    return summary


def write_monitor_baseline(cfg: Any) -> dict[str, Any] | None:
    """The held-out student-vs-teacher divergence ``ragdistill monitor reranker`` compares live inputs with."""
    from ragdistill.common.ops.monitor import default_baseline_path
    from ragdistill.reranker.calibrate import monitor_baseline

    base = monitor_baseline(cfg)
    if base is not None:
        print(f"[reranker export] monitor baseline: student-teacher divergence {base['divergence']:.4f} on {base['metrics']['n']} "
              f"held-out lists -> {default_baseline_path(cfg, 'reranker')}", flush=True)
    return base


def colbert_index_docs(cfg: Any) -> dict[str, str]:
    """The documents the ColBERT index must cover: every candidate evaluate will rerank
    (``reranker.colbert.index_scope=candidates``) or the whole corpus (``corpus``)."""
    from ragdistill.reranker.candidates import first_stage
    from ragdistill.reranker.lists import load_data

    data = load_data(cfg)
    if cfg.reranker.colbert.index_scope == "corpus":
        return {d: doc.full_text for d, doc in data.corpus.items()}
    if cfg.reranker.colbert.index_scope != "candidates":
        raise RagdistillError(f"reranker.colbert.index_scope={cfg.reranker.colbert.index_scope!r}: choose candidates or corpus")
    ev = cfg.reranker.eval
    k = max(int(cfg.reranker.candidates.eval_k), int(ev.latency_candidates))
    cands = first_stage(data, cfg.data.test_split, k, cfg.reranker.candidates.file)
    ids = dict.fromkeys(d for c in cands.values() for d in c.doc_ids)
    return {d: data.corpus[d].full_text for d in ids}


def export_colbert(cfg: Any, src: Path, dest: Path) -> dict[str, Any]:
    from ragdistill.reranker.colbert import ColbertIndex, ColbertStudent

    student = ColbertStudent.load(src)
    docs = colbert_index_docs(cfg)
    index = ColbertIndex.build(student, docs, batch_size=int(cfg.reranker.eval.batch_size))
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        index.save(tmp)
    info = {"docs": len(docs), "vectors": int(index.vectors.shape[0]), "dim": int(index.vectors.shape[1]), "index_mb": index.size_mb,
            "scope": cfg.reranker.colbert.index_scope}
    print(f"[reranker export] ColBERT: {len(docs)} documents, {info['vectors']} token vectors x {info['dim']} (fp16), "
          f"index {index.size_mb:.1f} MB -> {dest}", flush=True)
    return info
