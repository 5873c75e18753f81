"""One teacher behind the label cache, for every stage and every verb.

``teach`` labels training data, ``evaluate`` and ``calibrate`` read the teacher's outputs on the
held-out split, the ``routed`` pipeline variant asks it for the inputs the student is unsure of,
and the monitor compares it with the student: all of them go through :class:`CachedTeacher`, so
an input labelled once is never labelled again, whichever verb asked first.

- **Lazy**: the backend (a 0.5B LLM takes tens of seconds to load on CPU) is built on the first
  cache miss; a fully cached run loads no model.
- **Shipped labels**: the files named by the stage's ``teach.shipped_labels`` (label-cache
  exports, ``.jsonl`` or ``.jsonl.gz``, globs relative to the project) are imported into the cache
  when it is opened, each file once (the cache remembers what it imported).
- **Launchers**: :meth:`CachedTeacher.label` goes through
  :func:`~ragdistill.common.labelling.run_labelling`, so ``run.launcher`` (local, shards, Ray) and
  ``run.shard`` apply to every verb alike.
- **Keys**: ``key_id`` names the labels when a stage keys them itself (the generator's
  ``gen:<backend>:<model>:...``); otherwise the backend's own ``teacher_id``.
- **Templates**: a label's template says how the teacher is asked. ``calls`` maps a template to
  the ``prepare`` (cache input -> teacher input, e.g. a few-shot prompt around a source text) and
  ``overrides`` (e.g. ``max_new_tokens``) of that kind of label, so any verb, including the shared
  failure-queue fold, labels an input of that template exactly as ``teach`` does.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragdistill.common.cache import LabelCache, Shard
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.teachers.base import Messages

log = get_logger(__name__)


# The template of a (query text, document text) score: every stage that labels pairs with a scoring
# teacher keys them under it (the reranker's lists, the embedder's margin_mse targets), so a pair one
# stage's teacher scored is a cache hit for the other's.
PAIR_TEMPLATE = "rerank-pair:v1"


@dataclass(frozen=True)
class TemplateCall:
    """How the teacher is asked for labels of one template: ``prepare`` (picklable: a module-level
    function or a ``functools.partial`` of one, so Ray workers can run it) and ``overrides``."""

    prepare: Callable[[list[Any]], list[Any]] | None = None
    overrides: dict[str, Any] | None = None


def shipped_label_files(patterns: Sequence[str]) -> list[Path]:
    """The files ``teach.shipped_labels`` names: globs, relative to the project folder unless absolute."""
    from ragdistill.common.paths import project_home

    out: list[Path] = []
    for pattern in patterns or []:
        full = pattern if Path(pattern).is_absolute() else str(project_home() / pattern)
        out += [Path(f) for f in sorted(glob.glob(full))]
    return out


def open_label_cache(cfg: Any, shipped: Sequence[str] = (), sharded: bool = True) -> LabelCache:
    """The label cache of ``cfg.paths.label_cache`` (this job's ``run.shard`` file when ``sharded``),
    with the shipped label files imported (each file once)."""
    shard = Shard.parse(cfg.run.shard) if sharded else None
    cache = LabelCache(cfg.paths.label_cache, shard=shard)
    for f in shipped_label_files(shipped):
        added = cache.import_file(f)
        if added:
            log.info("imported %d shipped teacher labels from %s", added, f)
    return cache


class CachedTeacher:
    """A stage's teacher: built lazily from ``cfg.teacher``, read through the label cache.

    ``capability`` is what the stage asks of it (``embed``, ``score`` or ``generate``). It is
    itself a teacher with that capability (``embed``/``score``/``generate`` call the backend, no
    cache), which is what :func:`run_labelling` and the Ray launcher need."""

    def __init__(self, cfg: Any, capability: str, *, shipped: Sequence[str] = (), key_id: str | None = None,
                 factory: Callable[[], Any] | None = None, batch_size: int | None = None,
                 calls: dict[str, TemplateCall] | None = None) -> None:
        from omegaconf import OmegaConf

        self.stage_cfg = cfg
        tcfg = cfg.teacher
        self.cfg = OmegaConf.create(OmegaConf.to_container(tcfg, resolve=True) if OmegaConf.is_config(tcfg) else dict(tcfg))
        self.capability, self.shipped, self.key_id = capability, list(shipped), key_id
        self._factory = factory  # () -> a backend, instead of build_teacher(cfg.teacher) (e.g. a built cross-encoder)
        self._backend: Any = None
        self._cache: LabelCache | None = None
        self.batch_size = int(batch_size or self.cfg.get("batch_size") or 8)
        self.calls = dict(calls or {})

    # ---- the backend, built on first use

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from ragdistill.common.labelling import CAPABILITIES
            from ragdistill.common.teachers import build_teacher, require

            members = self.cfg.get("members") or []  # an ensemble names no model of its own: name its members
            name = self.cfg.get("model") or " + ".join(f"{m.get('backend')}:{m.get('model')}" for m in members)
            log.info("loading teacher %s (%s)", name, self.cfg.get("backend"))
            built = self._factory() if self._factory is not None else build_teacher(self.cfg)
            self._backend = require(built, CAPABILITIES[self.capability], f"{self.capability} labelling")
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def teacher_id(self) -> str:
        """The id the labels are keyed by: ``key_id``, else the backend's own (which builds it)."""
        return self.key_id or self.backend.teacher_id

    def embed(self, texts: list[str]) -> Any:
        return self.backend.embed(texts)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        return self.backend.score(pairs)

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        return self.backend.generate(conversations, **overrides)

    # ---- the cache

    @property
    def cache(self) -> LabelCache:
        if self._cache is None:
            self._cache = open_label_cache(self.stage_cfg, self.shipped)
        return self._cache

    def label(self, inputs: Sequence[Any], template: str = "", *, desc: str = "teacher labels", key_id: str | None = None,
              prepare: Callable[[list[Any]], list[Any]] | None = None, overrides: dict[str, Any] | None = None,
              complete: bool = False) -> Any:
        """The teacher's labels for ``inputs`` (a :class:`~ragdistill.common.labelling.LabelRun`): read
        from the cache, the missing ones made where ``run.launcher`` says and committed batch by
        batch. ``prepare`` turns cache inputs into teacher inputs where the teacher runs; ``complete``
        refuses a result with inputs left to another shard."""
        from ragdistill.common.labelling import launch_settings, run_labelling

        call = self.calls.get(template)
        if call is not None:
            prepare = prepare if prepare is not None else call.prepare
            overrides = overrides if overrides is not None else call.overrides
        kid = key_id or self.key_id
        on_ray = launch_settings(self.stage_cfg).launcher == "ray"
        if on_ray and self._factory is not None:
            raise RagdistillError(
                f"run.launcher=ray: the teacher {self.cfg.get('model')!r} is built on this machine only; label it with "
                "run.launcher=local or shards, or use a teacher buildable anywhere (a packaged name or a hub id)")
        run = run_labelling(self.cache, self.cfg, self.capability, list(inputs), self.stage_cfg, template=template,
                            batch_size=self.batch_size, desc=desc, teacher=None if on_ray else self, key_id=kid,
                            prepare=prepare, overrides=overrides)
        if complete and any(v is None for v in run.labels):
            raise RagdistillError(f"{desc}: some inputs belong to another shard (run.shard={self.stage_cfg.run.shard}); "
                                  "merge the shard caches (ragdistill cache merge) and run without run.shard")
        return run

    def labels(self, inputs: Sequence[Any], template: str = "", **kwargs: Any) -> list[Any]:
        """:meth:`label`'s labels only, every one present (no shard left anything out)."""
        return self.label(inputs, template, complete=True, **kwargs).labels

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> CachedTeacher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
