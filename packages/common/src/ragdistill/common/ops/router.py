"""A routed pipeline component: the student answers, the teacher takes over when the student is unsure.

Wraps any two callables with the same signature (the contracts of ragdistill.common.pipeline:
Rewriter, Reranker, Generator, or a whole retriever ``query -> ranking``) and a confidence
function of the student's output. The e2e harness runs it as the ``routed`` variant and reads
:meth:`RoutedComponent.stats` (teacher calls, fraction, time on each path) into its report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragdistill.common.ops.routing import load_calibration

# confidence(student_output, *call_args, **call_kwargs) -> float, higher = more sure
Confidence = Callable[..., float]
# on_teacher(call_args, call_kwargs, teacher_output, confidence): e.g. append to the failure queue
OnTeacher = Callable[[tuple, dict, Any, float], None]


class RoutedComponent:
    """``student`` first; when ``confidence(output, *args)`` < ``threshold``, ``teacher`` answers instead."""

    def __init__(self, student: Callable[..., Any], teacher: Callable[..., Any], confidence: Confidence,
                 threshold: float, signal: str = "", on_teacher: OnTeacher | None = None) -> None:
        self.student, self.teacher, self.confidence = student, teacher, confidence
        self.threshold, self.signal, self.on_teacher = float(threshold), signal, on_teacher
        self.n_calls = self.n_teacher = 0
        self.student_s = self.teacher_s = 0.0
        # the e2e harness reports the deployed (student) model's size
        self.model_path = getattr(student, "model_path", None)

    @classmethod
    def from_calibration(cls, student: Callable[..., Any], teacher: Callable[..., Any], confidence: Confidence,
                         calibration: str | Path, on_teacher: OnTeacher | None = None, stage: str = "<stage>") -> RoutedComponent:
        """Use the threshold ``calibrate`` chose (a ``routing_curve.json`` or its directory)."""
        cal = load_calibration(calibration, stage)
        return cls(student, teacher, confidence, cal.threshold, cal.signal, on_teacher)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self.student(*args, **kwargs)
        conf = float(self.confidence(out, *args, **kwargs))
        self.student_s += time.perf_counter() - t0
        self.n_calls += 1
        if conf < self.threshold:
            t1 = time.perf_counter()
            out = self.teacher(*args, **kwargs)
            self.teacher_s += time.perf_counter() - t1
            self.n_teacher += 1
            if self.on_teacher is not None:
                self.on_teacher(args, kwargs, out, conf)
        return out

    def warm_up(self, *args: Any, **kwargs: Any) -> None:
        """One untimed call to each side (a lazily loaded teacher loads here, not on the first routed
        input): not counted in :meth:`stats`, nothing queued."""
        self.student(*args, **kwargs)
        self.teacher(*args, **kwargs)

    @property
    def teacher_fraction(self) -> float:
        return self.n_teacher / self.n_calls if self.n_calls else 0.0

    def stats(self) -> dict[str, Any]:
        """What the e2e report's routed row needs: calls, teacher calls and fraction, time per path."""
        return {"signal": self.signal, "threshold": self.threshold, "n_calls": self.n_calls, "n_teacher_calls": self.n_teacher,
                "teacher_fraction": self.teacher_fraction, "student_s": self.student_s, "teacher_s": self.teacher_s}

    def reset(self) -> None:
        self.n_calls = self.n_teacher = 0
        self.student_s = self.teacher_s = 0.0


def queue_on_teacher(queue: Any, teacher_id: str, payload: Callable[..., Any], template: str = "") -> OnTeacher:
    """An ``on_teacher`` hook appending each routed input to a :class:`~ragdistill.common.ops.failure_queue.FailureQueue`;
    ``payload(*args, **kwargs)`` turns the call into the stage's teach input (so the cache key matches)."""

    def hook(args: tuple, kwargs: dict, teacher_output: Any, confidence: float) -> None:
        queue.add(payload(*args, **kwargs), teacher_output, teacher_id, template, "routed", confidence)

    return hook


def routed(stage: Any, cfg: Any) -> RoutedComponent:
    """``pipeline.<slot>=routed`` for any routable stage: its distilled student answers (the stage's
    ``scorer``), and an input whose confidence is below the threshold ``calibrate`` chose goes to the
    teacher (through the label cache) instead, queued for the next round with ``routing.queue``."""
    from ragdistill.common.errors import RagdistillError
    from ragdistill.common.ops.failure_queue import FailureQueue
    from ragdistill.common.ops.routing import queue_items
    from ragdistill.common.paths import queue_path, stage_dir

    cal = load_calibration(stage_dir(cfg, stage.name, "calibrate"), stage.name)  # before loading any model
    if cal.signal not in stage.signals:
        raise RagdistillError(f"{stage_dir(cfg, stage.name, 'calibrate')}: calibrated on signal {cal.signal!r}, which the "
                              f"{stage.name} does not offer ({', '.join(stage.signals)}); rerun `ragdistill {stage.name} calibrate`")
    scorer = stage.scorer(cfg, cal.signal)
    predict_teacher = stage.predictor(cfg, "teacher")
    last: dict[str, Any] = {}

    def student(*args: Any, **kwargs: Any) -> Any:
        rec = stage.record(*args, **kwargs)
        (out,), (conf,) = scorer([rec])
        last["confidence"] = float(conf)
        return stage.as_output(out, rec)

    def teacher(*args: Any, **kwargs: Any) -> Any:
        rec = stage.record(*args, **kwargs)
        raw = predict_teacher([rec])[0]
        last["record"], last["teacher"] = rec, raw
        return stage.as_output(raw, rec)

    student.model_path = getattr(scorer, "model_path", None)  # type: ignore[attr-defined]
    hook = None
    if cfg.routing.queue:
        cached = stage.teacher(cfg)
        queue = FailureQueue(queue_path(cfg, stage.name), cached.cache)

        def hook(args: tuple, kwargs: dict, out: Any, conf: float) -> None:
            queue_items(queue, stage.queue_examples(cfg, last["record"], last["teacher"]), cached.teacher_id, "routed", conf)

    return RoutedComponent(student, teacher, lambda *_a, **_k: last["confidence"], cal.threshold, cal.signal, hook)
