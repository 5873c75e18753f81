#!/usr/bin/env python
"""Reranker benchmark: student vs teacher, quality and speed measured side by side in one run.

    python bench/reranker.py [hydra overrides ...]          # full: runs `ragdistill reranker evaluate`
    python bench/reranker.py --speed-only [overrides ...]   # speed only, no trained artifacts needed

Targets (issue 24, 2 CPU cores, all 1,339 SQuAD test questions, one run): the cross-encoder student
as ONNX int8 >= its first stage + 3 NDCG@10 points on every candidate source
(``reranker.evaluate.candidate_sources``: BM25 top-30 and the embedder's top-30) and >= the
teacher's NDCG@10 on the same lists, at >= 15x the teacher's pairs/s; the ColBERT student (reranking
through its colbert-ai PLAID index) >= its first stage + 2 points. With ``reranker.evaluate.fusion_weight``
(default 0.5) the same targets are also printed for the int8 student fused with the list's first-stage
scores (``ragdistill.common.fusion``), beside the student alone.
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

TARGET_SPEEDUP, TARGET_OVER_FIRST_STAGE, TARGET_COLBERT_OVER_FIRST_STAGE = 15.0, 0.03, 0.02


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
    result = stage_verbs(stage)["evaluate"](cfg)
    res = result.results
    t = res["teacher"]
    print("\n[bench reranker] ratios vs the teacher (same candidates, same run)")
    for name in [n for b in ("student_base", "student", "student_onnx", "student_onnx_int8", "colbert") for n in (b, b + "+fusion")]:
        if name in res:
            print(_row(name, res[name], t))
    checks: list[tuple[str, bool | None]] = []
    best = next(n for n in ("student_onnx_int8", "student_onnx", "student") if n in res)
    for info in result.details["candidate_sources"].values():
        sfx, first = info["suffix"], res[info["first_stage_row"]]["ndcg@10"]
        where = f"{info['source']} top-{info['k']} ({info['queries']} queries)"
        s, teach = res[best + sfx]["ndcg@10"], res["teacher" + sfx]["ndcg@10"]
        checks.append((f"{best} NDCG@10 {s:.4f} >= first stage {first:.4f} + {TARGET_OVER_FIRST_STAGE:.2f} on {where}",
                       s >= first + TARGET_OVER_FIRST_STAGE))
        checks.append((f"{best} NDCG@10 {s:.4f} >= teacher {teach:.4f} on {where}", s >= teach))
        if best + "+fusion" + sfx in res:  # the same student fused with the list's first-stage scores (ragdistill.common.fusion)
            f, w = res[best + "+fusion" + sfx]["ndcg@10"], result.details.get("fusion_weight")
            checks.append((f"{best}+fusion (w={w}) NDCG@10 {f:.4f} >= first stage {first:.4f} + {TARGET_OVER_FIRST_STAGE:.2f} on {where}",
                           f >= first + TARGET_OVER_FIRST_STAGE))
            checks.append((f"{best}+fusion (w={w}) NDCG@10 {f:.4f} >= teacher {teach:.4f} on {where}", f >= teach))
        if "colbert" + sfx in res:
            c = res["colbert" + sfx]["ndcg@10"]
            checks.append((f"colbert (PLAID index) NDCG@10 {c:.4f} >= first stage {first:.4f} + {TARGET_COLBERT_OVER_FIRST_STAGE:.2f} "
                           f"on {where}", c >= first + TARGET_COLBERT_OVER_FIRST_STAGE))
    if t.get("pairs_per_s") and res[best].get("pairs_per_s"):
        speed = res[best]["pairs_per_s"] / t["pairs_per_s"]
        checks.append((f"{best} {speed:.1f}x the teacher's pairs/s (>= {TARGET_SPEEDUP:.0f}x; needs an idle machine)", speed >= TARGET_SPEEDUP))
    else:
        checks.append(("speed not measured (teacher model absent or latency_queries=0): run with the teacher built, or --speed-only", None))
    print("\n[bench reranker] targets")
    for text, ok in checks:
        print(f"  {'MET    ' if ok else ('-      ' if ok is None else 'NOT MET')} {text}")
    return 0


def speed_only(overrides: list[str]) -> int:
    import torch
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    from ragdistill.common.config import compose
    from ragdistill.common.timing import measure
    from ragdistill.reranker.candidates import first_stage
    from ragdistill.reranker.lists import load_data
    from ragdistill.reranker.students import INT8_SUFFIX, ONNX_INT8, load_cross_encoder, new_cross_encoder, predict_raw

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
        preset = cfg.reranker.export.quantization.value
        export_dynamic_quantized_onnx_model(onnx, getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=True), tmp,
                                            file_suffix=INT8_SUFFIX)
        int8 = load_cross_encoder(tmp, s_len, backend="onnx", model_kwargs={"file_name": ONNX_INT8})
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
    from ragdistill.common.cli import run_script

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    args = sys.argv[1:]
    if "--speed-only" in args:
        sys.exit(run_script(speed_only, [a for a in args if a != "--speed-only"]))
    sys.exit(run_script(full, args))
