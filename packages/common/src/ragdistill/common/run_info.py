"""``<work_dir>/<stage>/<verb>/run_info.json``: what a verb spent (seconds, items, teacher calls, tokens).

One small common record every stage can write, so ``ragdistill cost`` can price the one-off
distillation (teacher labelling + training) without knowing any stage's internals::

    with record_run(cfg, "embedder", "teach") as info:
        labels = cache.label(...)
        info.n_items, info.n_teacher_calls = len(inputs), n_missing

The file is written (atomically) only when the block finishes, with the measured wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, write_json

RUN_INFO = "run_info.json"


@dataclass
class RunInfo:
    stage: str
    verb: str
    seconds: float = 0.0  # wall time of the verb
    n_items: int = 0  # inputs processed (labelled, trained on, evaluated)
    n_teacher_calls: int = 0  # teacher calls actually made (label-cache misses)
    n_cached: int = 0  # labels read from the cache instead
    input_tokens: int = 0  # teacher prompt tokens (LLM teachers)
    output_tokens: int = 0  # teacher generated tokens
    train_steps: int = 0
    device: str = "cpu"
    finished: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_info_path(cfg: Any, stage: str, verb: str) -> Path:
    from ragdistill.common.config import stage_dir

    return stage_dir(cfg, stage, verb) / RUN_INFO


def write_run_info(path: str | Path, info: RunInfo) -> Path:
    info.finished = info.finished or time.strftime("%Y-%m-%dT%H:%M:%S")
    return write_json(path, asdict(info))


def read_run_info(path: str | Path) -> RunInfo:
    d = read_json(path)
    known = {f.name for f in fields(RunInfo)}
    unknown = sorted(set(d) - known) if isinstance(d, dict) else []
    if not isinstance(d, dict) or unknown or "stage" not in d or "verb" not in d:
        raise RagdistillError(f"{path}: not a run_info record (unknown keys {unknown}); write it with ragdistill.common.run_info")
    return RunInfo(**d)


@contextlib.contextmanager
def record_run(cfg: Any, stage: str, verb: str, **initial: Any) -> Iterator[RunInfo]:
    """Time the block and write its :class:`RunInfo` to ``<work_dir>/<stage>/<verb>/run_info.json``."""
    info = RunInfo(stage=stage, verb=verb, **initial)
    t0 = time.perf_counter()
    yield info
    info.seconds = time.perf_counter() - t0
    write_run_info(run_info_path(cfg, stage, verb), info)
