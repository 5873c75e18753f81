"""Query-rewriter benchmark: the distilled student (and its ONNX export) against the teacher, quality
and speed measured side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/query_rewriter.py [key=value ...]

Runs ``ragdistill query_rewriter evaluate`` (so ``teach``, ``train`` and ``export`` must have run
with the same overrides) on the held-out CANARD test records and prints the ratios the issue sets as
targets: the student ONNX export >= 20x faster than the teacher (p50 latency per query, batch 1,
both timed live in this run on the same queries) while keeping >= 95% of the teacher's recall lift
(BM25 recall with the rewrite minus recall with the raw question). The title+section+question
baseline is printed beside it: a learned rewriter has to beat it to be worth its latency.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

SPEEDUP_TARGET = 20.0
LIFT_RETENTION_TARGET = 0.95


def main(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.ops.verbs import stage_verbs
    from ragdistill.query_rewriter import stage

    cfg = compose("query_rewriter", ["run.report_to=[]", "query_rewriter.evaluate.teacher_latency=true", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    res = stage_verbs(stage)["evaluate"](cfg).results  # as `ragdistill query_rewriter evaluate` (writes results.json)
    t = res["teacher"]
    print("\n[bench query_rewriter] student / teacher, on held-out CANARD test records")
    ok = True
    for name in ("student_onnx", "student_onnx_int8", "student", "student_base"):
        s = res.get(name)
        if not s:
            continue
        retention = s["recall_lift"] / t["recall_lift"] if t["recall_lift"] > 0 else float("nan")
        speed = t.get("latency_p50_ms", float("nan")) / s["latency_p50_ms"] if s.get("latency_p50_ms") else float("nan")
        line = (f"  {name:<18} recall_lift {s['recall_lift']:+.4f} vs teacher {t['recall_lift']:+.4f} "
                f"= {retention:.0%} retained; p50 {s.get('latency_p50_ms', float('nan')):.0f} ms vs teacher "
                f"{t.get('latency_p50_ms', float('nan')):.0f} ms = {speed:.1f}x faster")
        if name == "student_onnx":
            met = retention >= LIFT_RETENTION_TARGET and speed >= SPEEDUP_TARGET
            ok &= met
            line += f"  (targets >= {SPEEDUP_TARGET:.0f}x and >= {LIFT_RETENTION_TARGET:.0%}: {'met' if met else 'NOT met'})"
        print(line)
    tsq = res["ref:title_section_question"]
    print(f"  {'title+section+q':<18} recall_lift {tsq['recall_lift']:+.4f} (trivial baseline, 0 ms); "
          f"human rewrite {res['ref:human_rewrite']['recall_lift']:+.4f}")
    print(f"[bench query_rewriter] all targets met: {ok}")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))
