"""The stage: one class every stage subclasses, four verbs and the hooks the shared operations use.

A stage package declares ``[project.entry-points."ragdistill.stages"] <name> = "<module>:stage"``
where ``stage`` is an instance of a :class:`Stage` subclass. The subclass implements

- the four verbs, ``teach`` / ``train`` / ``export`` / ``evaluate``, each returning its result
  (:mod:`ragdistill.common.results`), which the base class times and writes (``teach.json``,
  ``train.json``, ``export.json``, ``results.json``) with the config the verb ran with;
- the nouns the shared operations are written on: :meth:`Stage.teacher` (one cached teacher),
  :meth:`Stage.component` (the pipeline callable of a variant), :meth:`Stage.held_out`,
  :meth:`Stage.predictor`, :meth:`Stage.scorer` (confidence), :meth:`Stage.quality`,
  :meth:`Stage.disagreement`, :meth:`Stage.queue_examples` and :meth:`Stage.add_training_examples`.

and gets, written once in :mod:`ragdistill.common.ops` (which runs the verbs: :func:`ragdistill.common.ops.verbs.stage_verbs`): ``calibrate``, the ``routed`` pipeline
variant, the export-time monitor baseline, ``ragdistill monitor``, failure-queue folding
(``teach data.extra=queue``), ``next-round`` / ``compare-rounds`` and ``export-labels``.

The CLI, the demo and the e2e harness see stages only through :func:`load_stages`; a stage
package's ``__init__`` should import nothing heavy, so ``ragdistill --help`` stays fast.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ragdistill.common.config import StageConfig, register_schema
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import export_dir, student_dir
from ragdistill.common.pipeline import VARIANTS
from ragdistill.common.results import ExportResult, VerbResult

log = get_logger(__name__)

VERBS = ("teach", "train", "export", "evaluate")
ENTRY_POINT_GROUP = "ragdistill.stages"

Record = dict[str, Any]  # one held-out or logged input: the component's keyword arguments (+ references)
Predictor = Callable[[list[Record]], list[Any]]  # records -> outputs (a variant of the stage, batched)
Scorer = Callable[[list[Record]], tuple[list[Any], list[float]]]  # records -> outputs and confidences (higher = surer)
QueueItem = tuple[Any, Any, str]  # (teach payload, teacher label, template): one label-cache entry


class Stage:
    """Base class of every stage; see the module docstring. Class attributes describe the stage."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    schema: ClassVar[type] = StageConfig  # a StageConfig subclass with a ``<name>`` group
    order: ClassVar[int] = 50  # position in the pipeline and the demo
    slot: ClassVar[str] = ""  # the e2e pipeline slot it fills (rewriter, embedder, reranker, generator); "" = none
    teacher_capability: ClassVar[str] = ""  # what its teacher does: embed, score or generate (generate = priced per token)
    variants: ClassVar[tuple[str, ...]] = VARIANTS  # what component() builds
    call_fields: ClassVar[tuple[str, ...]] = ()  # the component's parameters, in order (the pipeline contract)
    signals: ClassVar[tuple[str, ...]] = ()  # routing signals, the default first; () = the stage is not routable
    quality_metric: ClassVar[str] = ""  # what quality() measures per held-out input
    output_field: ClassVar[str] = ""  # a monitor log line's field holding the student's output already (not re-run)
    extra_verbs: ClassVar[tuple[str, ...]] = ()  # further methods exposed as verbs (``build_teacher`` -> build-teacher)

    # ---- the four verbs. By default each runs the function of its name in the stage package's module
    # of its name (``ragdistill.<stage>.teach.teach(cfg)``, ...), imported when it runs: the package's
    # ``__init__`` stays light. A stage overrides a verb that needs more than ``cfg``.

    def _module_function(self, name: str) -> Callable[..., Any]:
        import importlib

        package = type(self).__module__.rpartition(".")[0]
        fn = getattr(importlib.import_module(f"{package}.{name}"), name, None)
        if fn is None:
            raise NotImplementedError(f"stage {self.name}: no {package}.{name}.{name}(); write it or override Stage.{name}")
        return fn

    def teach(self, cfg: Any) -> VerbResult:
        return self._module_function("teach")(cfg)

    def train(self, cfg: Any) -> VerbResult:
        return self._module_function("train")(cfg)

    def export(self, cfg: Any) -> ExportResult:
        return self._module_function("export")(cfg)

    def evaluate(self, cfg: Any) -> VerbResult:
        return self._module_function("evaluate")(cfg)

    # ---- nouns

    def settings(self, cfg: Any) -> Any:
        """The stage's own config group (``cfg.<name>``)."""
        return cfg[self.name]

    def teacher(self, cfg: Any) -> Any:
        """The stage's teacher behind the label cache (a :class:`~ragdistill.common.teachers.cached.CachedTeacher`)."""
        raise NotImplementedError(f"stage {self.name} has no teacher() hook")

    def component(self, cfg: Any, variant: str) -> Callable[..., Any]:
        """The pipeline callable of ``variant`` (teacher, student_base, student, student_onnx, ...); by
        default ``ragdistill.<stage>.component.component(cfg, variant)``."""
        return self._module_function("component")(cfg, variant)

    def student_dir(self, cfg: Any) -> Path:
        """Where train keeps the distilled student (what next-round snapshots)."""
        return student_dir(cfg, self.name)

    def export_dir(self, cfg: Any) -> Path:
        return export_dir(cfg, self.name)

    def export_files(self, cfg: Any) -> dict[str, Any]:
        """JSON files (name -> content) shipped inside every exported model folder, written after
        ``export`` before its model card: what a caller needs beside the weights to use them (e.g. the
        prompt the student was trained on). None by default."""
        return {}

    def held_out(self, cfg: Any, n: int | None = None) -> list[Record]:
        """The first ``n`` held-out inputs evaluate scores, as records (the component's keyword
        arguments, plus what quality() needs: references, qrels); also the monitor's log format."""
        raise NotImplementedError(f"stage {self.name} has no held_out() hook")

    def record(self, *args: Any, **kwargs: Any) -> Record:
        """A component call's arguments as a record (``call_fields`` names them)."""
        rec = dict(zip(self.call_fields, args, strict=False))
        rec.update(kwargs)
        return rec

    def call_args(self, record: Record) -> dict[str, Any]:
        return {f: record[f] for f in self.call_fields if f in record}

    def predictor(self, cfg: Any, variant: str) -> Predictor:
        """Outputs of ``variant`` for records; by default its component called once per record.
        For ``teacher`` the outputs come through the label cache. Stages override it to batch."""
        comp = self.component(cfg, variant)

        def predict(records: list[Record]) -> list[Any]:
            return [comp(**self.call_args(r)) for r in records]

        predict.model_path = getattr(comp, "model_path", None)  # type: ignore[attr-defined]
        return predict

    def scorer(self, cfg: Any, signal: str) -> Scorer:
        """The distilled student's outputs with a confidence each (routable stages only)."""
        raise RagdistillError(f"stage {self.name} cannot be routed: it has no confidence signal")

    def as_output(self, output: Any, record: Record) -> Any:
        """A predictor's output as the pipeline contract returns it (e.g. a raw reply -> its answer)."""
        return output

    def quality(self, cfg: Any, records: list[Record], outputs: list[Any]) -> list[float]:
        """Per record, how good an output is (``quality_metric``); higher is better."""
        raise NotImplementedError(f"stage {self.name} has no quality() hook")

    def disagreement(self, record: Record, student: Any, teacher: Any) -> float:
        """How far the student's output is from the teacher's, in [0, 1] (monitor and calibrate)."""
        raise NotImplementedError(f"stage {self.name} has no disagreement() hook")

    def divergence_metrics(self, records: list[Record], student: list[Any], teacher: list[Any]) -> dict[str, float]:
        """``ragdistill monitor``'s figures: ``divergence`` (mean disagreement) and any the stage adds."""
        import numpy as np

        d = [self.disagreement(r, s, t) for r, s, t in zip(records, student, teacher, strict=True)]
        return {"divergence": float(np.mean(d)) if d else 0.0}

    def queue_examples(self, cfg: Any, record: Record, teacher_output: Any) -> list[QueueItem]:
        """A routed or disagreeing input as the label-cache entries its teach would make."""
        raise NotImplementedError(f"stage {self.name} has no queue_examples() hook")

    def add_training_examples(self, cfg: Any, items: list[QueueItem]) -> dict[str, Any]:
        """Fold queued (payload, teacher label, template) items into teach's training data; returns counts."""
        raise NotImplementedError(f"stage {self.name} cannot fold a failure queue")

    def label_teacher_ids(self, cfg: Any) -> list[str]:
        """Whose labels ``export-labels`` ships: the teacher ids this stage's cache entries carry."""
        return [self.teacher(cfg).teacher_id]

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


