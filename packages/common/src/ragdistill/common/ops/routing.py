"""Pick the routing threshold on held-out data and show what it buys.

Given, per held-out input, the student's confidence and the quality of the student's and the
teacher's outputs, routing the k least confident inputs to the teacher gives one point of the
quality-vs-teacher-fraction curve. Routing a *random* k inputs gives, in expectation, the straight
line from the student's mean quality to the teacher's: the confidence signal is worth something
only where the routed curve lies above that line, so both are written and plotted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_json, write_json
from ragdistill.common.logging import get_logger

log = get_logger(__name__)

CURVE_JSON, CURVE_PNG = "routing_curve.json", "routing_curve.png"


@dataclass(frozen=True)
class RoutingTarget:
    """``max_teacher_fraction`` caps teacher calls; ``min_retention`` asks for a share of the
    teacher's quality with as few calls as possible. Either or both (see RoutingConfig)."""

    max_teacher_fraction: float | None = 0.1
    min_retention: float | None = None

    @classmethod
    def from_config(cls, routing: Any) -> RoutingTarget:
        """Validate ``cfg.routing``: a clear config error for a budget outside (0, 1)."""
        get = routing.get if isinstance(routing, dict) else lambda k, d=None: getattr(routing, k, d)
        f, r = get("max_teacher_fraction"), get("min_retention")
        if f is not None and not (isinstance(f, (int, float)) and 0 < f < 1):
            raise RagdistillError(
                f"routing.max_teacher_fraction={f!r} is outside (0, 1): it is the share of inputs the teacher may "
                "answer, e.g. routing.max_teacher_fraction=0.1 (or null with routing.min_retention set)")
        if r is not None and not (isinstance(r, (int, float)) and 0 < r <= 2):
            raise RagdistillError(
                f"routing.min_retention={r!r} is not a share of the teacher's quality: use a value in (0, 2], e.g. "
                "routing.min_retention=0.98")
        if f is None and r is None:
            raise RagdistillError("routing: set routing.max_teacher_fraction (a budget in (0, 1)) or routing.min_retention "
                                  "(e.g. 0.98), or both")
        return cls(None if f is None else float(f), None if r is None else float(r))


