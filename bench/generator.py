"""Generator benchmark: the distilled student against the teacher, quality and speed in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generator.py [key=value ...]

Runs ``ragdistill generator evaluate`` (so ``teach`` and ``train`` must have run with the same
overrides) on the held-out SQuAD questions and prints the student/teacher ratios the issue sets
as targets: tokens/s >= 5x the teacher's, at >= 90% of the teacher's faithfulness (grounding
proxy; ragas faithfulness when the judge is on) and answer correctness (token F1, exact match).
The teacher's answers come from the label cache; both speeds are measured live in this run,
one question at a time, on the same questions.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

TARGETS = {"tokens_per_s": 5.0, "grounding": 0.9, "token_f1": 0.9, "exact_match": 0.9, "answer_correct": 0.9}


def main(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.ops.verbs import run_verb
    from ragdistill.generator import stage

    cfg = compose("generator", ["run.report_to=[]", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    res = run_verb(stage, "evaluate", cfg).results
    t, s, b = res["teacher"], res["student"], res["student_base"]
    print("\n[bench generator] student / teacher (target), and the undistilled student for reference")
    ok = True
    for m, target in TARGETS.items():
        if m not in t or m not in s or not t[m]:
            print(f"  {m:<16} n/a")
            continue
        ratio = s[m] / t[m]
        ok &= ratio >= target
        base = b[m] / t[m]
        print(f"  {m:<16} student {s[m]:.4f} / teacher {t[m]:.4f} = {ratio:.2f}x (target >= {target:.2f}x: {'met' if ratio >= target else 'NOT met'}); "
              f"student_base {base:.2f}x")
    for m in ("latency_p50_ms", "latency_p95_ms"):
        if m in t and m in s:
            print(f"  {m:<16} teacher {t[m]:.0f} ms, student {s[m]:.0f} ms ({t[m] / s[m]:.1f}x faster)")
    print(f"[bench generator] all targets met: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
