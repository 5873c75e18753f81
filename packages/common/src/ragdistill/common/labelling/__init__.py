"""Label inputs with a teacher through the label cache, in this process or fanned out.

This module is the API; :mod:`.ray` runs the Ray Data pipelines (the teacher-actor pool) and
:mod:`.vllm` Ray Data's vLLM processor (with the checks of where vLLM is installed).

A stage's ``teach`` makes one call and the launcher setting (``run.launcher``) decides where the
teacher runs::

    labels = label_with_teacher(cache, cfg.teacher, "embed", texts, cfg, desc="passage embeddings")

- ``local`` (default): the teacher is built here and :meth:`LabelCache.label` runs it batch by batch.
- ``shards``: the same, restricted to this job's ``run.shard=i/n`` slice of the keys (the cache is a
  ``.shard-i-of-n`` file); a job array runs every index, ``ragdistill cache merge`` joins the files.
- ``ray``: a Ray Data pipeline (``from_items`` -> ``map_batches`` with a stateful actor per worker
  that builds the teacher from its config once, ``ray.num_workers`` of them). Finished batches
  stream back to this process, which commits each into the cache in one transaction: a killed run
  (driver or worker) loses only the batches in flight, and a rerun labels only what is missing.
  Locally a Ray runtime is started on this machine; ``ray.address=auto`` joins a cluster.

Keys are computed here from the teacher id, the template and each input, exactly as
:meth:`LabelCache.label` does, so all launchers read and write the same cache entries.

A stage whose cache inputs are not the teacher's inputs (the query rewriter caches the source text,
the teacher reads a few-shot prompt built from it) passes ``prepare`` (a picklable batch -> teacher
inputs function, applied where the teacher runs: here or in the Ray worker) and ``overrides``
(keyword arguments of the capability, e.g. ``max_new_tokens``); ``key_id`` keeps a stage's own name
for its labels (``gen:...``) so keys made before these launchers existed still hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragdistill.common.cache import LabelCache, label_key
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.teachers import EmbeddingTeacher, GenerationTeacher, ScoringTeacher, Teacher, build_teacher, require

log = get_logger(__name__)
CAPABILITIES: dict[str, type] = {"embed": EmbeddingTeacher, "score": ScoringTeacher, "generate": GenerationTeacher}
LAUNCHERS = ("local", "ray", "shards")
LLM_PROCESSOR_MODES = ("auto", "true", "false")


@dataclass
class LaunchSettings:
    """Where labelling runs; :func:`launch_settings` reads it from a stage config (``run.launcher`` + ``ray``)."""

    launcher: str = "local"
    address: str | None = None
    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0
    batch_size: int = 32
    local_num_cpus: int | None = None
    llm_processor: str = "auto"  # teacher.backend=vllm generation: Ray Data's LLM processor (auto|true|false)
    python: str | None = None  # Python of the vLLM workers (runtime_env py_executable)
    max_model_len: int | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # more vLLM engine args


def launch_settings(cfg: Any = None) -> LaunchSettings:
    """``LaunchSettings`` from a stage config (reads ``cfg.run.launcher`` and ``cfg.ray``), a
    ``LaunchSettings``, a launcher name, or None (local)."""
    if cfg is None:
        return LaunchSettings()
    if isinstance(cfg, LaunchSettings):
        s = cfg
    elif isinstance(cfg, str):
        s = LaunchSettings(launcher=cfg)
    else:
        run, ray = getattr(cfg, "run", None), getattr(cfg, "ray", None)
        s = LaunchSettings(launcher=getattr(run, "launcher", "local") or "local")
        for f in ("address", "num_workers", "num_cpus_per_worker", "num_gpus_per_worker", "batch_size", "local_num_cpus",
                  "llm_processor", "python", "max_model_len", "engine_kwargs"):
            if ray is not None and getattr(ray, f, None) is not None:
                setattr(s, f, getattr(ray, f))
        s.engine_kwargs = _cfg_dict(s.engine_kwargs)
    if s.launcher not in LAUNCHERS:
        raise RagdistillError(f"run.launcher={s.launcher!r} is unknown; choose one of {', '.join(LAUNCHERS)}")
    if s.num_workers < 1:
        raise RagdistillError(f"ray.num_workers={s.num_workers}: need at least 1")
    s.llm_processor = str(s.llm_processor).lower()
    if s.llm_processor not in LLM_PROCESSOR_MODES:
        raise RagdistillError(f"ray.llm_processor={s.llm_processor!r}: choose one of {', '.join(LLM_PROCESSOR_MODES)}")
    return s


@dataclass
class LabelRun:
    """Labels aligned with the inputs (None outside this shard) and what the run cost."""

    labels: list[Any]
    total: int  # inputs
    cached: int  # distinct keys found in the cache
    labelled: int  # distinct keys the teacher computed in this run
    seconds: float
    launcher: str
    teacher_id: str = ""  # the teacher that made the labels (known after a Ray run without building it here)

    @property
    def items_per_s(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


def _cfg_dict(teacher_cfg: Any) -> dict[str, Any]:
    if isinstance(teacher_cfg, dict):
        return dict(teacher_cfg)
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(teacher_cfg):
            return OmegaConf.to_container(teacher_cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    from dataclasses import asdict, is_dataclass

    if is_dataclass(teacher_cfg):
        return asdict(teacher_cfg)
    raise RagdistillError(f"teacher config of type {type(teacher_cfg).__name__}: expected a TeacherConfig or a dict")


def _capability(name: str) -> type:
    if name not in CAPABILITIES:
        raise RagdistillError(f"capability {name!r}: choose one of {', '.join(CAPABILITIES)}")
    return CAPABILITIES[name]


Prepare = Callable[[list[Any]], list[Any]]


def _call(compute: Callable[..., Sequence[Any]], batch: list[Any], prepare: Prepare | None, overrides: dict[str, Any] | None) -> list[Any]:
    """One teacher call on a batch of cache inputs: the same code here and in a Ray worker, so both
    launchers feed the teacher identical inputs and settings."""
    return list(compute(prepare(batch) if prepare is not None else batch, **(overrides or {})))


def run_labelling(
    cache: LabelCache,
    teacher_cfg: Any,
    capability: str,
    inputs: Sequence[Any],
    launch: Any = None,
    *,
    template: str = "",
    batch_size: int | None = None,
    desc: str = "teacher labels",
    teacher: Teacher | None = None,
    teacher_id: str | None = None,
    key_id: str | None = None,
    prepare: Prepare | None = None,
    overrides: dict[str, Any] | None = None,
) -> LabelRun:
    """Label ``inputs`` with ``capability`` (``embed``/``score``/``generate``) of the teacher built
    from ``teacher_cfg``; see the module docstring. ``teacher`` reuses one already built here (local
    launchers; it is only called on cache misses, so a lazy wrapper loads nothing when all is cached);
    ``teacher_id`` spares the ray launcher its probe (one teacher load on a worker).

    ``key_id``: the id the cache keys and rows are made with when a stage names its labels itself
    (default: the teacher's own id); with it the ray launcher needs no probe and checks instead that
    all its workers report one and the same teacher. ``prepare(batch) -> teacher inputs`` (picklable:
    a module-level function or a ``functools.partial`` of one) and ``overrides`` (keyword arguments
    of the capability) are applied wherever the teacher runs; keys stay on the raw ``inputs``."""
    _capability(capability)
    s = launch_settings(launch)
    t0 = time.perf_counter()
    if s.launcher == "shards" and cache.shard is None:
        raise RagdistillError("run.launcher=shards needs run.shard=i/n (this job's slice), e.g. run.shard=0/8")
    if s.launcher in ("local", "shards"):
        if teacher is None:
            teacher = build_teacher(teacher_cfg)
        require(teacher, _capability(capability), desc)
        fn = getattr(teacher, capability)
        kid = key_id or teacher.teacher_id
        cached = len(cache.get_many(list({label_key(kid, template, x) for x in inputs})))
        labels = cache.label(inputs, lambda batch: _call(fn, batch, prepare, overrides), kid, template, batch_size or s.batch_size, desc)
        return LabelRun(labels, len(inputs), cached, cache.last_labelled, time.perf_counter() - t0, s.launcher, kid)
    from ragdistill.common.labelling.ray import _label_on_ray

    return _label_on_ray(cache, _cfg_dict(teacher_cfg), capability, inputs, s, template, batch_size or s.batch_size, desc, teacher_id, t0,
                         key_id, prepare, overrides)


def label_with_teacher(cache: LabelCache, teacher_cfg: Any, capability: str, inputs: Sequence[Any], launch: Any = None,
                       **kwargs: Any) -> list[Any]:
    """:func:`run_labelling`, returning only the labels (aligned with ``inputs``)."""
    return run_labelling(cache, teacher_cfg, capability, inputs, launch, **kwargs).labels


def ensure_ray(s: LaunchSettings) -> None:
    """Join ``s.address`` or start a local Ray runtime once per process (see :mod:`.ray`)."""
    from ragdistill.common.labelling.ray import ensure_ray as _ensure

    _ensure(s)
