"""End-to-end benchmark: the pipeline targets (issue 23), the conversational pipeline's targets and the swap matrix (issue 25).

Conversational (CANARD test; every stage's train and export must have run in the same work dir):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/e2e.py conversational [--n 300] [key=value ...]

runs three pipelines on the first ``n`` judged CANARD test questions (all of them answered):
all teacher (the rewriter's teacher rewrites), all student with the rewriter on (the student
rewrites) and all student with ``rewriter=off`` (the raw follow-up question), and prints the targets:
the student pipeline with the rewriter beats it without in NDCG@10 and answer token F1, and keeps
>= 90% of the all-teacher pipeline's answer F1. The teacher rewrites and answers come from the label
cache (``paths.label_cache``); for 300 questions they are hours of 0.5B labelling on 2 CPU cores the
first time, resumable (a rerun reads what was labelled).

Teacher vs exported students vs routed (issue 23's pipeline targets; SQuAD test by default):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/e2e.py pipeline [--n 100] [--no-routed] [--student key=value ...] [key=value ...]

runs the all-teacher pipeline, the all-student pipeline on every stage's export (``student_onnx``)
and the exported pipeline with a routed generator (``pipeline.generator=routed``: the student, the
teacher below the calibrated confidence; ``ragdistill generator calibrate`` first), every question
answered, one after the other in one process; prints the comparison table, each slot's model memory
and size, and the targets: all-student >= 92% of the all-teacher answer token F1 at >= 10x lower
end-to-end p50, routed >= 97% at <= 20% teacher calls. ``stage_overrides`` point a stage at its
own work dir (``"+stage_overrides.generator=['paths.work_dir=W']"``). Speed-ups need an idle machine.

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


PIPELINE_F1, PIPELINE_SPEEDUP = 0.92, 10.0  # all-student exported vs all-teacher
ROUTED_F1, ROUTED_MAX_TEACHER = 0.97, 0.20  # routed generator: answer F1 retention at most this share of teacher calls


def pipeline_targets(teacher: dict, student: dict, routed: dict | None) -> dict[str, tuple[bool, str]]:
    """The pipeline targets from three ``report.json`` results: name -> (met, the measured figure)."""
    def f1(r: dict) -> float:
        return float((r.get("generation") or {}).get("token_f1") or 0.0)

    def p50(r: dict) -> float:
        return float(r["latency"]["end_to_end"]["p50_ms"])

    t_f1 = f1(teacher)
    out = {
        f"all-student keeps >= {PIPELINE_F1:.0%} of the all-teacher answer F1":
            (t_f1 > 0 and f1(student) / t_f1 >= PIPELINE_F1, f"{f1(student) / t_f1:.1%}" if t_f1 else "no teacher F1"),
        f"all-student >= {PIPELINE_SPEEDUP:.0f}x lower end-to-end p50":
            (p50(teacher) / p50(student) >= PIPELINE_SPEEDUP, f"{p50(teacher) / p50(student):.2f}x"),
    }
    if routed is not None:
        share = float(routed["stages"]["generator"]["routing"]["teacher_fraction"])
        kept = f1(routed) / t_f1 if t_f1 else 0.0
        out[f"routed keeps >= {ROUTED_F1:.0%} of the all-teacher answer F1 at <= {ROUTED_MAX_TEACHER:.0%} teacher calls"] = (
            kept >= ROUTED_F1 and share <= ROUTED_MAX_TEACHER, f"{kept:.1%} at {share:.0%} teacher calls")
    return out


def pipeline(n: int, extra: list[str], with_routed: bool = True, student_extra: list[str] | None = None) -> int:
    from ragdistill.common.errors import RagdistillError
    from ragdistill.e2e.report import compare_runs

    base = [f"data.max_queries={n}", f"max_generate={n}", "pipeline.rewriter=off"]
    exported = [*(f"pipeline.{s}=student_onnx" for s in STAGES), *(student_extra or [])]
    runs = {"all teacher": [f"pipeline.{s}=teacher" for s in STAGES], "all student, exported": exported}
    if with_routed:
        runs["exported, routed generator"] = [*exported, "pipeline.generator=routed"]
    dirs: dict[str, Path] = {}
    for name, o in runs.items():
        try:
            dirs[name] = _e2e([*base, *o, *extra])
        except RagdistillError as e:
            if name != "exported, routed generator":
                raise
            print(f"[bench e2e] routed run not made: {e}")
    res = {name: json.loads((d / "report.json").read_text())["result"] for name, d in dirs.items()}
    nq = res["all teacher"]["n_queries"]
    print(f"\n[bench e2e] {res['all teacher']['dataset']} test, {nq} questions, "
          f"{len(res['all teacher'].get('answers') or {})} answered per pipeline; retention and speed-up vs the all-teacher run")
    print(compare_runs(list(dirs.values()), next(iter(dirs.values())).parent / "bench-pipeline"))
    print("\nmodel memory (MB of process RSS the slot's load and first call added) and size on disk (MB):")
    for name, r in res.items():
        cells = [f"{slot} {f.get('variant')}: {f.get('memory_mb', 0):.0f} / {f.get('size_mb') or float('nan'):.0f}"
                 for slot, f in r["stages"].items()]
        print(f"  {name:<28} " + "; ".join(cells) + f"; total size {r.get('total_size_mb') or float('nan'):.0f}")
    checks = pipeline_targets(res["all teacher"], res["all student, exported"], res.get("exported, routed generator"))
    for name, (ok, fig) in checks.items():
        print(f"  {'MET   ' if ok else 'MISSED'} {name}: {fig}")
    return 0 if all(ok for ok, _ in checks.values()) and len(res) == len(runs) else 1


def matrix(n: int, extra: list[str]) -> int:
    out = _e2e(["swap=matrix", f"data.max_queries={n}", f"max_generate={n}", *extra])
    print((out / "matrix.txt").read_text())
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["conversational", "pipeline", "matrix"])
    p.add_argument("--n", type=int, default=None, help="held-out questions (default: 300 conversational, 100 pipeline and matrix)")
    p.add_argument("--no-routed", action="store_true", help="pipeline: skip the routed-generator run (no calibration yet)")
    p.add_argument("--student", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline: an override for the student runs only, e.g. --student retrieval.rerank_fusion=0.5 "
                        "--student retrieval.n_contexts=1 (a deployment choice the table then shows beside the teacher)")
    a, extra = p.parse_known_args(argv)
    n = a.n or (300 if a.mode == "conversational" else 100)
    if a.mode == "pipeline":
        return pipeline(n, extra, with_routed=not a.no_routed, student_extra=a.student)
    return conversational(n, extra) if a.mode == "conversational" else matrix(n, extra)


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(run_script(main, sys.argv[1:]))
