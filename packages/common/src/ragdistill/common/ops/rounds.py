"""Distillation rounds: keep round k, start round k+1 from its student, and compare the two.

A round is teach -> train -> export -> evaluate. The next round's ``teach data.extra=queue`` adds
what the failure queue collected (routed inputs, held-out disagreements) and its ``train`` starts
from the previous student (``student.model=<round k>/student``). Since train and evaluate overwrite
their folders, :func:`snapshot_round` first copies round k's student and evaluate results to
``<work_dir>/<stage>/rounds/<k>/``; :func:`compare_rounds` then puts every kept round's student next
to the current one (and the teacher) in ``rounds/comparison.{json,txt}``.

Held-out caveat: disagreements ``calibrate`` queued come from the split ``evaluate`` scores; a round
trained on them is no longer held out on those inputs. The comparison counts them and says so.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_json, write_json, write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import queue_path, rounds_dir, stage_dir

log = get_logger(__name__)


def kept_rounds(cfg: Any, stage: str) -> list[Path]:
    """The kept rounds, oldest first."""
    root = rounds_dir(cfg, stage)
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) if root.is_dir() else []


def _queue_counts(cfg: Any, stage: str) -> dict[str, int]:
    from ragdistill.common.ops.failure_queue import load_queue

    path = queue_path(cfg, stage)
    if not path.exists():
        return {}
    counts: dict[str, int] = {}
    for r in load_queue(path):
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def snapshot_round(cfg: Any, stage: str, student_dir: Path) -> Path:
    """``ragdistill <stage> next-round``: copy the trained student and the latest evaluate results to
    ``rounds/<k>/`` (k = 1, 2, ...) and print the commands of the next round."""
    student_dir = Path(student_dir)
    if not student_dir.is_dir() or not any(student_dir.iterdir()):
        raise RagdistillError(f"{student_dir}: no trained student to keep; run `ragdistill {stage} train` first (same paths.work_dir)")
    done = kept_rounds(cfg, stage)
    k = int(done[-1].name) + 1 if done else 1
    dest = rounds_dir(cfg, stage) / str(k)
    results = stage_dir(cfg, stage, "evaluate") / "results.json"
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        shutil.copytree(student_dir, tmp / "student")
        if results.is_file():
            shutil.copy2(results, tmp / "results.json")
        write_json(tmp / "round.json", {"round": k, "student_from": str(student_dir.resolve()), "results": results.is_file(),
                                        "queue": _queue_counts(cfg, stage), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    note = "" if results.is_file() else f" (no evaluate results yet: run `ragdistill {stage} evaluate` first to compare rounds)"
    log.info(f"{stage} next-round: round {k} kept in {dest}{note}. Next round:\n"
             f"  ragdistill {stage} teach data.extra=queue\n"
             f"  ragdistill {stage} train student.model={dest / 'student'}\n"
             f"  ragdistill {stage} evaluate student.model={dest / 'student'}\n"
             f"  ragdistill {stage} compare-rounds")
    return dest


def compare_rounds(cfg: Any, stage: str) -> dict[str, Any]:
    """``ragdistill <stage> compare-rounds``: the student of every kept round next to the current one
    (the latest ``evaluate``) and the teacher, metric by metric; written to ``rounds/comparison.{json,txt}``."""
    current = stage_dir(cfg, stage, "evaluate") / "results.json"
    if not current.is_file():
        raise RagdistillError(f"{current}: no evaluate results for the current round; run `ragdistill {stage} evaluate` first")
    rounds = [(int(p.name), read_json(p / "results.json")) for p in kept_rounds(cfg, stage) if (p / "results.json").is_file()]
    if not rounds:
        raise RagdistillError(f"{rounds_dir(cfg, stage)}: no kept round with results; run `ragdistill {stage} next-round` after "
                              "evaluating a round, then the next round's teach/train/evaluate")
    now = read_json(current)["results"]
    cols: dict[str, dict[str, Any]] = {}
    if "teacher" in now:
        cols["teacher"] = now["teacher"]
    for k, res in rounds:
        cols[f"round {k}"] = res["results"].get("student", {})
    k_now = rounds[-1][0] + 1
    cols[f"round {k_now}"] = now.get("student", {})
    metrics = [m for m in dict.fromkeys(m for c in cols.values() for m in c) if all(isinstance(c.get(m), (int, float)) for c in cols.values() if m in c)]
    prev, last = f"round {rounds[-1][0]}", f"round {k_now}"
    rows = [["metric", *cols, f"{last} - {prev}"]]
    for m in metrics:
        a, b = cols[prev].get(m), cols[last].get(m)
        delta = f"{b - a:+.4f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "-"
        rows.append([m, *(f"{c[m]:.4f}" if isinstance(c.get(m), (int, float)) else "-" for c in cols.values()), delta])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"[{stage}] distillation rounds: each round's student on the held-out split (teacher for reference)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    queue = _queue_counts(cfg, stage)
    caveat = ""
    if queue.get("disagreement"):
        caveat = (f"note: {queue['disagreement']} queued inputs are held-out disagreements from `calibrate`; a round trained on them "
                  "(teach data.extra=queue) is not held out on those inputs")
        lines.append(caveat)
    text = "\n".join(lines)
    print(text, flush=True)
    payload = {"stage": stage, "columns": list(cols), "results": cols, "queue": queue, "caveat": caveat or None}
    write_json(rounds_dir(cfg, stage) / "comparison.json", payload)
    write_text_atomic(rounds_dir(cfg, stage) / "comparison.txt", text + "\n")
    return payload


def next_round(stage: Any, cfg: Any) -> Path:
    """``ragdistill <stage> next-round``: keep the distilled student and its evaluate results."""
    return snapshot_round(cfg, stage.name, stage.student_dir(cfg))


def stage_compare_rounds(stage: Any, cfg: Any) -> dict[str, Any]:
    """``ragdistill <stage> compare-rounds``: every kept round's student next to the current one."""
    return compare_rounds(cfg, stage.name)


