"""Generation teachers for this stage: built lazily, keyed by their config, answers through the cache.

Loading a local 0.5B teacher costs tens of seconds on CPU; when every label is already in the
cache (e.g. imported from ``data/labels/generator*.jsonl``) no model is loaded at all. The cache
key names the backend, model and decoding settings, so changing any of them labels afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ragdistill.common.cache import LabelCache, Shard
from ragdistill.common.labelling import LabelRun, run_labelling
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import project_home
from ragdistill.common.teachers import GenerationTeacher, Messages, build_teacher, require

log = get_logger(__name__)


def teacher_key(tcfg: Any, max_new_tokens: int | None = None) -> str:
    """A stable id for a generation teacher's labels: backend, model and decoding settings."""
    mnt = max_new_tokens if max_new_tokens is not None else tcfg.max_new_tokens
    return f"gen:{tcfg.backend}:{tcfg.model}:T={float(tcfg.temperature)}:max={int(mnt)}"


class LazyTeacher:
    """A generation teacher built from its config on first use."""

    def __init__(self, tcfg: Any, stage: str = "generator", factory: Any = None) -> None:
        self.cfg = OmegaConf.create(OmegaConf.to_container(tcfg, resolve=True) if OmegaConf.is_config(tcfg) else dict(tcfg))
        self.stage, self._factory = stage, factory  # factory() -> a generation backend, instead of build_teacher
        self._teacher: GenerationTeacher | None = None
        self.teacher_id = teacher_key(self.cfg)

    @property
    def backend(self) -> GenerationTeacher:
        if self._teacher is None:
            log.info("loading teacher %s (%s)", self.cfg.model, self.cfg.backend)
            built = self._factory() if self._factory else build_teacher(self.cfg)
            self._teacher = require(built, GenerationTeacher, self.stage)
        return self._teacher

    @property
    def loaded(self) -> bool:
        return self._teacher is not None

    def generate(self, conversations: list[Messages], **overrides: Any) -> list[str]:
        return self.backend.generate(conversations, **overrides)

    @property
    def batch_size(self) -> int:
        return int(self.cfg.get("batch_size") or 4)


def open_cache(cfg: Any) -> LabelCache:
    """The stage's label cache, with the shipped label files imported (missing files are skipped)."""
    cache = LabelCache(cfg.paths.label_cache, shard=Shard.parse(cfg.run.shard))
    for f in cfg.generator.teach.labels_files or []:
        path = Path(f) if Path(f).is_absolute() else project_home() / f
        if path.is_file():
            added = cache.import_jsonl(path)
            if added:
                log.info("imported %d teacher labels from %s", added, path)
    return cache


def answer_run(
    cache: LabelCache,
    teacher: LazyTeacher,
    conversations: Sequence[Messages],
    template: str,
    max_new_tokens: int | None = None,
    desc: str = "teacher answers",
    launch: Any = None,
) -> LabelRun:
    """Teacher replies for ``conversations`` through the cache, with counts (cached / labelled).

    ``launch`` (a stage config: ``run.launcher``, ``ray.*``) picks where missing replies are made:
    here (``local``/``shards``, the model loads on the first miss only) or on Ray workers that build
    the teacher from ``teacher.cfg``. Keys are ``teacher_key(cfg, max_new_tokens)`` either way, the
    same as before these launchers existed, so shipped labels keep hitting."""
    mnt = max_new_tokens if max_new_tokens is not None else int(teacher.cfg.max_new_tokens)
    return run_labelling(cache, teacher.cfg, "generate", list(conversations), launch, template=template, batch_size=teacher.batch_size,
                         desc=desc, teacher=teacher, key_id=teacher_key(teacher.cfg, mnt), overrides={"max_new_tokens": mnt})


def answer_cached(
    cache: LabelCache,
    teacher: LazyTeacher,
    conversations: Sequence[Messages],
    template: str,
    max_new_tokens: int | None = None,
    desc: str = "teacher answers",
    launch: Any = None,
) -> list[str | None]:
    """Teacher replies for ``conversations``, reading the cache first and committing new ones batch by batch."""
    return answer_run(cache, teacher, conversations, template, max_new_tokens, desc, launch).labels
