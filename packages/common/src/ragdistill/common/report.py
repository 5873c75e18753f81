"""The side-by-side comparison every ``evaluate`` prints and writes.

Systems are columns in a fixed order: the teacher, the student before distillation
(``student_base``), the student after (``student``), then its exports. Each metric row also shows
the distilled student against the teacher (a share of its quality; a speed-up for speed rows, a
reduction for size rows) and its gain over the undistilled student, so a reader sees both what
distillation kept and what it added.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ragdistill.common.io import write_json

SYSTEM_ORDER = ("teacher", "student_base", "student", "student_onnx", "student_onnx_int8")
# metrics where lower is better: retention is teacher/student, not student/teacher
LOWER_IS_BETTER = ("latency", "_ms", "size_mb", "memory_mb", "seconds")
SPEED = ("latency", "_ms", "per_s", "seconds")  # rows read as a speed-up, never as a "retention %"
SIZE = ("size_mb", "memory_mb")


def relative(metric: str, teacher: Any, other: Any) -> str | None:
    """``other`` against the teacher as a reader wants it: quality as a share of the teacher's
    (``93.1%``), speed as a speed-up (``3.20x faster``), size as a reduction (``4.10x smaller``)."""
    if not isinstance(teacher, (int, float)) or not isinstance(other, (int, float)) or not teacher or not other:
        return None
    if any(x in metric for x in SPEED):
        ratio = other / teacher if "per_s" in metric else teacher / other
        return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
    if any(x in metric for x in SIZE):
        ratio = teacher / other
        return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"
    return f"{other / teacher:.1%}"


def _ordered(systems: list[str]) -> list[str]:
    known = [s for s in SYSTEM_ORDER if s in systems]
    return known + sorted(s for s in systems if s not in SYSTEM_ORDER)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def comparison_table(results: dict[str, dict[str, float]], title: str = "") -> str:
    """A plain-text table: one row per metric, one column per system, then retention and gain."""
    systems = _ordered(list(results))
    metrics = list(dict.fromkeys(m for s in systems for m in results[s]))
    head = ["metric", *systems, "student/teacher", "student-student_base"]
    rows = [head]
    for m in metrics:
        vals = [results[s].get(m) for s in systems]
        t, b, st = (results.get(k, {}).get(m) for k in ("teacher", "student_base", "student"))
        retention, gain = relative(m, t, st), None
        if isinstance(b, (int, float)) and isinstance(st, (int, float)):
            gain = f"{st - b:+.4f}"
        rows.append([m, *(_fmt(v) for v in vals), retention or "-", gain or "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [title] if title else []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_comparison(out_dir: str | Path, stage: str, results: dict[str, dict[str, float]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the table and write ``<out_dir>/results.json``; returns what was written."""
    table = comparison_table(results, title=f"[{stage}] teacher vs student, before and after distillation")
    print(table, flush=True)
    payload = {"stage": stage, "results": results, **(extra or {})}
    out = Path(out_dir)
    write_json(out / "results.json", payload)
    (out / "results.txt").write_text(table + "\n", encoding="utf-8")
    return payload