def fold_queue(stage: Any, cfg: Any, result: Any) -> dict[str, Any] | None:
    """``teach data.extra=queue`` (or a queue file): after the stage's teach, add what the failure queue
    collected to its training data. The queued records seed the label cache, so the teacher's labels
    come from there (no teacher call when the teacher is the same, a fresh label when it changed);
    the stage's ``add_training_examples`` hook then appends them to teach's output. Counts go into
    the teach result's ``details["queue"]``."""
    from ragdistill.common.ops.failure_queue import extra_inputs

    if not cfg.data.get("extra"):
        return None
    teacher = stage.teacher(cfg)
    try:
        records = extra_inputs(cfg, stage.name, teacher.cache)
        if not records:
            return None
        by_template: dict[str, list[Any]] = {}
        unknown: dict[str, int] = {}
        for r in records:
            if teacher.calls and r.template not in teacher.calls:  # e.g. queued under an older prompt:
                unknown[r.template] = unknown.get(r.template, 0) + 1  # the teacher cannot be asked it as teach does
                continue
            by_template.setdefault(r.template, []).append(r.input)
        if unknown:
            log.warning("%s: %d queued records have a template this teach does not label (%s); skipped", stage.name,
                        sum(unknown.values()), ", ".join(unknown))
        items, cached, labelled = [], 0, 0
        for template, payloads in by_template.items():
            run = teacher.label(payloads, template, desc=f"teacher labels (queue, {template})", complete=True)
            cached, labelled = cached + run.cached, labelled + run.labelled
            items += [(p, y, template) for p, y in zip(payloads, run.labels, strict=True)]
    finally:
        teacher.close()
    info = {"records": len(records), "other_template": sum(unknown.values()), **stage.add_training_examples(cfg, items),
            "teacher_labels": {"cached": cached, "labelled": labelled}}
    result.cached += cached
    result.teacher_calls += labelled
    result.details["queue"] = info
    log.info("%s teach: data.extra=%s: %d queued records folded in (%s); teacher calls for them: %d", stage.name,
             cfg.data.extra, len(records), ", ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, int)), labelled)
    return info


__all__ = ["compare_rounds", "fold_queue", "kept_rounds", "next_round", "snapshot_round", "stage_compare_rounds"]
