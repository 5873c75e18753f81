#!/usr/bin/env python
"""Reranker benchmark: student vs teacher, quality and speed measured side by side in one run.

    python bench/reranker.py [hydra overrides ...]          # full: runs `ragdistill reranker evaluate`
    python bench/reranker.py --speed-only [overrides ...]   # speed only, no trained artifacts needed

Targets (issue 4, 2 CPU cores): student cross-encoder ONNX int8 >= 15x the teacher's pairs/s at
>= 97% of the teacher's NDCG@10; ColBERT's quality and speed are reported beside them.
``--speed-only`` times the teacher's and the student's *architectures* (mpnet vs MiniLM
cross-encoders, torch vs ONNX int8) on 100 real candidates per query; speed does not depend on
the weights, so it runs before the teacher is built or a student is trained.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

TARGET_SPEEDUP, TARGET_RETENTION = 15.0, 0.97


def _row(name: str, r: dict, t: dict) -> str:
    q = r.get("ndcg@10")
    ret = f"{q / t['ndcg@10']:.1%}" if q is not None and t.get("ndcg@10") else "-"
    sp = f"{r['pairs_per_s'] / t['pairs_per_s']:.1f}x" if r.get("pairs_per_s") and t.get("pairs_per_s") else "-"
    qs = f"{q:.4f}" if q is not None else "-"
    return (f"{name:<20} ndcg@10 {qs:>7}  retention {ret:>7}  pairs/s {r.get('pairs_per_s', float('nan')):8.1f}  "
            f"speed-up {sp:>7}  p50 {r.get('p50_ms', float('nan')):8.1f} ms  p95 {r.get('p95_ms', float('nan')):8.1f} ms")


def full(overrides: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.ops.verbs import stage_verbs
    from ragdistill.reranker import stage

    cfg = compose("reranker", overrides)
    apply_run_settings(cfg)
    res = stage_verbs(stage)["evaluate"](cfg).results
    t = res["teacher"]
    print("\n[bench reranker] ratios vs the teacher (same candidates, same run)")
    for name in ("student_base", "student", "student_onnx", "student_onnx_int8", "colbert"):
        if name in res:
            print(_row(name, res[name], t))
    best = res.get("student_onnx_int8") or res.get("student_onnx") or res["student"]
    if not t.get("pairs_per_s"):
        print("teacher speed not measured (teacher model absent): run with the teacher built, or --speed-only")
        return 0
    speed, ret = best["pairs_per_s"] / t["pairs_per_s"], best["ndcg@10"] / t["ndcg@10"]
    ok = speed >= TARGET_SPEEDUP and ret >= TARGET_RETENTION
    print(f"target: >= {TARGET_SPEEDUP:.0f}x pairs/s at >= {TARGET_RETENTION:.0%} NDCG@10 -> {speed:.1f}x at {ret:.1%}: "
          f"{'MET' if ok else 'NOT MET'}")
    return 0


def speed_only(overrides: list[str]) -> int:
    import torch
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    from ragdistill.common.config import compose
    from ragdistill.common.timing import measure
    from ragdistill.reranker.candidates import first_stage
    from ragdistill.reranker.lists import load_data
    from ragdistill.reranker.students import int8_file, load_cross_encoder, new_cross_encoder, predict_raw

    cfg = compose("reranker", overrides)
    torch.set_num_threads(int(cfg.run.torch_threads or 2))
    ev = cfg.reranker.evaluate
    data = load_data(cfg)
    cands = first_stage(data, cfg.data.test_split, int(ev.latency_candidates))
    lists = [(data.queries[q], [data.corpus[d].full_text for d in c.doc_ids]) for q, c in sorted(cands.items())[: int(ev.latency_queries)]]
    n = len(lists[0][1])
    t_len, s_len = int(cfg.teacher.max_length or 128), int(cfg.student.max_length or 128)
    systems = {}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = new_cross_encoder(cfg.reranker.build_teacher.base, t_len)
        student = new_cross_encoder(cfg.student.model, s_len, cfg.reranker.train.student_layers)
        student.save_pretrained(tmp)
        onnx = load_cross_encoder(tmp, s_len, backend="onnx", model_kwargs={"export": True})
        onnx.save_pretrained(tmp)
        arch = cfg.reranker.export.quantization.value
        export_dynamic_quantized_onnx_model(onnx, getattr(AutoQuantizationConfig, arch)(is_static=False, per_channel=True), tmp,
                                            file_suffix=f"qint8_{arch}")
        int8 = load_cross_encoder(tmp, s_len, backend="onnx", model_kwargs={"file_name": int8_file(arch)})
        for name, m in (("teacher_arch", teacher), ("student", student), ("student_onnx", onnx), ("student_onnx_int8", int8)):
            st = measure(lambda b, m=m: predict_raw(m, [(b[0][0], d) for d in b[0][1]], int(ev.batch_size)), lists, 1)
            systems[name] = {"pairs_per_s": st.items_per_s * n, "p50_ms": st.p50_ms, "p95_ms": st.p95_ms}
    t = systems["teacher_arch"]
    print(f"\n[bench reranker --speed-only] {len(lists)} queries x {n} candidates; teacher {cfg.reranker.build_teacher.base} "
          f"len {t_len}, student {cfg.student.model} len {s_len}; threads {torch.get_num_threads()}")
    for name, r in systems.items():
        print(_row(name, r, t))
    sp = systems["student_onnx_int8"]["pairs_per_s"] / t["pairs_per_s"]
    print(f"speed target >= {TARGET_SPEEDUP:.0f}x: {sp:.1f}x -> {'MET' if sp >= TARGET_SPEEDUP else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    args = sys.argv[1:]
    if "--speed-only" in args:
        sys.exit(speed_only([a for a in args if a != "--speed-only"]))
    sys.exit(full(args))
