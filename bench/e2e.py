"""End-to-end benchmark: the conversational pipeline's targets and the swap matrix (issue 25).

Conversational (CANARD test; every stage's train and export must have run in the same work dir):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/e2e.py conversational [--n 300] [key=value ...]

runs three pipelines on the first ``n`` judged CANARD test questions (all of them answered):
all teacher (the rewriter's teacher rewrites), all student with the rewriter on (the student
rewrites) and all student with ``rewriter=off`` (the raw follow-up question), and prints the targets:
the student pipeline with the rewriter beats it without in NDCG@10 and answer token F1, and keeps
>= 90% of the all-teacher pipeline's answer F1. The teacher rewrites and answers come from the label
cache (``paths.label_cache``); for 300 questions they are hours of 0.5B labelling on 2 CPU cores the
first time, resumable (a rerun reads what was labelled).

Swap matrix (each stage alone swapped to its student and its export, then all student):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/e2e.py matrix [--n 100] [data=canard] [key=value ...]

prints the matrix table (answer F1 and NDCG@10 lost, per-query time saved, speed-ups per swap) and
writes ``swap_matrix.png``. Quality figures are fine on a busy machine; the speed-ups need an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

F1_RETENTION = 0.9  # the student pipeline (rewriter on) keeps >= 90% of the all-teacher pipeline's answer F1
STAGES = ("embedder", "reranker", "generator")


def _e2e(overrides: list[str]) -> Path:
    """``ragdistill e2e <overrides>``; returns its output directory."""
    import ragdistill.e2e.config  # noqa: F401  (registers the schema)
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.e2e.cli import run_e2e

    cfg = compose("e2e", ["run.report_to=[]", *overrides])
    apply_run_settings(cfg)
    return run_e2e(cfg)


def _run(overrides: list[str]) -> dict:
    return json.loads((_e2e(overrides) / "report.json").read_text())["result"]


def _figures(r: dict) -> tuple[float, float | None]:
    ranking = r.get("after_rerank") or r["retrieval"]
    return ranking["ndcg@10"], (r.get("generation") or {}).get("token_f1")


def conversational(n: int, extra: list[str]) -> int:
    base = ["data=canard", f"data.max_queries={n}", f"max_generate={n}"]
    runs = {
        "all teacher (teacher rewrite)": ["pipeline.rewriter=teacher", *(f"pipeline.{s}=teacher" for s in STAGES)],
        "all student, rewriter=student": ["pipeline.rewriter=student", *(f"pipeline.{s}=student" for s in STAGES)],
        "all student, rewriter=off": ["pipeline.rewriter=off", *(f"pipeline.{s}=student" for s in STAGES)],
    }
    res = {name: _run([*base, *o, *extra]) for name, o in runs.items()}  # extra last: e.g. pipeline.reranker=colbert
    teacher, on, off = (_figures(r) for r in res.values())
    nq = next(iter(res.values()))["n_queries"]
    print(f"\n[bench e2e] CANARD test, {nq} conversational questions (all answered); NDCG@10 after rerank, answer token F1")
    for name, r in res.items():
        ndcg, f1 = _figures(r)
        raw = (r.get("retrieval_raw_question") or {}).get("ndcg@10")
        print(f"  {name:<32} NDCG@10 {ndcg:.4f}  F1 {f1 if f1 is None else round(f1, 4)}"
              + (f"  (first stage on the raw question {raw:.4f}, on the rewrite {r['retrieval']['ndcg@10']:.4f})" if raw is not None else ""))
    checks = {
        "rewriter on beats off in NDCG@10": on[0] > off[0],
        "rewriter on beats off in answer F1": (on[1] or 0) > (off[1] or 0),
        f"student pipeline keeps >= {F1_RETENTION:.0%} of all-teacher answer F1": bool(teacher[1]) and (on[1] or 0) / teacher[1] >= F1_RETENTION,
    }
    if teacher[1]:
        print(f"  student / teacher answer F1 = {(on[1] or 0) / teacher[1]:.1%}")
    for name, ok in checks.items():
        print(f"  {'MET   ' if ok else 'MISSED'} {name}")
    return 0 if all(checks.values()) else 1


def matrix(n: int, extra: list[str]) -> int:
    out = _e2e(["swap=matrix", f"data.max_queries={n}", f"max_generate={n}", *extra])
    print((out / "matrix.txt").read_text())
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["conversational", "matrix"])
    p.add_argument("--n", type=int, default=None, help="held-out questions (default: 300 conversational, 100 matrix)")
    a, extra = p.parse_known_args(argv)
    n = a.n or (300 if a.mode == "conversational" else 100)
    return conversational(n, extra) if a.mode == "conversational" else matrix(n, extra)


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(run_script(main, sys.argv[1:]))