# ---- the registry

_STAGES: dict[str, Stage] | None = None
_BROKEN: dict[str, str] = {}  # stage name -> why its package failed to import
_LOCAL: dict[str, Stage] = {}  # stages registered in this process (tests, notebooks)


def register(stage: Stage) -> Stage:
    """Add a stage object in this process (a notebook's or a test's stage), besides the installed ones."""
    if not isinstance(stage, Stage) or not stage.name:
        raise RagdistillError(f"{stage!r} is not a named ragdistill Stage")
    _LOCAL[stage.name] = stage
    register_schema(f"{stage.name}_schema", stage.schema)
    global _STAGES
    _STAGES = None
    return stage


def load_stages() -> dict[str, Stage]:
    """All stages (installed through the entry point, and registered here), in pipeline order;
    each stage's schema is registered with Hydra's ConfigStore as ``<name>_schema``."""
    global _STAGES
    if _STAGES is None:
        found: dict[str, Stage] = {}
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
        found.update(_LOCAL)
        for s in found.values():
            register_schema(f"{s.name}_schema", s.schema)
        _STAGES = dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))
    return _STAGES


def get_stage(name: str) -> Stage:
    stages = load_stages()
    if name in _BROKEN:
        raise RagdistillError(f"stage {name!r} is installed but failed to load: {_BROKEN[name]}")
    if name not in stages:
        raise RagdistillError(f"unknown stage {name!r}; installed stages: {', '.join(stages) or 'none'}")
    return stages[name]


def stage_names() -> Sequence[str]:
    return list(load_stages())
