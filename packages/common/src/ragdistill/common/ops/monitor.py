"""Fidelity and drift: how far the student has moved from the teacher on live inputs.

``ragdistill monitor <stage> --log live.jsonl`` samples logged inputs, runs the stage's student and
teacher on them (or reads the student's output where the log has it), measures their divergence
with the stage's :meth:`~ragdistill.common.stage.Stage.divergence_metrics` (by default the mean of
its ``disagreement`` hook, in [0, 1], higher = further apart), and compares it with the baseline
``export`` measured on held-out data. Divergence above baseline + margin exits 1 with a message
saying so, so a scheduler can trigger the next round (``teach data.extra=queue``, ``train``).

Written once for every stage on its hooks: ``held_out`` (the baseline's inputs, and the log's
format: one record per line with the component's arguments, ``Stage.call_fields``), ``predictor``
(student and teacher outputs, the teacher's through the label cache) and ``disagreement``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl, read_json, write_json
from ragdistill.common.logging import get_logger

log = get_logger(__name__)

BASELINE_FILE = "monitor_baseline.json"
DRIFT_EXIT_CODE = 1

Records = list[dict[str, Any]]


def read_log(path: str | Path, stage: Any, sample: int | None = None, seed: int = 0) -> Records:
    """Logged inputs (one JSON object a line, with the stage's ``call_fields``); a malformed line or
    a missing field names the line."""
    fields = tuple(stage.call_fields)
    rows = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise RagdistillError(f"{path}:{lineno}: expected a JSON object with {', '.join(fields)}")
        missing = [f for f in fields if f not in obj]
        if missing:
            raise RagdistillError(f"{path}:{lineno}: a {stage.name} log line needs {', '.join(repr(f) for f in fields)}; "
                                  f"missing {', '.join(missing)}")
        rows.append(obj)
    if not rows:
        raise RagdistillError(f"{path}: the log has no inputs")
    if sample and len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    return rows


def measure(stage: Any, cfg: Any, records: Records, student: str = "student") -> dict[str, float]:
    """Divergence metrics of ``records`` between the ``student`` variant and the teacher. A record
    carrying the student's output under ``stage.output_field`` (``answer``, ``rewrite``, ...) is not
    re-run."""
    field = stage.output_field
    todo = [r for r in records if not (field and r.get(field) is not None)]
    made = iter(stage.predictor(cfg, student)(todo) if todo else [])
    s_out = [r[field] if field and r.get(field) is not None else next(made) for r in records]
    t_out = stage.predictor(cfg, "teacher")(records)
    out = stage.divergence_metrics(records, s_out, t_out)
    out["n"] = len(records)
    return out


def baseline_payload(stage: str, metrics: dict[str, float], source: str) -> dict[str, Any]:
    return {"stage": stage, "divergence": metrics["divergence"], "metrics": metrics, "source": source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def check(stage: str, metrics: dict[str, float], baseline: dict[str, Any], margin: float) -> tuple[bool, str]:
    """(drifted, message): drifted when divergence > baseline divergence + margin."""
    d, b = float(metrics["divergence"]), float(baseline["divergence"])
    detail = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("divergence", "n") and isinstance(v, float))
    if d > b + margin:
        return True, (f"[{stage}] DRIFT: student-teacher divergence {d:.4f} exceeds the baseline {b:.4f} + margin {margin:.4f} "
                      f"on {metrics.get('n')} sampled inputs ({detail}); retrain: ragdistill {stage} teach data.extra=queue, then train")
    return False, (f"[{stage}] ok: student-teacher divergence {d:.4f} within the baseline {b:.4f} + margin {margin:.4f} "
                   f"on {metrics.get('n')} sampled inputs ({detail})")


def default_baseline_path(cfg: Any, stage: str) -> Path:
    """``<work_dir>/<stage>/export/monitor_baseline.json`` (written when the student is exported)."""
    from ragdistill.common.paths import stage_dir

    return stage_dir(cfg, stage, "export") / BASELINE_FILE


def write_monitor_baseline(stage: Any, cfg: Any, result: Any = None) -> dict[str, Any] | None:
    """What every ``export`` writes: the student-vs-teacher divergence on the first
    ``monitor.baseline_inputs`` held-out inputs (0 = none), which ``ragdistill monitor`` compares
    live inputs with. Noted in the export result's ``details``."""
    n = int(cfg.monitor.baseline_inputs)
    if n <= 0:
        return None
    try:
        records = stage.held_out(cfg, n)
    except NotImplementedError:
        return None
    if not records:
        return None
    payload = baseline_payload(stage.name, measure(stage, cfg, records), f"held-out {cfg.data.test_split}: {len(records)} inputs")
    path = write_json(default_baseline_path(cfg, stage.name), payload)
    if result is not None:
        result.details["monitor_baseline"] = {"path": str(path), "divergence": payload["divergence"], "n": len(records)}
    return payload


def monitor_command(argv: list[str]) -> None:
    from ragdistill.common.stage import load_stages

    names = ", ".join(load_stages())
    p = argparse.ArgumentParser(
        prog="ragdistill monitor",
        description="Student-teacher divergence on logged live inputs vs the baseline stored at export; exits 1 on drift.")
    p.add_argument("stage", help=f"one of {names}")
    p.add_argument("--log", required=True, type=Path, help="JSONL of live inputs, one per line, with the stage's component "
                   "arguments (embedder: {query}; reranker: {query, docs}; generator: {question, contexts[, answer]}; "
                   "query_rewriter: {history, question[, rewrite]})")
    p.add_argument("--baseline", type=Path, default=None, help="baseline JSON (default <work_dir>/<stage>/export/monitor_baseline.json)")
    p.add_argument("--margin", type=float, default=0.1, help="allowed divergence above the baseline (default 0.1)")
    p.add_argument("--sample", type=int, default=200, help="inputs sampled from the log (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--student", default="student", help="student variant: student (default), student_onnx or student_base")
    p.add_argument("--write-baseline", action="store_true", help="measure the log and store it as the baseline instead of checking")
    p.add_argument("--out", type=Path, default=None, help="also write the measurement as JSON here")
    p.add_argument("overrides", nargs="*", help="stage config overrides, e.g. paths.work_dir=work")
    a = p.parse_intermixed_args(argv)
    try:
        code, msg = run_monitor(a)
    except RagdistillError as e:
        print(f"ragdistill: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(msg, flush=True)
    if code:
        sys.exit(code)


monitor_command.description = "student-teacher divergence on a live-input log vs the export-time baseline; exit 1 on drift"


def run_monitor(a: argparse.Namespace) -> tuple[int, str]:
    from ragdistill.common.config import compose
    from ragdistill.common.paths import conf_dir
    from ragdistill.common.stage import get_stage

    if a.margin < 0:
        raise RagdistillError(f"--margin {a.margin}: must be >= 0")
    stage = get_stage(a.stage)
    records = read_log(a.log, stage, a.sample, a.seed)  # bad input fails before any model loads
    # a stage package without conf/<stage>.yaml (a user's own stage) composes from its schema alone
    name = a.stage if (conf_dir() / f"{a.stage}.yaml").is_file() else f"{a.stage}_schema"
    cfg = compose(name, ["run.report_to=[]", *a.overrides])
    baseline_path = a.baseline or default_baseline_path(cfg, a.stage)
    baseline = None
    if not a.write_baseline:
        if not Path(baseline_path).exists():
            raise RagdistillError(f"{baseline_path}: no monitor baseline; the stage's export writes it, or run "
                                  f"`ragdistill monitor {a.stage} --log HELD_OUT.jsonl --write-baseline`")
        baseline = read_json(baseline_path)
        if "divergence" not in baseline:
            raise RagdistillError(f"{baseline_path}: not a monitor baseline (no 'divergence'); rewrite it with --write-baseline")
    metrics = measure(stage, cfg, records, a.student)
    if a.out:
        write_json(a.out, {"stage": a.stage, "log": str(a.log), "metrics": metrics, "baseline": baseline, "margin": a.margin})
    if a.write_baseline:
        write_json(baseline_path, baseline_payload(a.stage, metrics, str(a.log)))
        return 0, f"[{a.stage}] baseline written to {baseline_path}: divergence {metrics['divergence']:.4f} on {metrics['n']} inputs"
    drifted, msg = check(a.stage, metrics, baseline, a.margin)
    return (DRIFT_EXIT_CODE if drifted else 0), msg