@dataclass
class Calibration:
    """The chosen operating point, its random-routing counterpart and the whole curve."""

    signal: str
    threshold: float  # route to the teacher when confidence < threshold
    teacher_fraction: float
    quality: float
    random_quality: float  # expected quality of routing the same fraction at random
    student_quality: float
    teacher_quality: float
    retention: float | None  # quality / teacher_quality
    target: dict[str, float | None]
    target_met: bool
    n: int
    gain_over_random_auc: float  # mean over the curve of (routed - random) quality
    curve: list[dict[str, float]] = field(default_factory=list)  # fraction, quality, random_quality, threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threshold_between(lo: float, hi: float) -> float:
    """A threshold routing ``lo`` but not ``hi`` (``lo < hi``): the midpoint when both are finite."""
    return (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else hi


def routing_curve(confidence: Any, student_quality: Any, teacher_quality: Any) -> list[dict[str, float]]:
    """Every distinct operating point: route the k least confident inputs (ties go together)."""
    c = np.asarray(confidence, dtype=np.float64)
    sq, tq = np.asarray(student_quality, dtype=np.float64), np.asarray(teacher_quality, dtype=np.float64)
    n = len(c)
    if n == 0 or len(sq) != n or len(tq) != n:
        raise RagdistillError(f"routing: need as many confidences, student and teacher qualities (got {n}, {len(sq)}, {len(tq)}), at least one")
    if np.isnan(c).any() or np.isnan(sq).any() or np.isnan(tq).any():
        raise RagdistillError("routing: a confidence or quality is NaN; drop or fix those inputs before calibrating")
    order = np.argsort(c, kind="stable")
    s = c[order]
    cum = np.concatenate([[0.0], np.cumsum((tq - sq)[order])])
    s_mean, t_mean = float(sq.mean()), float(tq.mean())
    points = []
    for k in range(n + 1):
        if 0 < k < n and s[k - 1] == s[k]:
            continue  # a threshold cannot split tied confidences
        if k == 0:
            thr = float(s[0])
        elif k == n:
            thr = float(np.nextafter(s[-1], np.inf))
        else:
            thr = _threshold_between(float(s[k - 1]), float(s[k]))
        f = k / n
        points.append({"fraction": f, "quality": float(s_mean + cum[k] / n),
                       "random_quality": s_mean + f * (t_mean - s_mean), "threshold": thr, "k": k})
    return points


def calibrate(confidence: Any, student_quality: Any, teacher_quality: Any, target: RoutingTarget, signal: str = "") -> Calibration:
    """Choose the threshold for ``target`` on held-out data (see the module docstring)."""
    curve = routing_curve(confidence, student_quality, teacher_quality)
    n = len(np.asarray(confidence))
    s_mean, t_mean = curve[0]["quality"], curve[-1]["quality"]
    budget = target.max_teacher_fraction
    allowed = [p for p in curve if budget is None or p["fraction"] <= budget + 1e-12]
    met = True
    if target.min_retention is not None:
        goal = target.min_retention * t_mean
        ok = [p for p in allowed if p["quality"] >= goal - 1e-12]
        if ok:
            point = ok[0]  # fewest teacher calls that reach the goal
        else:
            met = False
            point = max(allowed, key=lambda p: (p["quality"], -p["fraction"]))
            log.warning("routing: min_retention=%.3f not reachable%s; best is %.4f at teacher fraction %.3f",
                        target.min_retention, f" within max_teacher_fraction={budget}" if budget is not None else "",
                        point["quality"], point["fraction"])
    else:
        point = max(allowed, key=lambda p: (p["quality"], -p["fraction"]))  # best quality within the budget
    auc = float(np.mean([p["quality"] - p["random_quality"] for p in curve]))
    return Calibration(
        signal=signal, threshold=point["threshold"], teacher_fraction=point["fraction"], quality=point["quality"],
        random_quality=point["random_quality"], student_quality=s_mean, teacher_quality=t_mean,
        retention=point["quality"] / t_mean if t_mean else None,
        target={"max_teacher_fraction": budget, "min_retention": target.min_retention}, target_met=met, n=n,
        gain_over_random_auc=auc, curve=curve,
    )


def route_mask(confidence: Any, threshold: float) -> np.ndarray:
    """True where an input goes to the teacher (confidence below the threshold)."""
    return np.asarray(confidence, dtype=np.float64) < threshold


def evaluate_threshold(confidence: Any, student_quality: Any, teacher_quality: Any, threshold: float) -> dict[str, float]:
    """Apply a calibrated threshold to other held-out data: fraction routed, quality, random counterpart."""
    m = route_mask(confidence, threshold)
    sq, tq = np.asarray(student_quality, dtype=np.float64), np.asarray(teacher_quality, dtype=np.float64)
    f = float(m.mean())
    return {"fraction": f, "quality": float(np.where(m, tq, sq).mean()),
            "random_quality": float(sq.mean() + f * (tq.mean() - sq.mean())),
            "student_quality": float(sq.mean()), "teacher_quality": float(tq.mean())}


def plot_curve(cal: Calibration, path: str | Path, title: str = "") -> Path:
    """Quality vs teacher fraction: routed curve, random routing, student/teacher levels, operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = [p["fraction"] for p in cal.curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(f, [p["quality"] for p in cal.curve], drawstyle="steps-post", label=f"routed by {cal.signal or 'confidence'}")
    ax.plot([0, 1], [cal.student_quality, cal.teacher_quality], "--", color="gray", label="random routing (expected)")
    ax.axhline(cal.teacher_quality, color="tab:green", lw=0.8, ls=":", label="teacher")
    ax.axhline(cal.student_quality, color="tab:red", lw=0.8, ls=":", label="student")
    ax.scatter([cal.teacher_fraction], [cal.quality], color="black", zorder=5,
               label=f"chosen: {cal.teacher_fraction:.1%} to teacher, quality {cal.quality:.4f}")
    if cal.target.get("max_teacher_fraction") is not None:
        ax.axvline(cal.target["max_teacher_fraction"], color="black", lw=0.6, ls="-.", label="budget")
    ax.set_xlabel("fraction of inputs sent to the teacher")
    ax.set_ylabel("quality")
    ax.set_title(title or "routing: quality vs teacher calls", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_calibration(out_dir: str | Path, cal: Calibration, title: str = "") -> Path:
    """``routing_curve.json`` (operating point + curves) and ``routing_curve.png`` in ``out_dir``."""
    out = Path(out_dir)
    write_json(out / CURVE_JSON, cal.as_dict())
    plot_curve(cal, out / CURVE_PNG, title)
    return out / CURVE_JSON


def load_calibration(path: str | Path, stage: str = "<stage>") -> Calibration:
    """Read a calibration written by :func:`write_calibration` (a file or the directory holding it);
    ``stage`` names the command that writes it in the error when it is missing."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / CURVE_JSON
    if not path.exists():
        raise RagdistillError(f"{path}: no routing calibration; run `ragdistill {stage} calibrate` first "
                              "(with the same paths.work_dir)")
    d = read_json(path)
    try:
        return Calibration(**d)
    except TypeError as e:
        raise RagdistillError(f"{path}: not a routing calibration ({e}); rerun calibrate") from e


def run_calibration(cfg: Any, stage: str, confidence: Any, student_quality: Any, teacher_quality: Any,
                    signal: str = "") -> Calibration:
    """What a stage's ``calibrate`` verb does once it has scored its held-out split: validate
    ``cfg.routing``, choose the threshold, write ``<work_dir>/<stage>/calibrate/routing_curve.{json,png}``
    and print the operating point next to random routing."""
    from ragdistill.common.paths import stage_dir

    target = RoutingTarget.from_config(cfg.routing)
    cal = calibrate(confidence, student_quality, teacher_quality, target, signal or cfg.routing.signal)
    out = write_calibration(stage_dir(cfg, stage, "calibrate"), cal, f"{stage}: quality vs teacher calls ({cal.n} held-out inputs)")
    log.info(f"{stage} calibrate: routing by {cal.signal}: threshold {cal.threshold:.6g} sends {cal.teacher_fraction:.1%} to the teacher; "
             f"quality {cal.quality:.4f} (student {cal.student_quality:.4f}, teacher {cal.teacher_quality:.4f}, "
             f"random routing at the same fraction {cal.random_quality:.4f}); target met: {cal.target_met}; "
             f"curve: {out} and {out.with_suffix('.png')}")
    return cal


@dataclass
class HeldOut:
    """What ``calibrate`` measured on a stage's held-out split, one entry per input.

    ``queue[i]`` holds input i as the label-cache entries its teach would make (a reranker list is
    several pair payloads), so a disagreement queued here is labelled from the cache by the next
    round's ``teach data.extra=queue``.
    """

    ids: list[str]
    confidence: list[float]
    student_quality: list[float]
    teacher_quality: list[float]
    disagreement: list[float]  # in [0, 1]: how far the student's output is from the teacher's
    signal: str
    quality_metric: str
    teacher_id: str
    queue: list[list[tuple[Any, Any, str]]] = field(default_factory=list)  # per input: (payload, teacher label, template)


def stage_signal(stage: Any, cfg: Any) -> str:
    """``routing.signal`` or the stage's default; a signal the stage cannot compute is a config error."""
    if not stage.signals:
        raise RagdistillError(f"stage {stage.name} cannot be routed: it offers no confidence signal")
    name = str(cfg.routing.signal or stage.signals[0])
    if name not in stage.signals:
        raise RagdistillError(f"routing.signal={name!r}: the {stage.name} routes on {', '.join(stage.signals)}; choose one of those")
    return name


def held_out_scores(stage: Any, cfg: Any) -> HeldOut:
    """The held-out inputs ``evaluate`` scores, each answered by the distilled student (with its
    confidence) and by the teacher (through the label cache), scored and compared: the stage's hooks
    :meth:`~ragdistill.common.stage.Stage.held_out`, ``scorer``, ``predictor``, ``quality``,
    ``disagreement`` and ``queue_examples``."""
    signal = stage_signal(stage, cfg)
    scorer = stage.scorer(cfg, signal)  # fails early without a trained student
    records = stage.held_out(cfg, None)
    if not records:
        raise RagdistillError(f"{stage.name} calibrate: no held-out inputs (split {cfg.data.test_split!r})")
    s_out, conf = scorer(records)
    teacher = stage.teacher(cfg)
    try:
        t_out = stage.predictor(cfg, "teacher")(records)
        teacher_id = teacher.teacher_id
    finally:
        teacher.close()
    sq, tq = stage.quality(cfg, records, s_out), stage.quality(cfg, records, t_out)
    return HeldOut(
        ids=[str(r.get("id", i)) for i, r in enumerate(records)], confidence=[float(c) for c in conf],
        student_quality=[float(x) for x in sq], teacher_quality=[float(x) for x in tq],
        disagreement=[float(stage.disagreement(r, s, t)) for r, s, t in zip(records, s_out, t_out, strict=True)],
        signal=signal, quality_metric=stage.quality_metric, teacher_id=teacher_id,
        queue=[stage.queue_examples(cfg, r, t) for r, t in zip(records, t_out, strict=True)],
    )


def calibrate_stage(stage: Any, cfg: Any) -> dict[str, Any]:
    """``ragdistill <stage> calibrate``: score the held-out split (:func:`held_out_scores`), choose and
    write the operating point (:func:`run_calibration`), write the per-input scores
    (``items.jsonl``) and, with ``routing.queue``, queue the inputs whose disagreement exceeds
    ``routing.queue_disagreement``."""
    from ragdistill.common.io import write_jsonl
    from ragdistill.common.paths import stage_dir

    RoutingTarget.from_config(cfg.routing)  # a budget outside (0, 1) fails before any model loads
    held = held_out_scores(stage, cfg)
    cal = run_calibration(cfg, stage.name, held.confidence, held.student_quality, held.teacher_quality, held.signal)
    routed = route_mask(held.confidence, cal.threshold)
    out = stage_dir(cfg, stage.name, "calibrate")
    write_jsonl(out / "items.jsonl", [
        {"id": i, "confidence": c, "student_quality": s, "teacher_quality": t, "disagreement": d, "routed": bool(r)}
        for i, c, s, t, d, r in zip(held.ids, held.confidence, held.student_quality, held.teacher_quality,
                                    held.disagreement, routed, strict=True)])
    queued = (0, 0)
    if cfg.routing.queue and held.queue:
        queued = _queue_disagreements(cfg, stage.name, held)
    return {"stage": stage.name, "signal": cal.signal, "quality_metric": held.quality_metric, "n": cal.n,
            "threshold": cal.threshold, "teacher_fraction": cal.teacher_fraction, "quality": cal.quality,
            "random_quality": cal.random_quality, "student_quality": cal.student_quality,
            "teacher_quality": cal.teacher_quality, "target_met": cal.target_met,
            "gain_over_random_auc": cal.gain_over_random_auc, "queued_inputs": queued[0], "queued_labels": queued[1],
            "curve_json": str(out / CURVE_JSON)}


def queue_items(queue: Any, items: list[tuple[Any, Any, str]], teacher_id: str, reason: str, score: float | None) -> int:
    """Append (payload, teacher label, template) items to a failure queue, one call per template; new ones counted."""
    added = 0
    for template in dict.fromkeys(t for _, _, t in items):
        group = [(p, y) for p, y, t in items if t == template]
        added += queue.add_many([p for p, _ in group], [y for _, y in group], teacher_id, template, reason, [score] * len(group))
    return added


def _queue_disagreements(cfg: Any, stage: str, held: HeldOut) -> tuple[int, int]:
    """Queue the held-out inputs that disagree beyond ``routing.queue_disagreement``: (inputs, new labels)."""
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.ops.failure_queue import FailureQueue
    from ragdistill.common.paths import queue_path

    limit = float(cfg.routing.queue_disagreement)
    cache = LabelCache(cfg.paths.label_cache)
    inputs = labels = 0
    try:
        q = FailureQueue(queue_path(cfg, stage), cache)
        for d, items in zip(held.disagreement, held.queue, strict=True):
            if d > limit:
                inputs += 1
                labels += queue_items(q, items, held.teacher_id, "disagreement", d)
    finally:
        cache.close()
    if inputs:
        log.info("%s: %d of %d held-out inputs disagree with the teacher by more than routing.queue_disagreement=%s: "
                 "%d new teacher labels queued -> %s", stage, inputs, len(held.ids), limit, labels, q.path)
    return inputs, labels
