"""Embedder benchmark: the distilled student (torch, ONNX, ONNX int8) against the teacher and the
undistilled student, quality and speed measured side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedder.py [key=value ...]

Runs ``ragdistill embedder evaluate`` (so ``teach``, ``train`` and ``export`` must have run with the
same overrides) on the held-out test split and prints the issue's targets: the ONNX int8 student's
NDCG@10 (MTEB's own SciFact task on the full split; pytrec_eval where MTEB is off) at least the
teacher's and more than +1 point over the undistilled student; its 96-dimension (1/4) Matryoshka
truncation at least 95% of the teacher's full-size NDCG@10; at least 15x the teacher's queries/s.
Every system is timed live in this process, one after the other, on the same queries
(``embedder.evaluate.speed_texts`` at ``embedder.evaluate.batch_size``; p50/p95 over single queries):
speed figures need an idle machine.

On data the student never saw, score the trained student from its work dir and check only that it
does not lose to its undistilled self (``embedder.evaluate.models_from``, results under this run's
own work dir)::

    .venv/bin/python bench/embedder.py data=squad paths.work_dir=<new dir> embedder.evaluate.models_from=<training work dir> \\
        paths.label_cache=<cache> 'embedder.evaluate.systems=[teacher,student_base,student,student_onnx_int8]'
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

SPEEDUP_TARGET = 15.0  # int8 queries/s over the teacher's
GAIN_TARGET = 0.01  # int8 NDCG@10 over the undistilled student's
MATRYOSHKA_DIM = 96
MATRYOSHKA_RETENTION_TARGET = 0.95  # int8 at 96 dims over the teacher's full-size NDCG@10
PUBLISHED = {"teacher": 0.6557, "student_base": 0.6451}  # MTEB leaderboard SciFact NDCG@10: all-mpnet-base-v2, all-MiniLM-L6-v2


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str]) -> int:
    from ragdistill.common.config import apply_run_settings, compose
    from ragdistill.common.logging import setup_logging
    from ragdistill.common.ops.verbs import stage_verbs
    from ragdistill.embedder import stage

    cfg = compose("embedder", ["run.report_to=[]", *argv])
    setup_logging(cfg.run.log_level)
    apply_run_settings(cfg)
    evaluated = stage_verbs(stage)["evaluate"](cfg)  # writes results.json as `ragdistill embedder evaluate` does
    res, details = evaluated.results, evaluated.details
    mteb = details.get("mteb_task") or {}
    key = "mteb_ndcg@10" if all("mteb_ndcg@10" in r for r in res.values()) else "ndcg@10"
    source = (f"MTEB task {mteb.get('name')} ({'full split' if mteb.get('full_split') else 'a slice: not leaderboard-comparable'})"
              if key.startswith("mteb") else "pytrec_eval")
    print(f"\n[bench embedder] {cfg.data.name} {cfg.data.test_split}: {details['n_queries']} queries over {details['n_docs']} documents; "
          f"NDCG@10 by {source}")
    for name, r in res.items():
        line = f"  {name:<18} NDCG@10 {r[key]:.4f}"
        if f"ndcg@10 d={MATRYOSHKA_DIM}" in r:
            line += f"   at {MATRYOSHKA_DIM} dims {r[f'ndcg@10 d={MATRYOSHKA_DIM}']:.4f}"
        line += f"   {r['queries_per_s']:.1f} queries/s, p50 {r['query_p50_ms']:.1f} ms, {r['size_mb']:.1f} MB"
        print(line)
    base, student = res.get("student_base"), res.get("student_onnx_int8") or res.get("student")
    sname = "student_onnx_int8" if "student_onnx_int8" in res else "student"
    if details.get("models_from"):  # data the student never saw: it must not lose to its undistilled self
        if base and student:
            gain = student[key] - base[key]
            print(f"  unseen data ({details['models_from']} evaluated on {cfg.data.name}): {sname} {student[key]:.4f} vs student_base "
                  f"{base[key]:.4f} = {gain:+.4f} (target >= 0: {_met(gain >= 0)})")
            return 0 if gain >= 0 else 1
        print("  add student_base and student(_onnx_int8) to embedder.evaluate.systems")
        return 1
    t = res.get("teacher")
    if not (t and base and student):
        print("  the targets need teacher, student_base and student_onnx_int8 in embedder.evaluate.systems")
        return 1
    ok = True
    if cfg.data.name == "scifact" and mteb.get("full_split"):
        for name, pub in PUBLISHED.items():
            print(f"  {name} measured {res[name][key]:.4f}; MTEB leaderboard {pub:.4f}")
    keep = student[key] / t[key]
    gain = student[key] - base[key]
    met = student[key] >= t[key] and (not mteb.get("full_split") or student[key] >= PUBLISHED["teacher"])
    ok &= met
    print(f"  {sname} NDCG@10 {student[key]:.4f} = {keep:.1%} of the teacher's {t[key]:.4f} (target >= the teacher's"
          f"{' and >= 0.6557' if mteb.get('full_split') else ''}: {_met(met)})")
    ok &= gain > GAIN_TARGET
    print(f"  {sname} vs student_base {base[key]:.4f}: {gain:+.4f} (target > +{GAIN_TARGET:.2f}: {_met(gain > GAIN_TARGET)})")
    dkey = f"ndcg@10 d={MATRYOSHKA_DIM}"
    if dkey in student:
        m_keep = student[dkey] / t["ndcg@10"]
        ok &= m_keep >= MATRYOSHKA_RETENTION_TARGET
        print(f"  {sname} at {MATRYOSHKA_DIM} dims NDCG@10 {student[dkey]:.4f} = {m_keep:.1%} of the teacher's full-size "
              f"{t['ndcg@10']:.4f} (student_base at {MATRYOSHKA_DIM}: {base.get(dkey, float('nan')):.4f}; target >= "
              f"{MATRYOSHKA_RETENTION_TARGET:.0%}: {_met(m_keep >= MATRYOSHKA_RETENTION_TARGET)})")
    else:
        ok = False
        print(f"  no Matryoshka row at {MATRYOSHKA_DIM} dims: add {MATRYOSHKA_DIM} to embedder.evaluate.dims (or embedder.train.matryoshka)")
    speed = student["queries_per_s"] / t["queries_per_s"]
    ok &= speed >= SPEEDUP_TARGET
    print(f"  {sname} {student['queries_per_s']:.1f} vs teacher {t['queries_per_s']:.1f} queries/s = {speed:.1f}x; p50 "
          f"{t['query_p50_ms'] / student['query_p50_ms']:.1f}x faster (target >= {SPEEDUP_TARGET:.0f}x: {_met(speed >= SPEEDUP_TARGET)}; "
          "an idle machine only)")
    print(f"[bench embedder] all targets met: {ok}")
    return 0


if __name__ == "__main__":
    from ragdistill.common.cli import run_script

    sys.exit(run_script(main, sys.argv[1:]))
