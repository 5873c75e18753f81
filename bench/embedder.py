"""Embedder benchmark: the distilled student (torch, ONNX, ONNX int8) against the teacher, quality
and speed measured side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedder.py [key=value ...]

Runs ``ragdistill embedder evaluate`` (so ``teach``, ``train`` and ``export`` must have run with the
same overrides) on the held-out SciFact test queries and prints the ratios the issue sets as
targets on 2 CPU cores: student ONNX int8 >= 10x the teacher's queries/s while keeping >= 97% of
its NDCG@10, and the student's Matryoshka embedding at 1/4 of its dims keeping >= 95% of the
teacher's NDCG@10. Every system is timed live in this process, one after the other, on the same
queries (``embedder.evaluate.speed_texts`` at ``embedder.evaluate.batch_size``; p50/p95 over single queries).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

SPEEDUP_TARGET = 10.0
NDCG_RETENTION_TARGET = 0.97
MATRYOSHKA_RETENTION_TARGET = 0.95


def main(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.ops.verbs import stage_verbs
    from ragdistill.embedder import stage

    cfg = compose("embedder", ["run.report_to=[]", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    res = stage_verbs(stage)["evaluate"](cfg).results  # writes results.json as `ragdistill embedder evaluate` does
    t = res["teacher"]
    print(f"\n[bench embedder] student / teacher on held-out {cfg.data.name} {cfg.data.test_split} queries")
    ok = True
    for name in ("student_onnx_int8", "student_onnx", "student", "student_base"):
        s = res.get(name)
        if not s:
            continue
        keep = s["ndcg@10"] / t["ndcg@10"]
        speed = s["queries_per_s"] / t["queries_per_s"]
        p50 = t["query_p50_ms"] / s["query_p50_ms"]
        line = (f"  {name:<18} NDCG@10 {s['ndcg@10']:.4f} vs teacher {t['ndcg@10']:.4f} = {keep:.1%}; "
                f"{s['queries_per_s']:.1f} vs {t['queries_per_s']:.1f} queries/s = {speed:.1f}x; p50 {p50:.1f}x faster")
        if name == "student_onnx_int8":
            met = keep >= NDCG_RETENTION_TARGET and speed >= SPEEDUP_TARGET
            ok &= met
            line += f"  (targets >= {SPEEDUP_TARGET:.0f}x and >= {NDCG_RETENTION_TARGET:.0%}: {'met' if met else 'NOT met'})"
        print(line)
    s = res.get("student")
    if s:
        quarter = int(s["dim"]) // 4
        key = f"ndcg@10 d={quarter}"
        if key in s:
            keep = s[key] / t["ndcg@10"]
            met = keep >= MATRYOSHKA_RETENTION_TARGET
            ok &= met
            print(f"  student at {quarter} dims (1/4) NDCG@10 {s[key]:.4f} = {keep:.1%} of the teacher's "
                  f"(student_base at {quarter}: {res['student_base'].get(key, float('nan')):.4f}; target >= "
                  f"{MATRYOSHKA_RETENTION_TARGET:.0%}: {'met' if met else 'NOT met'})")
        else:
            ok = False
            print(f"  no Matryoshka row at {quarter} dims: add {quarter} to embedder.evaluate.dims (or embedder.train.matryoshka)")
    print(f"[bench embedder] all targets met: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
