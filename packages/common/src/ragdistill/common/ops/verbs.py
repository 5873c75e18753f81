"""How the CLI, the demo and the harness run a stage's verbs: the four, plus the shared operations.

:func:`stage_verbs` maps every CLI verb name to a callable ``fn(cfg)``. The four verbs run through
:func:`run_verb`, which times them, writes their result (``teach.json``, ``train.json``,
``export.json``, ``results.json``) and the config they ran with (``config.yaml``) beside it, folds
the failure queue after ``teach`` (``data.extra``), measures the monitor baseline after
``export`` and writes the model card of each exported folder after ``export`` and ``evaluate``. ``calibrate`` (routable stages), ``next-round``, ``compare-rounds`` and
``export-labels`` come from the stage's hooks; a stage's ``extra_verbs`` are its own methods.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from ragdistill.common import ops
from ragdistill.common.config import save_config
from ragdistill.common.errors import RagdistillError
from ragdistill.common.paths import stage_dir
from ragdistill.common.results import VerbResult, provenance
from ragdistill.common.stage import VERBS, Stage


@contextlib.contextmanager
def stage_lock(cfg: Any, stage: str, verb: str) -> Iterator[None]:
    """One verb at a time per work dir and stage: a second ``teach`` on the same folder would replace
    the first one's outputs and label the same items twice. The label cache itself stays shared
    (SQLite serialises its writers), so runs in other work dirs label in parallel safely."""
    import fcntl

    from ragdistill.common.paths import work_dir

    path = work_dir(cfg) / stage / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RagdistillError(
                f"{path.parent}: {holder} is running there now; wait for it to finish or give this run its own "
                "paths.work_dir (the label cache may be shared: set paths.label_cache to the same file)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"ragdistill {stage} {verb} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def run_verb(stage: Stage, verb: str, cfg: Any) -> VerbResult:
    """Run one of the four verbs of ``stage`` (see the module docstring)."""
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun/accelerate, rank 0 alone writes
    from ragdistill.common.ops.tracking import log_result, verb_run

    if not rank0:
        return _run(stage, verb, cfg, rank0)
    with stage_lock(cfg, stage.name, verb), verb_run(stage.name, verb, cfg) as run:  # one wandb run per verb
        result = _run(stage, verb, cfg, rank0)
        log_result(run, result)
        return result


def _run(stage: Stage, verb: str, cfg: Any, rank0: bool) -> VerbResult:
    t0 = time.perf_counter()
    result = getattr(stage, verb)(cfg)
    if not isinstance(result, VerbResult):
        raise RagdistillError(f"stage {stage.name}: {verb} returned {type(result).__name__}, not a result of ragdistill.common.results")
    if verb == "teach" and cfg.data.get("extra"):
        ops.fold_queue(stage, cfg, result)
    if verb == "export" and rank0:
        ops.write_monitor_baseline(stage, cfg, result)
    result.seconds = time.perf_counter() - t0
    if rank0:
        result.provenance = provenance(cfg)  # the config and versions behind the figures (a report flags mismatches)
        result.write(cfg)
        save_config(cfg, stage_dir(cfg, stage.name, verb))
        if verb in ("export", "evaluate"):
            ops.write_cards(stage, cfg, verb)  # a card in each exported folder; evaluate refreshes its figures
    return result


def stage_verbs(stage: Stage) -> dict[str, Callable[[Any], Any]]:
    """Every verb of ``stage`` by CLI name: the four, the shared operations its hooks allow, its own."""
    out: dict[str, Callable[[Any], Any]] = {v: functools.partial(run_verb, stage, v) for v in VERBS}
    if stage.signals:
        out["calibrate"] = functools.partial(ops.calibrate, stage)
    out["next-round"] = functools.partial(ops.next_round, stage)
    out["compare-rounds"] = functools.partial(ops.compare_rounds, stage)
    out["export-labels"] = functools.partial(ops.export_labels, stage)
    for name in stage.extra_verbs:
        out[name.replace("_", "-")] = getattr(stage, name)
    return out
