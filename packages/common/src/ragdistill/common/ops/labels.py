"""``ragdistill <stage> export-labels``: the teacher's cached labels as a file to ship with the data.

Written once for every stage: the rows of the label cache made by the stage's teacher(s)
(:meth:`~ragdistill.common.stage.Stage.label_teacher_ids`) go to a label-cache export
(``{key, teacher, value}`` per line, gzip when the name ends in ``.gz``), by default
``data/labels/<stage>-<data>.jsonl.gz``. A ``teach.shipped_labels`` glob that matches it makes
``teach`` on another machine a cache read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger

log = get_logger(__name__)


def default_labels_file(stage: str, cfg: Any) -> Path:
    from ragdistill.common.paths import data_dir

    return data_dir() / "labels" / f"{stage}-{cfg.data.name}.jsonl.gz"


def export_labels(stage: Any, cfg: Any) -> Path:
    """Write the stage teacher's cached labels to ``<stage>.teach.export_labels_to`` (default
    ``data/labels/<stage>-<data.name>.jsonl.gz``); returns the file."""
    from ragdistill.common.cache import LabelCache
    from ragdistill.common.paths import project_home

    spec = stage.settings(cfg).teach.get("export_labels_to")
    # relative to the project folder, as teach.shipped_labels is: what one writes, the other reads
    target = (Path(spec) if Path(spec).is_absolute() else project_home() / spec) if spec else default_labels_file(stage.name, cfg)
    ids = stage.label_teacher_ids(cfg)
    cache = LabelCache(cfg.paths.label_cache)
    try:
        n = cache.export_jsonl(target, ids, float16=bool(stage.settings(cfg).teach.get("export_labels_float16", True)))
    finally:
        cache.close()
    if n == 0:
        raise RagdistillError(f"the label cache {cfg.paths.label_cache} holds no labels of {', '.join(ids)}; run "
                              f"`ragdistill {stage.name} teach` (or evaluate) first")
    log.info("%s export-labels: %d labels of %s -> %s", stage.name, n, ", ".join(ids), target)
    return target
