"""The stage protocol: every stage is four verbs over one config, found through an entry point.

A stage package declares ``[project.entry-points."ragdistill.stages"] <name> = "<module>:stage"``;
the CLI and the e2e harness only ever see :class:`Stage` objects, so a team's own stage package
plugs in exactly like the built-in ones.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger

log = get_logger(__name__)

Verb = Callable[[Any], Any]
VERBS = ("teach", "train", "export", "evaluate")
ENTRY_POINT_GROUP = "ragdistill.stages"


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name, one-line purpose, Hydra schema and verbs.

    ``teach`` labels data with the teacher (cached, resumable); ``train`` distills; ``export``
    writes the production artifact and checks parity; ``evaluate`` scores teacher, undistilled
    student and distilled student side by side. ``extra`` holds further verbs (e.g. calibrate).
    """

    name: str
    description: str
    schema: type
    teach: Verb
    train: Verb
    export: Verb
    evaluate: Verb
    extra: dict[str, Verb] = field(default_factory=dict)
    order: int = 50  # position in the pipeline / demo
    # component(cfg, variant) -> the stage's inference callable for the e2e harness, where variant is
    # "teacher", "student_base", "student" or "student_onnx"; see ragdistill.common.pipeline
    component: Callable[[Any, str], Any] | None = None
    # routed(cfg) -> a RoutedComponent (student first, teacher below the calibrated confidence threshold):
    # the e2e harness's ``pipeline.<slot>=routed``; see docs/routing.md
    routed: Callable[[Any], Any] | None = None

    @property
    def verbs(self) -> dict[str, Verb]:
        """Every verb by name; ``teach`` and ``train`` write ``run_info.json`` (what ``ragdistill cost``
        prices as the one-off distillation), whichever stage they belong to."""
        plain = {"teach": self.teach, "train": self.train, "export": self.export, "evaluate": self.evaluate, **self.extra}
        return {v: _recorded(self.name, v, fn) if v in RECORDED_VERBS else fn for v, fn in plain.items()}


RECORDED_VERBS = ("teach", "train")


def _count(d: dict, *keys: str) -> int:
    """The first of ``keys`` holding a number (stages report counts under their own names)."""
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
    return 0


def _recorded(stage: str, verb: str, fn: Verb) -> Verb:
    """``fn`` timed into ``<work_dir>/<stage>/<verb>/run_info.json``, with the counts its result
    reports (a teach's labelled/cached teacher labels, a train's steps) where it reports them."""
    import functools

    @functools.wraps(fn)
    def run(cfg: Any) -> Any:
        import os

        from ragdistill.common.run_info import record_run

        if os.environ.get("RANK", "0") != "0":  # under torchrun/accelerate, rank 0 alone records the run
            return fn(cfg)
        with record_run(cfg, stage, verb) as info:
            result = fn(cfg)
            if isinstance(result, dict):
                labels = result.get("teacher_labels") if isinstance(result.get("teacher_labels"), dict) else result
                info.n_teacher_calls = _count(labels, "labelled")
                info.n_cached = _count(labels, "cached", "labels_imported")
                info.n_items = _count(result, "total", "queries", "examples")
                info.train_steps = _count(result, "steps")
        return result

    return run


_STAGES: dict[str, Stage] | None = None
_BROKEN: dict[str, str] = {}  # stage name -> why its package failed to import


def load_stages() -> dict[str, Stage]:
    """All installed stages, in pipeline order."""
    global _STAGES
    if _STAGES is None:
        found = {}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as e:
                _BROKEN[ep.name] = f"{type(e).__name__}: {e}"
                log.warning("stage %s failed to load and is skipped: %s", ep.name, _BROKEN[ep.name])
                continue
            if not isinstance(obj, Stage):
                raise RagdistillError(f"entry point {ep.name}={ep.value} is not a ragdistill Stage")
            found[obj.name] = obj
        _STAGES = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    return _STAGES


def get_stage(name: str) -> Stage:
    stages = load_stages()
    if name in _BROKEN:
        raise RagdistillError(f"stage {name!r} is installed but failed to load: {_BROKEN[name]}")
    if name not in stages:
        raise RagdistillError(f"unknown stage {name!r}; installed stages: {', '.join(stages) or 'none'}")
    return stages[name]
